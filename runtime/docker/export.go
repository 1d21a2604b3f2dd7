package docker

import (
	"fmt"
	"io"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/registry"
	"github.com/docker/docker/client"

	"github.com/oneoffd/oneoffd/oneoff"
)

// What another runtime built on Docker engines (runtime/swarm) shares with
// this one: the attached stream, the log reader, the registry credentials
// and the way an engine's going away is recognised.

// NewWithClient returns a Runtime that drives the engine cli talks to, with
// the default isolation; Close closes cli.
func NewWithClient(cli *client.Client) *Runtime {
	return &Runtime{cli: cli, iso: DefaultIsolation("")}
}

// NewStream returns the attached stdio of a hijacked connection to an
// engine, as ContainerAttach or ContainerExecAttach return it: one stream
// with a TTY, the engine's multiplexed stdout and stderr without.
func NewStream(resp types.HijackedResponse, tty bool) oneoff.Stream {
	return &stream{resp: resp, tty: tty}
}

// NewLogReader reads an engine's log stream asked for with timestamps, as
// ContainerLogs and TaskLogs return it.
func NewLogReader(rc io.ReadCloser, tty bool) oneoff.LogReader {
	return newLogReader(rc, tty)
}

// EngineWentAway reports whether err is an engine's connection ending in
// the middle of a request or a stream, as when the engine stops or is
// killed, rather than the caller giving up.
func EngineWentAway(err error) bool { return engineWentAway(err) }

// EncodedRegistryAuth returns the credentials set with SetRegistryAuth for
// the registry of the image ref, encoded as an engine's X-Registry-Auth
// header wants them, or "" when none are set.
func (d *Runtime) EncodedRegistryAuth(ref string) (string, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", invalidImage(ref, err)
	}
	ac, ok := d.registryAuth(reference.Domain(named))
	if !ok {
		return "", nil
	}
	enc, err := registry.EncodeAuthConfig(ac)
	if err != nil {
		return "", fmt.Errorf("encode the credentials for %s: %w", reference.Domain(named), err)
	}
	return enc, nil
}
