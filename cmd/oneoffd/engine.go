package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oneoffd/oneoffd/oneoff"
	"github.com/oneoffd/oneoffd/runtime/docker"
)

// engine is what the daemon needs of the runtime that runs its one-offs,
// besides what the manager drives.
type engine interface {
	oneoff.Runtime
	// Ping checks that the engine, or the cluster's manager, answers.
	Ping(ctx context.Context) error
	// Probe learns, at start-up, what the engine supports.
	Probe(ctx context.Context) error
	// Instrument registers the engine's metrics.
	Instrument(reg prometheus.Registerer)
	// ReadyDetails say what /readyz reports beside the checks.
	ReadyDetails() []string
	// Address is where the engine is reached, for the log.
	Address() string
	// PruneWait removes what ended one-offs left, waiting a moment for the
	// engine to let go of it.
	PruneWait(ctx context.Context) error
	Close() error
}

// openEngine connects to what cfg says runs the one-offs.
func openEngine(cfg config, log *slog.Logger) (engine, error) {
	switch cfg.Engine {
	case "swarm":
		return openSwarm(cfg, log)
	}
	d, err := docker.New(cfg.DockerHost)
	if err != nil {
		return nil, err
	}
	d.SetIsolation(cfg.Isolation)
	d.SetLogger(log)
	if risky := docker.RiskyCapabilities(cfg.Isolation.Capabilities); len(risky) > 0 {
		log.Warn("one-offs keep capabilities that reach beyond their container", "capabilities", strings.Join(risky, ","))
	}
	if cfg.RegistryConfig != "" {
		auths, err := docker.LoadDockerConfig(cfg.RegistryConfig)
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("--registry-config: %w", err)
		}
		d.SetRegistryAuth(auths)
	}
	return dockerEngine{d}, nil
}

// dockerEngine is one Docker engine.
type dockerEngine struct{ *docker.Runtime }

func (e dockerEngine) ReadyDetails() []string { return e.Isolation().Details() }

func (e dockerEngine) Address() string { return e.Client().DaemonHost() }

// openSwarm connects to the Swarm cluster whose manager's engine is at
// cfg.DockerHost.
func openSwarm(cfg config, log *slog.Logger) (engine, error) {
	return nil, fmt.Errorf("--engine swarm: not built in")
}
