package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/client"
	"github.com/oneoffd/oneoffd/internal/version"
)

func psCommand(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "List one-offs (pending and running; --all for finished ones too)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if g.app != "" {
				// An app that does not exist has no one-offs, but saying so
				// would hide a typo.
				if _, err := c.App(cmd.Context(), g.app); err != nil {
					return err
				}
			}
			// The API answers the newest records only: without --all,
			// the unfinished ones are asked for by state, so that a long
			// job is listed however many ended since it started.
			var list []apitypes.OneOff
			states := []apitypes.State{apitypes.Pending, apitypes.Running}
			if all {
				states = []apitypes.State{""}
			}
			for _, st := range states {
				part, err := c.OneOffs(cmd.Context(), client.Filter{App: g.app, State: st, Limit: apitypes.MaxListLimit})
				if err != nil {
					return err
				}
				list = append(list, part...)
			}
			slices.SortStableFunc(list, func(a, b apitypes.OneOff) int { return b.CreatedAt.Compare(a.CreatedAt) })
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tAPP\tNAME\tSTATE\tAGE\tNODE\tCOMMAND")
			for _, o := range list {
				if !all && o.State == apitypes.Finished {
					continue
				}
				state := string(o.State)
				if o.State == apitypes.Finished {
					state = describe(o)
				}
				node := o.Node
				if node == "" {
					node = "-" // not placed yet
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", o.ID, o.App, o.Name, state,
					age(o.CreatedAt), node, truncate(strings.Join(o.Command, " "), 48))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "include finished one-offs")
	return cmd
}

func inspectCommand(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect ID|NAME",
		Short: "Show a one-off in detail (by its id, or its name: one-off-4821)",
		Args:  oneArg("the one-off's id or name", "oneoff [--app APP] inspect ID|NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			o, _, err := c.Lookup(cmd.Context(), g.app, args[0])
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(g.out)
				enc.SetIndent("", "  ")
				return enc.Encode(o)
			}
			printOneOff(g, o)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the record as JSON")
	return cmd
}

func printOneOff(g *globals, o apitypes.OneOff) {
	tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	ts := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.Local().Format(time.RFC3339)
	}
	row("ID", o.ID)
	row("Name", o.Name)
	row("App", fmt.Sprintf("%s (release %d, %s)", o.App, o.Release, o.Image))
	row("Command", strings.Join(o.Command, " "))
	row("Mode", string(o.Mode))
	row("TTY", fmt.Sprint(o.TTY))
	row("Size", o.Size)
	row("Env", strings.Join(o.EnvNames, ", "))
	var files []string
	for _, u := range o.Uploads {
		files = append(files, fmt.Sprintf("%s (%d bytes)", u.Path, u.Size))
	}
	row("Files", strings.Join(files, ", "))
	row("Requester", o.Requester)
	row("State", string(o.State))
	if o.State == apitypes.Finished {
		row("Outcome", describe(o))
	}
	row("Error", o.Error)
	row("Node", o.Node)
	row("Client", o.Client)
	if o.Mode == apitypes.Attached && o.StartedAt != nil {
		row("Traffic", fmt.Sprintf("%d bytes in, %d bytes out", o.BytesIn, o.BytesOut))
	}
	if o.State == apitypes.Running && o.LastActivity != nil {
		row("Idle", time.Since(*o.LastActivity).Round(time.Second).String())
	}
	row("Created", ts(&o.CreatedAt))
	row("Started", ts(o.StartedAt))
	row("Finished", ts(o.FinishedAt))
	row("Attach by", ts(o.AttachDeadline))
	row("Lifetime ends", ts(o.ExpiresAt))
	if o.ContainerID != "" {
		row("Container", o.ContainerID[:min(12, len(o.ContainerID))])
	}
	tw.Flush()
}

func stopCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stop ID|NAME",
		Short: "Stop a one-off (SIGTERM, then SIGKILL after the grace period)",
		Args:  oneArg("the one-off's id or name", "oneoff [--app APP] stop ID|NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			o, grace, err := c.Lookup(cmd.Context(), g.app, args[0])
			if err != nil {
				return err
			}
			if o.State == apitypes.Finished {
				return alreadyEnded(g, o)
			}
			if o.State == apitypes.Pending {
				fmt.Fprintf(g.err, "Stopping %s on %s: it has not started, discarding it...\n", o.Name, o.App)
			} else {
				kill := "SIGKILL after the grace period"
				if grace > 0 {
					kill = "SIGKILL in " + grace.String()
				}
				fmt.Fprintf(g.err, "Stopping %s on %s: sending SIGTERM; %s if it is still running...\n", o.Name, o.App, kill)
			}
			stopped, err := c.StopIn(cmd.Context(), o.App, o.ID)
			var apiErr *client.Error
			if errors.As(err, &apiErr) && apiErr.Code == "oneoff_finished" {
				// It ended by itself meanwhile.
				if o, err = c.OneOff(cmd.Context(), o.ID); err == nil {
					return alreadyEnded(g, o)
				}
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "%s %s: %s\n", stopped.App, stopped.Name, describe(stopped))
			return nil
		},
	}
}

// alreadyEnded tells of a one-off that a stop found finished: it is not
// running, as asked, however it ended.
func alreadyEnded(g *globals, o apitypes.OneOff) error {
	fmt.Fprintf(g.out, "%s %s: had already ended: %s\n", o.App, o.Name, describe(o))
	return nil
}

func deployCommand(g *globals) *cobra.Command {
	var (
		image    string
		envs     []string
		procfile string
		cronFile string
		reset    bool
	)
	cmd := &cobra.Command{
		Use:   "deploy --image IMAGE [-e K=V]... [--procfile FILE] [--cron FILE] [--reset]",
		Short: "Register a release of an app: the image, env and process types its one-offs run",
		Long: `Register a release of an app: the image, env and process types its one-offs run.

The new release keeps the current release's env unless -e is given, its
Procfile unless --procfile is, and its cron jobs unless --cron is:
"deploy --image my-app:v43" changes the image alone. -e replaces the whole
env (-e '' for none), --procfile '' removes the process types, --reset
starts from nothing.`,
		Example: `  oneoff --app my-app deploy --image registry.example.com/my-app:v42 -e RAILS_ENV=production --procfile Procfile
  oneoff --app my-app deploy --image registry.example.com/my-app:v43`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			app, err := g.needApp()
			if err != nil {
				return err
			}
			env, err := parseEnv(envs)
			if err != nil {
				return err
			}
			spec := apitypes.Deploy{Image: image, Env: env,
				KeepEnv:      !reset && !cmd.Flags().Changed("env"),
				KeepProcfile: !reset && !cmd.Flags().Changed("procfile"),
				KeepCron:     !reset && !cmd.Flags().Changed("cron"),
			}
			if procfile != "" {
				b, err := os.ReadFile(procfile)
				if err != nil {
					return fmt.Errorf("read Procfile: %w", err)
				}
				spec.Procfile = string(b)
			}
			if cronFile != "" {
				b, err := os.ReadFile(cronFile)
				if err != nil {
					return fmt.Errorf("read cron jobs: %w", err)
				}
				if !json.Valid(b) {
					return fmt.Errorf("%s is not JSON: write the cron jobs as in docs/cron.md", cronFile)
				}
				spec.Cron = b
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			rel, err := c.Deploy(cmd.Context(), app, spec)
			if err != nil {
				return err
			}
			kept := func(keep bool) string {
				if keep && rel.Version > 1 {
					return fmt.Sprintf(" (kept from release %d)", rel.Version-1)
				}
				return ""
			}
			fmt.Fprintf(g.out, "%s: release %d of %s\n", rel.App, rel.Version, rel.Image)
			// The daemon keeps the values: only the names come back.
			fmt.Fprintf(g.out, "env: %s%s\n", orNone(rel.EnvNames), kept(spec.KeepEnv))
			names := make([]string, 0, len(rel.Processes))
			for n := range rel.Processes {
				names = append(names, n)
			}
			sort.Strings(names)
			fmt.Fprintf(g.out, "process types: %s%s\n", orNone(names), kept(spec.KeepProcfile))
			if len(rel.Cron) > 0 {
				fmt.Fprintf(g.out, "cron jobs: see oneoff --app %s cron%s\n", rel.App, kept(spec.KeepCron))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&image, "image", "", "image the app's one-offs run (required)")
	cmd.Flags().StringArrayVarP(&envs, "env", "e", nil, "environment variable K=V (repeatable); replaces the current release's env")
	cmd.Flags().StringVar(&procfile, "procfile", "", "Procfile to read the process types from; replaces the current release's ('' for none)")
	cmd.Flags().BoolVar(&reset, "reset", false, "keep nothing of the current release: only what this command gives")
	cmd.Flags().StringVar(&cronFile, "cron", "", "cron.json to read the app's scheduled jobs from (see docs/cron.md); replaces the current release's")
	_ = cmd.MarkFlagRequired("image")
	return cmd
}

// orNone lists names, or says there are none.
func orNone(names []string) string {
	if len(names) == 0 {
		return "(none)"
	}
	return strings.Join(names, ", ")
}

func appsCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "apps",
		Short: "List the apps and their current release",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			apps, err := c.Apps(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "APP\tRELEASE\tIMAGE")
			for _, a := range apps {
				if a.Release == nil {
					fmt.Fprintf(tw, "%s\t-\t-\n", a.Name)
					continue
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\n", a.Name, a.Release.Version, a.Release.Image)
			}
			return tw.Flush()
		},
	}
}

func versionCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the CLI's version, and the daemon's when it answers",
		Args:  noArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(g.out, "oneoff  %s, API v%d\n", version.String(), version.API)
			tlsConfig, err := g.tlsConfig()
			if err != nil {
				fmt.Fprintf(g.out, "oneoffd %v\n", err)
				return
			}
			h, err := client.New(g.api, "", tlsConfig).Health(cmd.Context())
			if err != nil {
				fmt.Fprintf(g.out, "oneoffd at %s: not reachable (%v)\n", g.api, err)
				return
			}
			fmt.Fprintf(g.out, "oneoffd %v (commit %v), API v%v, at %s\n", h["version"], h["commit"], h["api_version"], g.api)
			if fmt.Sprint(h["api_version"]) != fmt.Sprint(version.API) {
				fmt.Fprintf(g.out, "warning: the daemon speaks another API version than this oneoff: use a matching oneoff\n")
			}
		},
	}
}

// parseEnv turns K=V strings into a map; the value may hold '=' too.
func parseEnv(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	env := make(map[string]string, len(pairs))
	for _, p := range pairs {
		if p == "" {
			continue // -e '': no variable, as an explicit empty env
		}
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("-e %q: want NAME=VALUE", p)
		}
		env[k] = v
	}
	return env, nil
}

// describe says how a one-off ended, or where it is.
func describe(o apitypes.OneOff) string {
	if o.State != apitypes.Finished {
		return string(o.State)
	}
	if o.ExitCode != nil {
		return fmt.Sprintf("%s (%d)", o.Outcome, *o.ExitCode)
	}
	return string(o.Outcome)
}

func age(t time.Time) string {
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return d.String()
	case d < time.Hour:
		return d.Round(time.Minute).String()
	}
	return d.Round(time.Hour).String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func auditCommand(g *globals) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "audit [--app APP] [--oneoff ID|NAME] [-n N]",
		Short: "Show the audit trail: who created, attached, stopped which one-off, and how each ended",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			id, _ := cmd.Flags().GetString("oneoff")
			events, err := c.Audit(cmd.Context(), client.AuditFilter{App: g.app, OneOffID: id, Limit: limit})
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TIME\tAPP\tONE-OFF\tACTION\tACTOR\tDETAIL")
			for i := len(events) - 1; i >= 0; i-- { // oldest first, as a log reads
				e := events[i]
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format(time.RFC3339), e.App, e.OneOffName, e.Action, e.Actor, e.Detail)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().String("oneoff", "", "only this one-off's events (its id, or its name: one-off-4821)")
	cmd.Flags().IntVarP(&limit, "lines", "n", 100, "how many of the latest events")
	return cmd
}
