package oneoff

import (
	"context"
	"io"
	"time"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
)

// Runtime runs containers. Its methods follow a container's life: Create,
// Attach, Start, Resize, Wait, Stop, Remove.
type Runtime interface {
	Puller
	// Create makes a container from spec without starting it.
	Create(ctx context.Context, spec Spec) (containerID string, err error)
	// Attach connects to the container's stdio; call it before Start so
	// that no early output is lost.
	Attach(ctx context.Context, containerID string, tty bool) (Stream, error)
	// Wait returns a channel that yields how the container's run ends. For
	// a container yet to start (started false; call it before Start) that
	// is its next exit; for one already started, the end of that run, at
	// once if it has ended.
	Wait(ctx context.Context, containerID string, started bool) <-chan Exit
	// Logs reads what the container wrote to its log, from opts.Since on
	// (inclusive), and with opts.Follow goes on until the container stops.
	// Only containers created with Spec.Logs keep a log.
	Logs(ctx context.Context, containerID string, opts LogOptions) (LogReader, error)
	// Start starts a created container.
	Start(ctx context.Context, containerID string) error
	// CopyTo unpacks a tar stream into dir in the container, which may
	// not have started yet.
	CopyTo(ctx context.Context, containerID, dir string, tar io.Reader) error
	// Resize sets the size of the container's TTY.
	Resize(ctx context.Context, containerID string, size TermSize) error
	// Signal sends a signal, by name (e.g. "INT"), to the container's process.
	Signal(ctx context.Context, containerID, signal string) error
	// Stop sends SIGTERM, then SIGKILL after grace.
	Stop(ctx context.Context, containerID string, grace time.Duration) error
	// Remove deletes the container, running or not. Removing a container
	// that does not exist is not an error.
	Remove(ctx context.Context, containerID string) error
	// List returns the containers, running or not, carrying all of labels.
	List(ctx context.Context, labels map[string]string) ([]Container, error)
	// Prune removes what the runtime made for containers that are gone,
	// such as an app's network once none of its containers is left.
	Prune(ctx context.Context) error
}

// CodeEngineUnavailable is the errdefs code of a Runtime error that says
// the engine does not answer, or went away in the middle of a call.
const CodeEngineUnavailable = "engine_unavailable"

// EngineGone reports whether err says the engine does not answer or went
// away, rather than that the call itself failed.
func EngineGone(err error) bool {
	e, ok := errdefs.As(err)
	return ok && e.Code == CodeEngineUnavailable
}

// Spec is what a container is made from.
type Spec struct {
	Name   string
	Image  string
	Cmd    []string
	Env    []string // KEY=VALUE
	TTY    bool
	Stdin  bool // keep stdin open for an attached terminal
	Labels map[string]string
	// App is the app the container runs for: the runtime keeps the
	// containers of different apps apart (a network each). Empty, the
	// container belongs to no app and gets the engine's default network.
	App string
	// Window is the TTY's initial size; engines older than API 1.42
	// ignore it, so it is set again right after Start.
	Window TermSize
	// Limits are the resources the container may use.
	Limits Size
	// Logs keeps the container's output in the engine's log, to be read
	// with Runtime.Logs; without it the output only goes to an attachment.
	Logs bool
}

// LogOptions say which part of a container's log to read.
type LogOptions struct {
	TTY   bool
	Since time.Time
	// Tail, when positive, reads only the last Tail entries.
	Tail   int
	Follow bool
}

// LogReader reads a container's log.
type LogReader interface {
	// Next returns the next entry; io.EOF at the end.
	Next() (LogEntry, error)
	Close() error
}

// LogEntry is one message of a container's log: a line, or a part of a
// long one.
type LogEntry struct {
	Time   time.Time
	Stream string // "stdout" or "stderr"
	Data   []byte
}

