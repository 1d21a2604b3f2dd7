package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/oneoffd/oneoffd/apitypes"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/oneoffd/oneoffd/client"
)

// attachViaFlag adds --attach-via to a command that opens a terminal.
func attachViaFlag(cmd *cobra.Command, g *globals) {
	cmd.Flags().StringVar(&g.attachVia, "attach-via", os.Getenv("ONEOFF_ATTACH_VIA"),
		"reach the terminal through tcp (the attach port) or https (a WebSocket on the API's port); default: the attach port, falling back to the API's when it cannot be reached (env ONEOFF_ATTACH_VIA)")
}

func attachCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "attach ID",
		Short: "Take over the terminal of a running attached one-off, from this terminal",
		Long: `Take over the terminal of a running attached one-off, from this terminal.

The one-off's output flows from now on to this terminal; the terminal that
had it is told and let go. Use it after a laptop slept longer than the
daemon's reconnect grace allowed the CLI to come back on its own, or to
move a console to another machine. The audit trail records who did.`,
		Example: `  oneoff attach k3j5c9w2m1q8r7t4`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := g.client()
			if err != nil {
				return err
			}
			tlsConfig, err := g.tlsConfig()
			if err != nil {
				return err
			}
			stdinFd := -1
			if f, ok := g.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				stdinFd = int(f.Fd())
			}
			var rows, cols uint16
			if stdinFd >= 0 {
				rows, cols = termSize(stdinFd, g.out)
			}
			t, err := c.RejoinTerminal(ctx, args[0], client.TerminalOptions{Rows: rows, Cols: cols, TLS: tlsConfig,
				Via: g.attachVia, Notices: g.err})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.err, "Attached to %s.\n", t.Name)
			return driveTerminal(ctx, g, t, stdinFd, stdinFd >= 0, args[0])
		},
	}
	attachViaFlag(cmd, g)
	return cmd
}

// openTerminal starts an attached one-off and opens its terminal: with the
// default --attach-via, in one request on the API's connection; otherwise,
// or with files to send, or from a daemon that does not switch the
// request's connection, by dialling the attach URL the answer gives.
func openTerminal(ctx context.Context, g *globals, c *client.Client, app string, req apitypes.CreateOneOff, files []client.File, opts client.TerminalOptions) (*client.Terminal, apitypes.Created, error) {
	if opts.Via == client.ViaAuto && len(files) == 0 {
		t, created, err := c.CreateAttached(ctx, app, req, opts)
		if err != nil && created.ID != "" {
			// Created, but its terminal could not be opened: do not leave
			// it waiting for one that will not come.
			_, _ = c.Stop(context.WithoutCancel(ctx), created.ID)
		}
		if err != nil || t != nil {
			return t, created, err
		}
		return dialTerminal(ctx, c, created, opts)
	}
	created, err := create(ctx, g, c, app, req, files)
	if err != nil {
		return nil, created, err
	}
	return dialTerminal(ctx, c, created, opts)
}

func dialTerminal(ctx context.Context, c *client.Client, created apitypes.Created, opts client.TerminalOptions) (*client.Terminal, apitypes.Created, error) {
	t, err := c.OpenTerminal(ctx, created.AttachURL, created.AttachSecret, opts)
	if err != nil {
		// Do not leave it waiting for a terminal that will not come.
		_, _ = c.Stop(context.WithoutCancel(ctx), created.ID)
		return nil, created, err
	}
	return t, created, nil
}

// driveTerminal connects the local terminal to an open one: raw mode,
// window sizes, signals, stdin, until the one-off ends; the exit status is
// the one-off's.
func driveTerminal(ctx context.Context, g *globals, att *client.Terminal, stdinFd int, tty bool, id string) error {
	defer att.Close()
	restore := func() {}
	if tty {
		old, err := term.MakeRaw(stdinFd)
		if err != nil {
			return fmt.Errorf("put the terminal in raw mode: %w", err)
		}
		var once sync.Once
		restore = func() { once.Do(func() { _ = term.Restore(stdinFd, old) }) }
		defer restore()
	}

	sigc := make(chan os.Signal, 8)
	signal.Notify(sigc, syscall.SIGWINCH, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGHUP)
	defer func() { signal.Stop(sigc); close(sigc) }() // ends the forwarder below
	go func() {
		for sig := range sigc {
			switch sig {
			case syscall.SIGWINCH:
				if tty {
					if r, c := termSize(stdinFd, g.out); r > 0 {
						_ = att.Resize(r, c)
					}
				}
			case syscall.SIGHUP:
				// The terminal is gone: the one-off goes on for the
				// daemon's reconnect grace (oneoff attach takes it back),
				// then stops.
				restore()
				att.Close()
			default:
				// Without a TTY, Ctrl-C arrives here: pass it on, as
				// the terminal driver would have in the container.
				_ = att.Signal(strings.TrimPrefix(unix(sig), "SIG"))
			}
		}
	}()
	go func() {
		_, err := io.Copy(att, g.stdin)
		if err == nil {
			_ = att.CloseStdin()
		}
	}()

	status, err := att.Copy(ctx, g.out, g.err, g.err)
	restore()
	if err != nil {
		return fmt.Errorf("%w (oneoff inspect %s tells how it ended)", err, id)
	}
	return exitStatus(g, att.Name, status)
}
