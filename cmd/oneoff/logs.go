package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/client"
)

func logsCommand(g *globals) *cobra.Command {
	var (
		follow bool
		lines  = lineCount{n: 100}
		filter string
	)
	cmd := &cobra.Command{
		Use:   "logs [-f] [-n LINES|all] [--filter ONEOFF]",
		Short: "Show the app's log: what its detached one-offs wrote, and when each started and ended",
		Example: `  oneoff --app my-app logs -n 200
  oneoff --app my-app logs -n all
  oneoff --app my-app logs --tail --filter one-off-4821`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			app, c, err := g.appClient()
			if err != nil {
				return err
			}
			opts := client.LogOptions{Lines: lines.n, All: lines.all, Follow: follow, Filter: filter}
			if lines.n == 0 && !lines.all {
				opts.Lines = -1 // -n 0: none of the past lines
			}
			return c.AppLogs(cmd.Context(), app, opts, func(l apitypes.LogLine) error {
				_, err := fmt.Fprintln(g.out, formatLine(l))
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing lines as they come")
	cmd.Flags().BoolVarP(&follow, "tail", "t", false, "the same as --follow")
	cmd.Flags().VarP(&lines, "lines", "n", "how many past lines to show, or all")
	cmd.Flags().StringVar(&filter, "filter", "", "only the lines of this one-off (its name, e.g. one-off-4821, or its id)")
	return cmd
}

// lineCount is the value of logs' -n: a number of lines, or all.
type lineCount struct {
	n   int
	all bool
}

func (c *lineCount) String() string {
	if c.all {
		return "all"
	}
	return strconv.Itoa(c.n)
}

// Set takes "all" or a whole number; the daemon has the last word on how
// many it keeps.
func (c *lineCount) Set(s string) error {
	if s == "all" {
		*c = lineCount{all: true}
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return errors.New("give all or a whole number of lines, 0 or more")
	}
	*c = lineCount{n: n}
	return nil
}

func (c *lineCount) Type() string { return "LINES|all" }

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
