package oneoff

import (
	"context"
	"io"
	"time"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
)

// Runtime runs one-offs' containers, on one engine or on a cluster that
// places them. It speaks of what a one-off needs rather than of an engine's
// calls: Create prepares the container with nothing of the one-off's running
// yet, so that its files go in first (CopyTo); Start runs its command,
// attached or detached; Resize, Signal, Stop and Wait act on the running
// command; Remove takes everything away; List finds what is left. A
// container is named by the ID that Create returns, which only the runtime
// interprets.
type Runtime interface {
	Puller
	// Create prepares a container from spec and says where it was placed.
	// Nothing of spec.Cmd runs before Start.
	Create(ctx context.Context, spec Spec) (Placement, error)
	// CopyTo unpacks a tar stream into dir in the container, before Start.
	CopyTo(ctx context.Context, id, dir string, tar io.Reader) error
	// Start runs the container's command. With opts.Attach the command's
	// stdio is connected before it starts, so that nothing it prints is
	// lost, and comes back as Process.Stream. ctx bounds the call;
	// Process.Exit yields how the command ends, or an error once opts.Watch
	// is done.
	Start(ctx context.Context, id string, opts StartOptions) (Process, error)
	// Wait yields how the command of a container started before, by this
	// process or an earlier one, ends: at once if it has ended.
	Wait(ctx context.Context, id string) <-chan Exit
	// Logs reads what the command wrote to its log, from opts.Since on
	// (inclusive), and with opts.Follow goes on until it ends. Only
	// containers created with Spec.Logs keep a log.
	Logs(ctx context.Context, id string, opts LogOptions) (LogReader, error)
	// Resize sets the size of the command's TTY.
	Resize(ctx context.Context, id string, size TermSize) error
	// Signal sends a signal, by name (e.g. "INT"), to the command.
	Signal(ctx context.Context, id, signal string) error
	// Stop sends SIGTERM to the command, then SIGKILL after grace.
	Stop(ctx context.Context, id string, grace time.Duration) error
	// Remove deletes the container and all the runtime made for it,
	// running or not. Removing one that does not exist is not an error.
	Remove(ctx context.Context, id string) error
	// List returns the containers, running or not, carrying all of labels.
	List(ctx context.Context, labels map[string]string) ([]Container, error)
	// Prune removes what the runtime made for containers that are gone,
	// such as an app's network once none of its containers is left, or a
	// container a lost node left behind.
	Prune(ctx context.Context) error
}

// Placement is where Create put a container.
type Placement struct {
	// ID names the container in the Runtime's other calls.
	ID string
	// Node is the name of the host that runs it, for operators.
	Node string
}

// StartOptions say how to run a container's command.
type StartOptions struct {
	// Attach connects the command's stdio before it starts.
	Attach bool
	// TTY says the container has a terminal: its output is one stream.
	TTY bool
	// Watch bounds how long Process.Exit is watched; nil watches until the
	// command ends.
	Watch context.Context
}

// Process is a command that Start started.
type Process struct {
	// Stream is the command's stdio, when attached.
	Stream Stream
	// Exit yields how the command ends.
	Exit <-chan Exit
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

// CodeNodeLost is the errdefs code of an Exit error that says the node
// running the container was lost: the cluster has given it up, and the
// one-off with it.
const CodeNodeLost = "node_lost"

// NodeLost reports whether err says the node running the container was
// lost.
func NodeLost(err error) bool {
	e, ok := errdefs.As(err)
	return ok && e.Code == CodeNodeLost
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
	ID     string
	Labels map[string]string
	// Node is the name of the host it is on, when the runtime knows.
	Node    string
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
