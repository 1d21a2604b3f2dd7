// Command oneoff is the CLI of oneoffd: it runs one-off containers of an
// app with a terminal attached, and lists, inspects and stops them.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"

	"github.com/spf13/cobra"

	"github.com/oneoffd/oneoffd/client"
	"github.com/oneoffd/oneoffd/internal/version"
)

// exitError carries an exit code out of a command: the one-off's own.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	err := run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode maps run's error to the process's exit status, printing the
// error's message (never a chain of wrappers for an API error).
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	var apiErr *client.Error
	if errors.As(err, &apiErr) {
		fmt.Fprintln(stderr, "oneoff:", apiErr.Message)
		return 1
	}
	fmt.Fprintln(stderr, "oneoff:", err)
	return 1
}

// globals are the options every command shares.
type globals struct {
	api    string
	token  string
	caCert string
	app    string
	stdin  io.Reader
	out    io.Writer
	err    io.Writer

	// attachVia is how terminals reach the attach endpoint (--attach-via).
	attachVia string
}

func (g *globals) client() (*client.Client, error) {
	token := g.token
	if token == "" {
		token, _ = client.LocalToken()
	}
	if token == "" {
		_, path := client.LocalToken()
		return nil, fmt.Errorf("no API token: pass --token or set ONEOFF_API_TOKEN (a daemon on this machine keeps it in %s)", path)
	}
	tlsConfig, err := g.tlsConfig()
	if err != nil {
		return nil, err
	}
	c := client.New(g.api, token, tlsConfig).WithRequester(requester())
	return c.WithVersionCheck(func(daemon string) {
		fmt.Fprintf(g.err, "oneoff: warning: the daemon at %s speaks API v%s, this oneoff v%d: commands may fail; use a matching oneoff\n",
			g.api, daemon, version.API)
	}), nil
}

// requester names the user for the audit trail: ONEOFF_REQUESTER, else
// the local user at this host.
func requester() string {
	if r := os.Getenv("ONEOFF_REQUESTER"); r != "" {
		return r
	}
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	if host, err := os.Hostname(); err == nil {
		name += "@" + host
	}
	return name
}

// tlsConfig trusts --ca-cert, when given, besides the system's roots.
func (g *globals) tlsConfig() (*tls.Config, error) {
	if g.caCert == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(g.caCert)
	if err != nil {
		return nil, fmt.Errorf("read --ca-cert: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-cert %s holds no PEM certificate", g.caCert)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

func (g *globals) needApp() (string, error) {
	if g.app == "" {
		return "", errors.New("which app? pass --app APP (or -a APP, or set ONEOFF_APP)")
	}
	return g.app, nil
}

// appClient returns the app the command is for and a client of the
// daemon, for the commands that need both.
func (g *globals) appClient() (string, *client.Client, error) {
	app, err := g.needApp()
	if err != nil {
		return "", nil, err
	}
	c, err := g.client()
	return app, c, err
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	g := &globals{stdin: stdin, out: stdout, err: stderr}
	root := &cobra.Command{
		Use:           "oneoff",
		Short:         "Run one-off containers of your apps",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.String(),
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	pf := root.PersistentFlags()
	pf.StringVar(&g.api, "api", envOr("ONEOFF_API_URL", "http://127.0.0.1:8080"), "oneoffd API URL (env ONEOFF_API_URL)")
	pf.StringVar(&g.token, "token", os.Getenv("ONEOFF_API_TOKEN"), "API token (env ONEOFF_API_TOKEN; default: the local daemon's)")
	pf.StringVar(&g.caCert, "ca-cert", os.Getenv("ONEOFF_CA_CERT"), "CA certificate to trust for a TLS daemon (env ONEOFF_CA_CERT)")
	pf.StringVarP(&g.app, "app", "a", os.Getenv("ONEOFF_APP"), "app name (env ONEOFF_APP)")
	root.AddCommand(attachCommand(g), replayCommand(g))
	root.AddCommand(runCommand(g), logsCommand(g), psCommand(g), inspectCommand(g), stopCommand(g),
		deployCommand(g), appsCommand(g), drainsCommand(g), auditCommand(g), versionCommand(g), healthCommand(g),
		cronCommand(g))
	root.SetFlagErrorFunc(flagError)
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil {
		err = requiredFlags(cmd, commandError(root, err))
	}
	return err
}
