package logs

import (
	"slices"
	"strings"
	"time"
)

// DrainStats says what a drain has done since it was made.
type DrainStats struct {
	// Sent counts lines written to the server; a line resent after a lost
	// connection counts again.
	Sent uint64
	// Dropped counts lines dropped, oldest first, from a full buffer.
	Dropped uint64
	// Errors counts failed connection attempts, failed writes and
	// connections found closed.
	Errors uint64
	// Buffered is how many lines wait to be sent.
	Buffered int
	// Connected says whether the drain holds a connection that was open when
	// last used or checked.
	Connected bool
	// LastError says what went wrong last, "" if nothing has yet; LastErrorAt
	// says when.
	LastError   string
	LastErrorAt time.Time
	// FailingSince is when the failures under way began; zero while the
	// drain has not failed since it last delivered.
	FailingSince time.Time
}

// State sums the counts up: connected, failing or idle.
func (s DrainStats) State() DrainState {
	switch {
	case s.Connected && s.FailingSince.IsZero():
		return DrainConnected
	case !s.FailingSince.IsZero():
		return DrainFailing
	}
	return DrainIdle
}

// DrainState is where a drain stands.
type DrainState string

// The drain states.
const (
	// DrainIdle has no connection and no failure: nothing to send yet.
	DrainIdle DrainState = "idle"
	// DrainConnected holds a working connection.
	DrainConnected DrainState = "connected"
	// DrainFailing could not connect or deliver since FailingSince; it
	// keeps trying, with backoff.
	DrainFailing DrainState = "failing"
)

// DrainStatus is a drain's state as the API shows it.
type DrainStatus struct {
	// URL is the drain's URL, without credentials.
	URL string `json:"url"`
	// App is the app whose lines the drain gets; "" for a daemon-wide
	// drain, which gets every app's.
	App   string     `json:"app,omitempty"`
	State DrainState `json:"state"`
	// Sent, Dropped, Errors and Buffered are DrainStats' counts.
	Sent     uint64 `json:"sent"`
	Dropped  uint64 `json:"dropped"`
	Errors   uint64 `json:"errors"`
	Buffered int    `json:"buffered"`
	// LastError is what went wrong last, at LastErrorAt.
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	// FailingSince is when the failures under way began.
	FailingSince *time.Time `json:"failing_since,omitempty"`
}

// status returns the status of a drain of app ("" for daemon-wide).
func (d *SyslogDrain) status(app string) DrainStatus {
	s := d.Stats()
	st := DrainStatus{URL: d.URL(), App: app, State: s.State(),
		Sent: s.Sent, Dropped: s.Dropped, Errors: s.Errors, Buffered: s.Buffered, LastError: s.LastError}
	if !s.LastErrorAt.IsZero() {
		st.LastErrorAt = &s.LastErrorAt
	}
	if !s.FailingSince.IsZero() {
		st.FailingSince = &s.FailingSince
	}
	return st
}

// AppStatus returns the state of app's drains, by URL; none for nil Drains.
func (ds *Drains) AppStatus(app string) []DrainStatus {
	if ds == nil {
		return []DrainStatus{}
	}
	ds.mu.RLock()
	defer ds.mu.RUnlock()
	out := make([]DrainStatus, 0, len(ds.apps[app]))
	for _, rd := range ds.apps[app] {
		out = append(out, rd.drain.status(app))
	}
	sortStatus(out)
	return out
}

// Status returns the state of every drain: the daemon-wide ones first,
// then the apps', by app and URL; none for nil Drains.
func (ds *Drains) Status() []DrainStatus {
	if ds == nil {
		return nil
	}
	ds.mu.RLock()
	defer ds.mu.RUnlock()
	var out []DrainStatus
	for _, rd := range ds.global {
		out = append(out, rd.drain.status(""))
	}
	for app, drains := range ds.apps {
		for _, rd := range drains {
			out = append(out, rd.drain.status(app))
		}
	}
	sortStatus(out)
	return out
}

func sortStatus(s []DrainStatus) {
	slices.SortFunc(s, func(a, b DrainStatus) int {
		if c := strings.Compare(a.App, b.App); c != 0 {
			return c
		}
		return strings.Compare(a.URL, b.URL)
	})
}
