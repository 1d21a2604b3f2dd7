package apitypes

import (
	"bytes"
	"encoding/json"
	"strings"
	"time"
)

// Mode says how a one-off's terminal reaches its user.
type Mode string

// The modes.
const (
	Attached Mode = "attached"
	Detached Mode = "detached"
)

// State is where a one-off is in its life.
type State string

// The states, in order.
const (
	Pending  State = "pending"
	Running  State = "running"
	Finished State = "finished"
)

// Outcome says how a finished one-off ended.
type Outcome string

// The outcomes.
const (
	Exited           Outcome = "exited"
	Stopped          Outcome = "stopped"
	IdleTimeout      Outcome = "idle_timeout"
	AttachTimeout    Outcome = "attach_timeout"
	Disconnected     Outcome = "disconnected"
	Failed           Outcome = "failed"
	Lost             Outcome = "lost"
	LifetimeExceeded Outcome = "lifetime_exceeded"
	OutOfMemory      Outcome = "out_of_memory"
)

// OneOff is a one-off's record as the API shows it.
type OneOff struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	App     string `json:"app"`
	Release int    `json:"release"`
	Image   string `json:"image"`
	// Command is the argv the container runs.
	Command []string `json:"command"`
	// EnvNames lists the names of the variables the request set.
	EnvNames  []string   `json:"env_names,omitempty"`
	Mode      Mode       `json:"mode"`
	TTY       bool       `json:"tty"`
	Size      string     `json:"size,omitempty"`
	Requester string     `json:"requester,omitempty"`
	Uploads   []Uploaded `json:"uploads,omitempty"`

	State    State   `json:"state"`
	Outcome  Outcome `json:"outcome,omitempty"`
	ExitCode *int    `json:"exit_code,omitempty"`
	Error    string  `json:"error,omitempty"`

	ContainerID  string     `json:"container_id,omitempty"`
	Node         string     `json:"node,omitempty"`
	Client       string     `json:"client,omitempty"`
	BytesIn      int64      `json:"bytes_in"`
	BytesOut     int64      `json:"bytes_out"`
	LastActivity *time.Time `json:"last_activity,omitempty"`

	CreatedAt      time.Time  `json:"created_at"`
	StartedAt      *time.Time `json:"started_at,omitempty"`
	FinishedAt     *time.Time `json:"finished_at,omitempty"`
	AttachDeadline *time.Time `json:"attach_deadline,omitempty"`
	ExpiresAt      *time.Time `json:"expires_at,omitempty"`
}

// Uploaded is where an upload went and what arrived.
type Uploaded struct {
	Name    string `json:"name"`
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	SHA256  string `json:"sha256"`
	Archive bool   `json:"archive,omitempty"`
}

// Upload declares a file sent with a request that starts a one-off.
type Upload struct {
	// Name is the name the file gets, made safe.
	Name string `json:"name"`
	// Size is the number of bytes that will be sent.
	Size int64 `json:"size"`
	// Archive says the content is a tar.gz of a directory.
	Archive bool `json:"archive,omitempty"`
}

// TermSize is a terminal's size in character cells.
type TermSize struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// Command is what a one-off runs: either a shell line, run through
// /bin/sh -c, or an argument list, run as is.
type Command struct {
	Line string
	Args []string
}

// UnmarshalJSON accepts a string (a shell line) or an array of strings.
func (c *Command) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	*c = Command{}
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &c.Line)
	}
	return json.Unmarshal(b, &c.Args)
}

// MarshalJSON writes the form the command was given in.
func (c Command) MarshalJSON() ([]byte, error) {
	if c.Args != nil {
		return json.Marshal(c.Args)
	}
	return json.Marshal(c.Line)
}

// String is the command as a user typed it.
func (c Command) String() string {
	if c.Args != nil {
		return strings.Join(c.Args, " ")
	}
	return c.Line
}

// CreateOneOff is the body of POST /v1/apps/{app}/oneoffs.
type CreateOneOff struct {
	Command Command           `json:"command"`
	Type    string            `json:"type,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	TTY     *bool             `json:"tty,omitempty"`
	// Window is the terminal's size, for a TTY.
	Window *TermSize `json:"window,omitempty"`
	// Size names the resource limits, from the daemon's size table.
	Size      string `json:"size,omitempty"`
	Term      string `json:"term,omitempty"`
	Requester string `json:"requester,omitempty"`
	// Detached starts the one-off at once, its output going to the app's
	// log; TTY then defaults to false.
	Detached bool `json:"detached,omitempty"`
	// TTL is a detached one-off's lifetime, a duration such as "90m";
	// the daemon's maximum when empty.
	TTL string `json:"ttl,omitempty"`
	// Files declares the files sent with the request, in the order of its
	// "file" parts; only with multipart/form-data.
	Files []Upload `json:"files,omitempty"`
}

// Created is the answer to POST /v1/apps/{app}/oneoffs: the one-off, and
// for an attached one, where and how its terminal attaches.
type Created struct {
	OneOff
	AttachURL    string `json:"attach_url,omitempty"`
	AttachSecret string `json:"attach_secret,omitempty"`
}

// AuditEvent is one entry of the audit trail: who did what to which
// one-off, and when.
type AuditEvent struct {
	Time       time.Time `json:"time"`
	App        string    `json:"app"`
	OneOffID   string    `json:"oneoff_id"`
	OneOffName string    `json:"oneoff_name"`
	// Action is create, attach, stop, reap or exit.
	Action string `json:"action"`
	Actor  string `json:"actor"`
	Detail string `json:"detail,omitempty"`
}

// LogLine is one line of an app's log.
type LogLine struct {
	Time time.Time `json:"time"`
	App  string    `json:"app"`
	// Source is the one-off's name, e.g. one-off-4821.
	Source string `json:"source"`
	// Stream is "stdout" or "stderr".
	Stream string `json:"stream"`
	Text   string `json:"text"`
}
