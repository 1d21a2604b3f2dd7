// Command oneoffd is the daemon that runs one-off containers: it serves the
// HTTP API and the attach endpoint, and drives the Docker engine.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// Signals are registered before anything starts: the first asks for a
	// graceful drain, the second exits at once.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-sigs
		cancel()
		<-sigs
		fmt.Fprintln(os.Stderr, "oneoffd: second signal, exiting now")
		os.Exit(2)
	}()
	err := run(ctx, os.Args[1:])
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "oneoffd:", err)
		os.Exit(1)
	}
}
