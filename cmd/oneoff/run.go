package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/attach"
	"github.com/oneoffd/oneoffd/client"
)

func runCommand(g *globals) *cobra.Command {
	var (
		envs     []string
		noTTY    bool
		typ      string
		detached bool
		ttl      string
		tail     bool
		size     string
		files    []string
	)
	cmd := &cobra.Command{
		Use:   "run [flags] COMMAND...",
		Short: "Run a command in a fresh copy of the app's container, with your terminal attached",
		Long: `Run a command in a fresh copy of the app's container, with your terminal attached.

A single argument runs through /bin/sh -c in the container, so that
"oneoff run 'rake db:migrate && rake db:seed'" works; several arguments run
as they are, so "oneoff run ls -l" runs ls with -l. Flags go before the
command: whatever follows it is the command's.

The terminal is put in raw mode when stdin is a terminal (--no-tty to turn
that off); the exit status is the command's.`,
		Example: `  oneoff --app my-app run bash
  oneoff --app my-app run -e DEBUG=1 rake db:migrate
  echo 'puts 1+1' | oneoff --app my-app run ruby`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && typ == "" {
				return errors.New("what should the one-off run? for example: oneoff --app APP run bash")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			app, err := g.needApp()
			if err != nil {
				for _, a := range args {
					if strings.HasPrefix(a, "-") {
						// What follows the command is the command's: a flag
						// there is not oneoff's.
						return fmt.Errorf("%w; %w (%q came after it)", err, errFlagsAfterCommand, a)
					}
				}
				return err
			}
			env, err := parseEnv(envs)
			if err != nil {
				return err
			}
			if !detached && (tail || ttl != "") {
				return errors.New("--tail and --ttl go with --detached")
			}
			if ttl != "" {
				if _, err := apitypes.ParseTTL(ttl); err != nil {
					return fmt.Errorf("--ttl: %w", err)
				}
			}
			req := apitypes.CreateOneOff{Command: command(args), Type: typ, Env: env, Size: size}
			uploads, cleanup, err := uploadFiles(files)
			if err != nil {
				return err
			}
			defer cleanup()
			if detached {
				return runDetached(cmd.Context(), g, app, req, uploads, ttl, tail)
			}
			return runOneOff(cmd.Context(), g, app, req, uploads, noTTY)
		},
	}
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().StringArrayVarP(&envs, "env", "e", nil, "environment variable K=V, over the app's (repeatable)")
	cmd.Flags().StringVar(&typ, "type", "", "run the command of this Procfile process type, with the arguments appended")
	cmd.Flags().StringArrayVar(&files, "file", nil, "a file or directory to put in /tmp/uploads before the command starts (repeatable)")
	cmd.Flags().StringVarP(&size, "size", "s", "", "resource limits: a size from the daemon's table (default: the daemon's default size)")
	attachViaFlag(cmd, g)
	cmd.Flags().BoolVar(&noTTY, "no-tty", false, "do not allocate a TTY even when stdin is a terminal")
	cmd.Flags().BoolVarP(&detached, "detached", "d", false, "run in the background, the output going to the app's log")
	cmd.Flags().StringVar(&ttl, "ttl", "", "with --detached: stop it after this long, such as 90m or 2h (default and most: the daemon's maximum lifetime)")
	cmd.Flags().BoolVar(&tail, "tail", false, "with --detached: follow its output at once, and exit with its exit code")
	return cmd
}

func runOneOff(ctx context.Context, g *globals, app string, req apitypes.CreateOneOff, files []client.File, noTTY bool) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	stdinFd := -1
	if f, ok := g.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		stdinFd = int(f.Fd())
	}
	tty := stdinFd >= 0 && !noTTY
	req.TTY = &tty
	var rows, cols uint16
	if tty {
		rows, cols = termSize(stdinFd, g.out)
		if rows > 0 {
			req.Window = &apitypes.TermSize{Rows: rows, Cols: cols}
		}
		req.Term = os.Getenv("TERM")
	}
	tlsConfig, err := g.tlsConfig()
	if err != nil {
		return err
	}
	att, created, err := openTerminal(ctx, g, c, app, req, files, client.TerminalOptions{
		Rows: rows, Cols: cols, TLS: tlsConfig, Via: g.attachVia, Notices: g.err})
	if err != nil {
		return err
	}
	if tty {
		fmt.Fprintf(g.err, "Running %s on %s as %s...\n", quoteCommand(req.Command, req.Type), app, created.Name)
	}
	return driveTerminal(ctx, g, att, stdinFd, tty, created.ID)
}

