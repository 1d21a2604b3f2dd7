package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/oneoffd/oneoffd/client"
)

// healthCommand asks the daemon's /healthz whether it is alive: what the
// container image's HEALTHCHECK and a service manager's probes run. It needs
// no token.
func healthCommand(g *globals) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Check that the daemon answers (no token needed; exit status 1 if not)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tlsConfig, err := g.tlsConfig()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			h, err := client.New(g.api, "", tlsConfig).Health(ctx)
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("oneoffd at %s did not answer within %s", g.api, timeout)
			}
			if err != nil {
				return err
			}
			if status, _ := h["status"].(string); status != "ok" {
				return fmt.Errorf("oneoffd at %s is not healthy: it answered status %q", g.api, status)
			}
			if v, _ := h["version"].(string); v != "" {
				fmt.Fprintln(g.out, "ok", v)
			} else {
				fmt.Fprintln(g.out, "ok")
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "how long to wait for the answer")
	return cmd
}
