package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/client"
)

func logsCommand(g *globals) *cobra.Command {
	var (
		follow bool
		lines  int
		filter string
	)
	cmd := &cobra.Command{
		Use:   "logs [-f] [-n LINES] [--filter ONEOFF]",
		Short: "Show the app's log: what its detached one-offs wrote",
		Example: `  oneoff --app my-app logs -n 200
  oneoff --app my-app logs -f --filter one-off-4821`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			app, err := g.needApp()
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			if lines < 0 {
				return fmt.Errorf("-n %d: give a number of lines, 0 or more", lines)
			}
			opts := client.LogOptions{Lines: lines, Follow: follow, Filter: filter}
			if lines == 0 && cmd.Flags().Changed("lines") {
				opts.Lines = -1
			}
			return c.AppLogs(cmd.Context(), app, opts, func(l apitypes.LogLine) error {
				_, err := fmt.Fprintln(g.out, formatLine(l))
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing lines as they come")
	cmd.Flags().IntVarP(&lines, "lines", "n", 100, "how many past lines to show")
	cmd.Flags().StringVar(&filter, "filter", "", "only the lines of this one-off (its name, e.g. one-off-4821)")
	return cmd
}

// formatLine renders a log line for people: time, source, stream, text.
func formatLine(l apitypes.LogLine) string {
	return fmt.Sprintf("%s %s %s: %s", l.Time.Local().Format("2006-01-02T15:04:05.000000Z07:00"), l.Source, l.Stream, l.Text)
}

// tailOneOff prints a detached one-off's output as it comes, stdout lines
// to stdout and stderr lines to stderr, until it ends; it returns the
// one-off's exit status as the CLI's.
func tailOneOff(ctx context.Context, g *globals, c *client.Client, o apitypes.OneOff) error {
	err := c.OneOffLogs(ctx, o.ID, client.LogOptions{Follow: true, All: true}, func(l apitypes.LogLine) error {
		w := g.out
		if l.Stream == "stderr" {
			w = g.err
		}
		_, err := io.WriteString(w, l.Text+"\n")
		return err
	})
	if err != nil {
		return err
	}
	final, err := c.OneOff(ctx, o.ID)
	if err != nil {
		return err
	}
	return exitStatusOf(g, final)
}