// command is what the CLI sends for its arguments: one runs through the
// shell, several run as they are.
func command(args []string) apitypes.Command {
	switch len(args) {
	case 0:
		return apitypes.Command{}
	case 1:
		return apitypes.Command{Line: args[0]}
	}
	return apitypes.Command{Args: args}
}

// runDetached starts a detached one-off and says how to follow it, or with
// tail follows it to its end.
func runDetached(ctx context.Context, g *globals, app string, req apitypes.CreateOneOff, files []client.File, ttl string, tail bool) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	req.Detached, req.TTL = true, ttl
	created, err := create(ctx, g, c, app, req, files)
	if err != nil {
		return err
	}
	o, err := started(ctx, c, created.OneOff)
	if err != nil {
		return err
	}
	if o.Outcome == apitypes.Failed {
		return fmt.Errorf("%s could not start: %s", o.Name, o.Error)
	}
	lifetime := ""
	if o.ExpiresAt != nil && o.StartedAt != nil {
		lifetime = fmt.Sprintf(", stopped if still running after %s", o.ExpiresAt.Sub(*o.StartedAt).Round(time.Second))
	}
	if tail {
		fmt.Fprintf(g.err, "Started %s on %s (id %s)%s.\n", o.Name, app, o.ID, lifetime)
		return tailOneOff(ctx, g, c, o)
	}
	fmt.Fprintf(g.out, "Started %s on %s (id %s)%s.\n", o.Name, app, o.ID, lifetime)
	fmt.Fprintf(g.out, "Follow its output:  oneoff --app %s logs -f --filter %s\n", app, o.Name)
	fmt.Fprintf(g.out, "See how it ended:   oneoff --app %s inspect %s\n", app, o.Name)
	return nil
}

// startWait bounds how long run --detached waits for a one-off whose image
// is being pulled to start, or fail.
const startWait = 30 * time.Second

// started waits, for at most startWait, until a detached one-off that the
// daemon answered pending (its image being pulled) has started or failed.
func started(ctx context.Context, c *client.Client, o apitypes.OneOff) (apitypes.OneOff, error) {
	deadline := time.Now().Add(startWait)
	for o.State == apitypes.Pending && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return o, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		next, err := c.OneOff(ctx, o.ID)
		if err != nil {
			return o, err
		}
		o = next
	}
	return o, nil
}

// create starts the one-off, sending files with it when there are some.
func create(ctx context.Context, g *globals, c *client.Client, app string, req apitypes.CreateOneOff, files []client.File) (apitypes.Created, error) {
	if len(files) == 0 {
		return c.CreateOneOff(ctx, app, req)
	}
	return c.CreateOneOffWithFiles(ctx, app, req, files, uploadProgress(g))
}

// exitStatusOf turns a finished one-off's record into the CLI's exit status.
func exitStatusOf(g *globals, o apitypes.OneOff) error {
	msg := o.Error
	switch o.Outcome {
	case apitypes.LifetimeExceeded:
		msg = "stopped: it ran past its lifetime"
	case apitypes.OutOfMemory:
		msg = "killed: it ran out of memory"
	}
	return exitStatus(g, o.Name, attach.ExitStatus{Outcome: string(o.Outcome), ExitCode: o.ExitCode, Message: msg})
}

// exitStatus turns how the one-off ended into the CLI's exit status: the
// command's own when it exited, otherwise a sentence and a non-zero code.
func exitStatus(g *globals, name string, s attach.ExitStatus) error {
	code := 0
	if s.ExitCode != nil {
		code = *s.ExitCode
	}
	if s.Outcome == string(apitypes.Exited) {
		if code == 0 {
			return nil
		}
		return exitError{code}
	}
	msg := s.Message
	if msg == "" {
		msg = strings.ReplaceAll(s.Outcome, "_", " ")
	}
	fmt.Fprintf(g.err, "oneoff: %s: %s\n", name, msg)
	if code == 0 {
		code = 1
	}
	return exitError{code}
}

func termSize(fd int, out io.Writer) (rows, cols uint16) {
	w, h, err := term.GetSize(fd)
	if err != nil {
		if f, ok := out.(*os.File); ok {
			w, h, err = term.GetSize(int(f.Fd()))
		}
	}
	if err != nil || w <= 0 || h <= 0 {
		return 0, 0
	}
	return uint16(h), uint16(w)
}

func quoteCommand(cmd apitypes.Command, typ string) string {
	s := cmd.Line
	if cmd.Args != nil {
		s = strings.Join(cmd.Args, " ")
	}
	if typ != "" {
		s = strings.TrimSpace(typ + " " + s)
	}
	return fmt.Sprintf("%q", s)
}

func unix(sig os.Signal) string {
	switch sig {
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGQUIT:
		return "SIGQUIT"
	}
	return sig.String()
}
