package oneoff

import (
	"errors"
	"fmt"
	"testing"

	"github.com/oneoffd/oneoffd/errdefs"
)

func TestDecideEnd(t *testing.T) {
	nodeLost := errdefs.Unavailable(CodeNodeLost, nil, "node n1 is down")
	engineGone := errdefs.Unavailable(CodeEngineUnavailable, nil, "the Docker engine went away")
	waitFailed := errors.New("no such container")
	oom := "killed: it ran out of memory (size S allows 256 MiB)"
	const (
		none  = -1 // no exit code
		anyOf = "" // any stop reason: the row holds for each
	)
	reasons := []Outcome{"", Stopped, IdleTimeout, Disconnected, LifetimeExceeded}
	for _, tt := range []struct {
		name          string
		reason        Outcome // anyOf: every one of reasons
		exit          Exit
		engineWasGone bool
		outcome       Outcome // "" for the reason itself
		code          int
		err, told     string
	}{
		{name: "exited", reason: "", exit: Exit{Code: 3}, outcome: Exited, code: 3},
		{name: "stopped", reason: Stopped, exit: Exit{Code: 143}, code: 143, told: "stopped by alice"},
		{name: "idle", reason: IdleTimeout, exit: Exit{Code: 143}, code: 143},
		{name: "disconnected", reason: Disconnected, exit: Exit{Code: 143}, code: 143},
		{name: "lifetime", reason: LifetimeExceeded, exit: Exit{Code: 137}, code: 137},
		{name: "out of memory", reason: "", exit: Exit{Code: 137, OOMKilled: true}, outcome: OutOfMemory, code: 137,
			err: oom, told: oom + "; a larger --size may help"},
		{name: "a stop wins over memory", reason: Stopped, exit: Exit{Code: 137, OOMKilled: true}, code: 137, told: "stopped by alice"},
		{name: "the engine took it along", reason: "", exit: Exit{Code: 255}, engineWasGone: true, outcome: Lost, code: 255,
			err:  "the Docker engine went away while it ran and took it along (exit code 255)",
			told: "the Docker engine went away while it ran and took it along (exit code 255)"},
		{name: "255 without the engine gone", reason: "", exit: Exit{Code: 255}, outcome: Exited, code: 255},
		{name: "a stop wins over the engine's 255", reason: Stopped, exit: Exit{Code: 255}, engineWasGone: true, code: 255, told: "stopped by alice"},
		{name: "node lost", reason: anyOf, exit: Exit{Code: -1, Err: nodeLost}, outcome: Lost, code: none,
			err: "the node n1 that ran it was lost", told: "the node n1 that ran it was lost: how it ended is unknown"},
		{name: "engine gone", reason: anyOf, exit: Exit{Code: -1, Err: engineGone}, outcome: Lost, code: none,
			err: "the Docker engine went away while it ran", told: "the Docker engine went away while the one-off ran: how it ended is unknown"},
		{name: "wait failed", reason: anyOf, exit: Exit{Code: -1, Err: waitFailed}, outcome: Lost, code: none,
			err: "no such container", told: "lost track of the container: no such container"},
	} {
		rs := []Outcome{tt.reason}
		if tt.reason == anyOf && tt.exit.Err != nil {
			rs = reasons
		}
		for _, reason := range rs {
			t.Run(fmt.Sprintf("%s/%s", tt.name, reason), func(t *testing.T) {
				in := runEnd{reason: reason, exit: tt.exit, engineWasGone: tt.engineWasGone,
					size: "S", memory: "256 MiB", node: "n1"}
				if reason == Stopped {
					in.stoppedBy = "stopped by alice"
				}
				got := decideEnd(in)
				want := tt.outcome
				if want == "" {
					want = reason
				}
				if got.outcome != want {
					t.Errorf("got outcome %q, want %q", got.outcome, want)
				}
				switch {
				case tt.code == none && got.code != nil:
					t.Errorf("got exit code %d, want none", *got.code)
				case tt.code != none && (got.code == nil || *got.code != tt.code):
					t.Errorf("got exit code %v, want %d", got.code, tt.code)
				}
				if got.err != tt.err {
					t.Errorf("got error %q, want %q", got.err, tt.err)
				}
				if got.told != tt.told {
					t.Errorf("got told %q, want %q", got.told, tt.told)
				}
				if res := got.result(); res.Outcome != got.outcome || res.ExitCode != got.code || res.Message != got.told {
					t.Errorf("got result %+v, want the ending's outcome, code and sentence", res)
				}
			})
		}
	}
	t.Run("node lost, its name unknown", func(t *testing.T) {
		got := decideEnd(runEnd{exit: Exit{Code: -1, Err: nodeLost}})
		if want := "the node that ran it was lost"; got.err != want {
			t.Errorf("got error %q, want %q", got.err, want)
		}
	})
}
