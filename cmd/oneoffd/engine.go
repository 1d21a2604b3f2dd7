package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/docker/docker/api/types/registry"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/oneoffd/oneoffd/oneoff"
	"github.com/oneoffd/oneoffd/runtime/docker"
	"github.com/oneoffd/oneoffd/runtime/swarm"
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
	var auths map[string]registry.AuthConfig
	if cfg.RegistryConfig != "" {
		var err error
		if auths, err = docker.LoadDockerConfig(cfg.RegistryConfig); err != nil {
			return nil, fmt.Errorf("--registry-config: %w", err)
		}
	}
	if cfg.Engine == "swarm" {
		return openSwarm(cfg, auths, log)
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
	if auths != nil {
		d.SetRegistryAuth(auths)
	}
	return dockerEngine{d}, nil
}

// dockerEngine is one Docker engine.
type dockerEngine struct{ *docker.Runtime }

func (e dockerEngine) ReadyDetails() []string { return e.Isolation().Details() }

func (e dockerEngine) Address() string { return e.Client().DaemonHost() }

// openSwarm connects to the Swarm cluster whose manager's engine is at
// cfg.DockerHost, reaching it and the nodes with the certificate in
// cfg.NodeTLSDir.
func openSwarm(cfg config, auths map[string]registry.AuthConfig, log *slog.Logger) (engine, error) {
	tls := swarm.TLS{CACert: filepath.Join(cfg.NodeTLSDir, "ca.pem"), Cert: filepath.Join(cfg.NodeTLSDir, "cert.pem"), Key: filepath.Join(cfg.NodeTLSDir, "key.pem")}
	for _, f := range []string{tls.CACert, tls.Cert, tls.Key} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("--node-tls-dir: %w: it must hold ca.pem, cert.pem and key.pem", err)
		}
	}
	rt, err := swarm.New(swarm.Options{
		Manager: cfg.DockerHost, TLS: tls, NodePort: cfg.NodePort, PlaceTimeout: cfg.PlaceTimeout,
		PullTimeout: cfg.PullTimeout, Placement: cfg.Placement, Warm: cfg.Warm,
		Instance: cfg.Isolation.Instance, Isolation: cfg.Isolation, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	if auths != nil {
		rt.SetRegistryAuth(auths)
	}
	return swarmEngine{rt, cfg.Isolation}, nil
}

// swarmEngine is a Swarm cluster, and the isolation asked of it.
type swarmEngine struct {
	*swarm.Runtime
	iso docker.Isolation
}

// Probe has nothing to learn: what a node supports is the node's.
func (e swarmEngine) Probe(context.Context) error { return nil }

// Instrument registers nothing yet: the manager's and the nodes' calls
// are not measured.
func (e swarmEngine) Instrument(prometheus.Registerer) {}

func (e swarmEngine) ReadyDetails() []string {
	out := []string{"engine swarm: no disk quota; no-new-privileges needs nodes of API 1.46 or later"}
	if !e.iso.AppNetworks {
		out = append(out, "app networks: off (one-offs of all apps share each node's default bridge)")
	}
	if !e.iso.NoNewPrivileges {
		out = append(out, "no-new-privileges: off")
	}
	if risky := docker.RiskyCapabilities(e.iso.Capabilities); len(risky) > 0 {
		out = append(out, "capabilities: "+strings.Join(risky, ", ")+" granted")
	}
	return out
}

func (e swarmEngine) Address() string { return e.Client().DaemonHost() }

// PruneWait removes containers of one-offs whose service is gone.
func (e swarmEngine) PruneWait(ctx context.Context) error { return e.Prune(ctx) }
