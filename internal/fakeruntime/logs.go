package fakeruntime

import (
	"context"
	"slices"
	"sync"

	"github.com/oneoffd/oneoffd/oneoff"
)

var _ oneoff.LogSink = (*Logs)(nil)

// Logs is an in-memory oneoff.LogSink.
type Logs struct {
	mu    sync.Mutex
	lines []oneoff.LogLine
}

// Append keeps lines.
func (l *Logs) Append(_ context.Context, lines []oneoff.LogLine) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, lines...)
	return nil
}

// Resume finds where source's lines end.
func (l *Logs) Resume(_ context.Context, app, source string) (oneoff.LogCursor, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var c oneoff.LogCursor
	for _, line := range l.lines {
		if line.App == app && line.Source == source {
			c.Add(line)
		}
	}
	return c, nil
}

// Lines returns the lines kept so far.
func (l *Logs) Lines() []oneoff.LogLine {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}