// Stream is the container's stdio, attached.
type Stream interface {
	// Write sends bytes to the container's stdin.
	Write(p []byte) (int, error)
	// CloseWrite ends the container's stdin.
	CloseWrite() error
	// CopyOutput copies the container's output until it ends: with a TTY
	// everything goes to stdout, without one the two streams stay apart.
	CopyOutput(stdout, stderr io.Writer) error
	// Close ends the attachment.
	Close() error
}

// Exit is how a container ended.
type Exit struct {
	Code int
	// OOMKilled says the kernel killed it for exceeding its memory limit.
	OOMKilled bool
	// Err says the wait itself failed; Code is meaningless. EngineGone(Err)
	// says the engine went away, and the container may still be there
	// when it is back.
	Err error
}

// Container is a container the Runtime found.
type Container struct {
	ID      string
	Labels  map[string]string
	Running bool
	// Started says it was started once: it runs, or it ran and exited.
	Started bool
}

// Store persists one-off records.
type Store interface {
	// CreateOneOff inserts a new record; a name already taken within the
	// app is an errdefs.ErrConflict error.
	CreateOneOff(ctx context.Context, o OneOff) error
	// UpdateOneOff replaces a record, unless the record is finished and o
	// is not: a finished one-off's end, once recorded, stays.
	UpdateOneOff(ctx context.Context, o OneOff) error
	// OneOff returns a record, or an errdefs.ErrNotFound error.
	OneOff(ctx context.Context, id string) (OneOff, error)
	// OneOffs lists the records that pass f, newest first.
	OneOffs(ctx context.Context, f Filter) ([]OneOff, error)
	// AddAudit appends an event to the audit trail.
	AddAudit(ctx context.Context, ev AuditEvent) error
	// Audit lists the audit trail's events that pass f, newest first.
	Audit(ctx context.Context, f AuditFilter) ([]AuditEvent, error)
	// PruneOneOffs deletes the records of the one-offs finished before
	// before, and says how many.
	PruneOneOffs(ctx context.Context, before time.Time) (int, error)
	// PruneAudit deletes the audit trail's events older than before, and
	// says how many.
	PruneAudit(ctx context.Context, before time.Time) (int, error)
}

// Releases tells which release an app runs now.
type Releases interface {
	Current(ctx context.Context, app string) (deploy.Release, error)
}

// LogLine is one line of a one-off's output in its app's log.
type LogLine struct {
	// Time is when the engine received the line.
	Time time.Time `json:"time"`
	App  string    `json:"app"`
	// Source is the one-off's name, e.g. one-off-4821.
	Source string `json:"source"`
	// Stream is "stdout" or "stderr".
	Stream string `json:"stream"`
	// Text is the line without its newline.
	Text string `json:"text"`
}

// LogCursor is where a source's stored lines end, stream by stream: the
// engine stamps each stream's lines in order, but lines of the two streams
// may reach the log slightly out of time order.
type LogCursor struct {
	Stdout, Stderr StreamCursor
}

// StreamCursor is the time of a stream's last stored line and how many of
// the stream's lines carry exactly that time.
type StreamCursor struct {
	Time  time.Time
	Count int
}

// Of returns the cursor of a stream, "stdout" or "stderr".
func (c *LogCursor) Of(stream string) *StreamCursor {
	if stream == "stderr" {
		return &c.Stderr
	}
	return &c.Stdout
}

// Add moves the cursor past a line just stored.
func (c *LogCursor) Add(l LogLine) {
	sc := c.Of(l.Stream)
	switch {
	case sc.Count > 0 && l.Time.Equal(sc.Time):
		sc.Count++
	case sc.Count == 0 || l.Time.After(sc.Time):
		*sc = StreamCursor{Time: l.Time, Count: 1}
	}
}

// LogSink keeps apps' logs.
type LogSink interface {
	// Append adds lines to their apps' logs, in order; once it returns
	// they survive a crash of the process.
	Append(ctx context.Context, lines []LogLine) error
	// Resume says where source's stored lines in app's log end, stream by
	// stream; the zero cursor when it has none.
	Resume(ctx context.Context, app, source string) (LogCursor, error)
}
