// Package oneoff is the domain of one-off containers: what a one-off is, the
// states it goes through, the terminal session of an attached one-off, and
// the reaping that makes sure none outlives its purpose.
//
// It drives a Runtime and writes to a Store, both small interfaces declared
// here and implemented elsewhere.
package oneoff

import (
	"time"
)

// Mode says how a one-off's terminal reaches its user.
type Mode string

// The modes.
const (
	// Attached one-offs start when a terminal connects to the attach endpoint.
	Attached Mode = "attached"
	// Detached one-offs start at once and write to the app's logs.
	Detached Mode = "detached"
)

// State is where a one-off is in its life.
type State string

// The states, in order. A one-off only moves forward.
const (
	// Pending: the container exists but waits for a terminal to attach.
	Pending State = "pending"
	// Running: the container has started.
	Running State = "running"
	// Finished: the container is gone; Outcome says why.
	Finished State = "finished"
)

// Valid reports whether s is one of the states.
func (s State) Valid() bool {
	return s == Pending || s == Running || s == Finished
}

// Step is the engine call a one-off's record was written before: after a
// crash, it tells reconcile what may exist that the record does not say.
type Step string

// The steps, in the order a one-off goes through them.
const (
	// StepNone: no engine call is under way on the one-off's behalf.
	StepNone Step = ""
	// StepCreate: its image is being pulled or its container created; a
	// container may exist that the record does not name yet.
	StepCreate Step = "create"
	// StepUpload: as StepCreate, or its files are being copied into its
	// container, which may then hold only some of them.
	StepUpload Step = "upload"
	// StepStart: its container is being started; it may run although the
	// record still says pending.
	StepStart Step = "start"
	// StepRemove: it has ended, its Outcome, ExitCode and Error say how,
	// and its container is being removed; the record is not finished yet.
	StepRemove Step = "remove"
)

// Outcome says how a finished one-off ended.
type Outcome string

// The outcomes.
const (
	// Exited: the command ended by itself; ExitCode holds its status.
	Exited Outcome = "exited"
	// Stopped: an operator or the platform asked for it to stop.
	Stopped Outcome = "stopped"
	// IdleTimeout: no byte flowed through the terminal for the idle timeout.
	IdleTimeout Outcome = "idle_timeout"
	// AttachTimeout: nobody attached within the attach-wait timeout.
	AttachTimeout Outcome = "attach_timeout"
	// Disconnected: the terminal went away before the command ended.
	Disconnected Outcome = "disconnected"
	// Failed: the container could not be created or started.
	Failed Outcome = "failed"
	// Lost: the daemon stopped while the one-off ran and could not follow it.
	Lost Outcome = "lost"
	// LifetimeExceeded: a detached one-off ran past its lifetime and was stopped.
	LifetimeExceeded Outcome = "lifetime_exceeded"
	// OutOfMemory: the kernel killed it for going over its memory limit.
	OutOfMemory Outcome = "out_of_memory"
)

// OneOff is the record of one run.
type OneOff struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	App     string `json:"app"`
	Release int    `json:"release"`
	Image   string `json:"image"`
	// Command is the argv the container runs.
	Command []string `json:"command"`
	// EnvNames lists the names of the variables the request set; values are
	// never recorded.
	EnvNames []string `json:"env_names,omitempty"`
	Mode     Mode     `json:"mode"`
	TTY      bool     `json:"tty"`
	// Size names the resource limits it runs with.
	Size      string `json:"size,omitempty"`
	Requester string `json:"requester,omitempty"`
	// Uploads are the files put in UploadDir for it.
	Uploads []Uploaded `json:"uploads,omitempty"`

	State    State   `json:"state"`
	Outcome  Outcome `json:"outcome,omitempty"`
	ExitCode *int    `json:"exit_code,omitempty"`
	// Error says what went wrong when Outcome is Failed, Lost or
	// OutOfMemory.
	Error string `json:"error,omitempty"`

	ContainerID string `json:"container_id,omitempty"`
	// Node is the host that runs it, as its runtime names it.
	Node string `json:"node,omitempty"`
	// Step is the engine call under way, recorded before it is made.
	Step Step `json:"-"`
	// Client is the address of the attached terminal, once attached.
	Client string `json:"client,omitempty"`
	// BytesIn and BytesOut count what went through the attached terminal:
	// in from it, out to it.
	BytesIn  int64 `json:"bytes_in"`
	BytesOut int64 `json:"bytes_out"`
	// LastActivity is when a byte last went through the terminal.
	LastActivity *time.Time `json:"last_activity,omitempty"`

	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// AttachDeadline is when a pending attached one-off is discarded.
	AttachDeadline *time.Time `json:"attach_deadline,omitempty"`
	// ExpiresAt is when a detached one-off still running is stopped.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`

	// SecretHash is the SHA-256 of the attach secret; the secret itself is
	// never stored.
	SecretHash []byte `json:"-"`
}

// Filter narrows a listing. Zero fields match everything.
type Filter struct {
	App string
	// Name is a one-off's name, unique within its app.
	Name  string
	State State
	Mode  Mode
	// Limit caps the number of records, newest first; 0 means no cap.
	Limit int
}

// Match reports whether o passes f.
func (f Filter) Match(o OneOff) bool {
	return (f.App == "" || f.App == o.App) &&
		(f.Name == "" || f.Name == o.Name) &&
		(f.State == "" || f.State == o.State) &&
		(f.Mode == "" || f.Mode == o.Mode)
}

// TermSize is a terminal's size in character cells.
type TermSize struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// IsZero reports whether no size is known.
func (s TermSize) IsZero() bool { return s.Rows == 0 || s.Cols == 0 }
