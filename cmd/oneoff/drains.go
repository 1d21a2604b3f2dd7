package main

import (
	"fmt"
	"io"
	"net/url"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/oneoffd/oneoffd/apitypes"
)

func drainsCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "drains [add URL | remove URL]",
		Short: "List, add or remove the app's log drains (syslog+tls://HOST:PORT, syslog+tcp://HOST:PORT), with how each fares",
		Long: `List, add or remove the app's log drains. Each drain is shown with its
state: connected, idle (nothing to send yet) or failing, with its last error
and since when, and the lines it sent and dropped. Without --app, list every
drain the daemon runs, daemon-wide and per app.`,
		Example: `  oneoff --app my-app drains
  oneoff --app my-app drains add syslog+tls://logs.example.com:6514
  oneoff --app my-app drains remove syslog+tls://logs.example.com:6514
  oneoff drains`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 || (len(args) == 2 && (args[0] == "add" || args[0] == "remove")) {
				return nil
			}
			return fmt.Errorf("usage: oneoff --app APP drains [add URL | remove URL]")
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if g.app == "" && len(args) == 0 {
				all, err := c.AllDrains(cmd.Context())
				if err != nil {
					return err
				}
				if len(all) == 0 {
					fmt.Fprintln(g.out, "no log drains")
					return nil
				}
				return printDrains(g.out, all, true)
			}
			app, err := g.needApp()
			if err != nil {
				return err
			}
			drains, err := c.Drains(cmd.Context(), app)
			if err != nil {
				return err
			}
			if len(args) == 2 {
				urls := drains.URLs
				switch args[0] {
				case "add":
					if !slices.Contains(urls, args[1]) {
						urls = append(urls, args[1])
					}
				case "remove":
					if !slices.Contains(urls, args[1]) {
						return fmt.Errorf("app %s has no drain %s", app, args[1])
					}
					urls = slices.DeleteFunc(urls, func(u string) bool { return u == args[1] })
				}
				if drains, err = c.SetDrains(cmd.Context(), app, urls); err != nil {
					return err
				}
			}
			if len(drains.URLs) == 0 {
				fmt.Fprintf(g.out, "%s has no log drains\n", app)
				return nil
			}
			// One row per URL recorded, with its drain's state if it runs.
			rows := make([]apitypes.DrainStatus, 0, len(drains.URLs))
			for _, u := range drains.URLs {
				shown := redactURL(u)
				i := slices.IndexFunc(drains.Status, func(s apitypes.DrainStatus) bool { return s.URL == shown })
				if i < 0 {
					rows = append(rows, apitypes.DrainStatus{URL: shown, State: "not running"})
					continue
				}
				rows = append(rows, drains.Status[i])
			}
			return printDrains(g.out, rows, false)
		},
	}
	return cmd
}

// printDrains writes a table of drains, with their app when withApp.
func printDrains(w io.Writer, drains []apitypes.DrainStatus, withApp bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if withApp {
		fmt.Fprint(tw, "APP\t")
	}
	fmt.Fprintln(tw, "DRAIN\tSTATE\tSENT\tDROPPED\tLAST ERROR")
	for _, d := range drains {
		if withApp {
			app := d.App
			if app == "" {
				app = "(every app)"
			}
			fmt.Fprintf(tw, "%s\t", app)
		}
		state := string(d.State)
		if d.FailingSince != nil {
			state += " since " + d.FailingSince.Local().Format(time.DateTime)
		}
		lastErr := "-"
		if d.LastError != "" {
			lastErr = d.LastError
			if d.LastErrorAt != nil {
				lastErr += " (" + d.LastErrorAt.Local().Format(time.TimeOnly) + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", d.URL, state, d.Sent, d.Dropped, lastErr)
	}
	return tw.Flush()
}

// redactURL returns u without credentials, as the daemon shows drains.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	p.User = nil
	return p.String()
}
