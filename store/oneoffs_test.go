package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

// fullOneOff returns a one-off with every field set, its times in a zone
// other than UTC and with nanoseconds, to test that they round-trip.
func fullOneOff(id, app string) oneoff.OneOff {
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	created := time.Date(2025, 3, 14, 15, 9, 26, 535897932, zone)
	started := created.Add(1500 * time.Millisecond)
	finished := started.Add(time.Hour + time.Nanosecond)
	deadline := created.Add(time.Minute)
	code := 137
	hash := sha256.Sum256([]byte("secret-" + id))
	return oneoff.OneOff{
		ID:             id,
		Name:           "run-" + id,
		App:            app,
		Release:        7,
		Image:          "registry.example.com/" + app + ":v7",
		Command:        []string{"bash", "-c", `echo "$HOME" && exit 3`, ""},
		EnvNames:       []string{"DEBUG", "RAILS_ENV"},
		Mode:           oneoff.Attached,
		TTY:            true,
		Requester:      "alice@example.com",
		State:          oneoff.Finished,
		Outcome:        oneoff.Exited,
		ExitCode:       &code,
		Error:          "something: went wrong",
		ContainerID:    "0123456789abcdef",
		Client:         "192.0.2.1:54321",
		CreatedAt:      created,
		StartedAt:      &started,
		FinishedAt:     &finished,
		AttachDeadline: &deadline,
		SecretHash:     hash[:],
	}
}

// minimalOneOff returns a one-off with only what a new record needs.
func minimalOneOff(id, app string, created time.Time) oneoff.OneOff {
	return oneoff.OneOff{
		ID:        id,
		Name:      "run-" + id,
		App:       app,
		Release:   1,
		Image:     "alpine:3",
		Command:   []string{"sh"},
		Mode:      oneoff.Detached,
		State:     oneoff.Pending,
		CreatedAt: created,
	}
}

// assertOneOff fails t unless got and want have the same fields, times
// equal and in UTC, and nil kept apart from zero.
func assertOneOff(t *testing.T, got, want oneoff.OneOff) {
	t.Helper()
	if got.ID != want.ID || got.Name != want.Name || got.App != want.App || got.Release != want.Release ||
		got.Image != want.Image || got.Mode != want.Mode || got.TTY != want.TTY || got.Requester != want.Requester ||
		got.State != want.State || got.Outcome != want.Outcome || got.Error != want.Error ||
		got.ContainerID != want.ContainerID || got.Client != want.Client {
		t.Errorf("one-off: got %+v, want %+v", got, want)
	}
	if !slices.Equal(got.Command, want.Command) || (got.Command == nil) != (want.Command == nil) {
		t.Errorf("Command: got %#v, want %#v", got.Command, want.Command)
	}
	if !slices.Equal(got.EnvNames, want.EnvNames) {
		t.Errorf("EnvNames: got %#v, want %#v", got.EnvNames, want.EnvNames)
	}
	switch {
	case (got.ExitCode == nil) != (want.ExitCode == nil):
		t.Errorf("ExitCode: got %v, want %v", fmtPtr(got.ExitCode), fmtPtr(want.ExitCode))
	case got.ExitCode != nil && *got.ExitCode != *want.ExitCode:
		t.Errorf("ExitCode: got %d, want %d", *got.ExitCode, *want.ExitCode)
	}
	if !bytes.Equal(got.SecretHash, want.SecretHash) {
		t.Errorf("SecretHash: got %x, want %x", got.SecretHash, want.SecretHash)
	}
	assertTime(t, "CreatedAt", &got.CreatedAt, &want.CreatedAt)
	assertTime(t, "StartedAt", got.StartedAt, want.StartedAt)
	assertTime(t, "FinishedAt", got.FinishedAt, want.FinishedAt)
	assertTime(t, "AttachDeadline", got.AttachDeadline, want.AttachDeadline)
}

func assertTime(t *testing.T, field string, got, want *time.Time) {
	t.Helper()
	switch {
	case (got == nil) != (want == nil):
		t.Errorf("%s: got %v, want %v", field, fmtPtr(got), fmtPtr(want))
	case got == nil:
	case !got.Equal(*want):
		t.Errorf("%s: got %v, want %v", field, *got, *want)
	case got.Location() != time.UTC:
		t.Errorf("%s location: got %v, want UTC", field, got.Location())
	}
}

func fmtPtr[T any](p *T) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

func TestDB_CreateOneOff(t *testing.T) {
	ctx := context.Background()
	zero := 0
	empty := minimalOneOff("empty", "web", time.Now())
	empty.Command, empty.EnvNames = []string{}, []string{}
	tests := []struct {
		name string
		o    oneoff.OneOff
	}{
		{name: "every field", o: fullOneOff("full", "web")},
		{name: "minimal", o: minimalOneOff("min", "web", time.Now())},
		{name: "nil command", o: func() oneoff.OneOff { o := minimalOneOff("nil", "web", time.Now()); o.Command = nil; return o }()},
		{name: "empty slices", o: empty},
		{name: "exit code zero", o: func() oneoff.OneOff { o := fullOneOff("zero", "web"); o.ExitCode = &zero; return o }()},
		{name: "zero created time", o: minimalOneOff("zerotime", "web", time.Time{})},
	}
	db := openTest(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := db.CreateOneOff(ctx, tt.o); err != nil {
				t.Fatalf("CreateOneOff: %v", err)
			}
			got, err := db.OneOff(ctx, tt.o.ID)
			if err != nil {
				t.Fatalf("OneOff: %v", err)
			}
			assertOneOff(t, got, tt.o)
		})
	}

	t.Run("name taken", func(t *testing.T) {
		db := openTest(t)
		first := minimalOneOff("a", "web", time.Now())
		if err := db.CreateOneOff(ctx, first); err != nil {
			t.Fatalf("CreateOneOff: %v", err)
		}
		dup := minimalOneOff("b", "web", time.Now())
		dup.Name = first.Name
		err := db.CreateOneOff(ctx, dup)
		if !errors.Is(err, errdefs.ErrConflict) {
			t.Fatalf("CreateOneOff with a taken name: got %v, want ErrConflict", err)
		}
		if e, ok := errdefs.As(err); !ok || e.Code != "name_taken" {
			t.Errorf("CreateOneOff error: got %v, want code name_taken", err)
		}
		if _, err := db.OneOff(ctx, dup.ID); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("OneOff of the rejected record: got %v, want ErrNotFound", err)
		}

		other := minimalOneOff("c", "api", time.Now())
		other.Name = first.Name
		if err := db.CreateOneOff(ctx, other); err != nil {
			t.Errorf("CreateOneOff with the same name in another app: %v", err)
		}
	})

	t.Run("ID taken", func(t *testing.T) {
		db := openTest(t)
		o := minimalOneOff("a", "web", time.Now())
		if err := db.CreateOneOff(ctx, o); err != nil {
			t.Fatalf("CreateOneOff: %v", err)
		}
		o.Name = "another-name"
		err := db.CreateOneOff(ctx, o)
		if err == nil {
			t.Fatalf("CreateOneOff with a taken ID: got no error, want one")
		}
		if errors.Is(err, errdefs.ErrConflict) {
			t.Errorf("CreateOneOff with a taken ID: got %v, want an error that is not name_taken", err)
		}
	})
}

func TestDB_UpdateOneOff(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	created := time.Now()
	o := minimalOneOff("o-1", "web", created)
	o.Mode = oneoff.Attached
	deadline := created.Add(time.Minute)
	o.AttachDeadline = &deadline
	o.SecretHash = []byte{1, 2, 3}
	if err := db.CreateOneOff(ctx, o); err != nil {
		t.Fatalf("CreateOneOff: %v", err)
	}

	steps := []struct {
		name   string
		change func(o *oneoff.OneOff)
	}{
		{name: "running", change: func(o *oneoff.OneOff) {
			started := created.Add(2 * time.Second)
			o.State, o.StartedAt, o.ContainerID, o.Client = oneoff.Running, &started, "c0ffee", "198.51.100.7:4000"
		}},
		{name: "finished with status 0", change: func(o *oneoff.OneOff) {
			finished := created.Add(time.Hour)
			code := 0
			o.State, o.Outcome, o.ExitCode, o.FinishedAt = oneoff.Finished, oneoff.Exited, &code, &finished
		}},
		{name: "lost, clearing fields", change: func(o *oneoff.OneOff) {
			o.Outcome, o.ExitCode, o.Error = oneoff.Lost, nil, "daemon restarted"
			o.AttachDeadline, o.SecretHash, o.Client = nil, nil, ""
			o.Command, o.EnvNames = []string{"sh", "-c", "true"}, []string{"X"}
		}},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			step.change(&o)
			if err := db.UpdateOneOff(ctx, o); err != nil {
				t.Fatalf("UpdateOneOff: %v", err)
			}
			got, err := db.OneOff(ctx, o.ID)
			if err != nil {
				t.Fatalf("OneOff: %v", err)
			}
			assertOneOff(t, got, o)
		})
	}

	t.Run("identity is kept", func(t *testing.T) {
		changed := o
		changed.Name, changed.App, changed.CreatedAt = "renamed", "other", created.Add(time.Hour)
		if err := db.UpdateOneOff(ctx, changed); err != nil {
			t.Fatalf("UpdateOneOff: %v", err)
		}
		got, err := db.OneOff(ctx, o.ID)
		if err != nil {
			t.Fatalf("OneOff: %v", err)
		}
		assertOneOff(t, got, o)
	})

	t.Run("a finished record is not reopened by a late copy", func(t *testing.T) {
		late := o
		late.State, late.Outcome, late.FinishedAt = oneoff.Pending, "", nil
		if err := db.UpdateOneOff(ctx, late); err != nil {
			t.Fatalf("UpdateOneOff: %v", err)
		}
		got, err := db.OneOff(ctx, o.ID)
		if err != nil {
			t.Fatalf("OneOff: %v", err)
		}
		assertOneOff(t, got, o)
	})

	t.Run("not found", func(t *testing.T) {
		err := db.UpdateOneOff(ctx, minimalOneOff("ghost", "web", created))
		if !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("UpdateOneOff: got %v, want ErrNotFound", err)
		}
		if e, ok := errdefs.As(err); !ok || e.Code != "oneoff_not_found" {
			t.Errorf("UpdateOneOff error: got %v, want code oneoff_not_found", err)
		}
	})
}

func TestDB_OneOff(t *testing.T) {
	db := openTest(t)
	_, err := db.OneOff(context.Background(), "ghost")
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("OneOff: got %v, want ErrNotFound", err)
	}
	if e, ok := errdefs.As(err); !ok || e.Code != "oneoff_not_found" {
		t.Errorf("OneOff error: got %v, want code oneoff_not_found", err)
	}
}

func TestDB_OneOffs(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)

	empty, err := db.OneOffs(ctx, oneoff.Filter{})
	if err != nil {
		t.Fatalf("OneOffs on an empty database: %v", err)
	}
	if empty == nil || len(empty) != 0 {
		t.Errorf("OneOffs on an empty database: got %#v, want an empty slice", empty)
	}

	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	// Created in this order; "b2" and "b3" share a creation time, and the
	// times differ by less than a second to test sub-second ordering.
	records := []struct {
		id    string
		app   string
		state oneoff.State
		mode  oneoff.Mode
		at    time.Duration
	}{
		{"a1", "web", oneoff.Finished, oneoff.Detached, 0},
		{"a2", "web", oneoff.Running, oneoff.Attached, 500 * time.Millisecond},
		{"a3", "web", oneoff.Pending, oneoff.Attached, time.Second},
		{"b1", "api", oneoff.Running, oneoff.Detached, time.Second + time.Nanosecond},
		{"b3", "api", oneoff.Finished, oneoff.Attached, 2 * time.Second},
		{"b2", "api", oneoff.Running, oneoff.Detached, 2 * time.Second},
		{"a4", "web", oneoff.Running, oneoff.Detached, time.Minute},
	}
	for _, r := range records {
		o := minimalOneOff(r.id, r.app, base.Add(r.at))
		o.State, o.Mode = r.state, r.mode
		if err := db.CreateOneOff(ctx, o); err != nil {
			t.Fatalf("CreateOneOff(%s): %v", r.id, err)
		}
	}

	tests := []struct {
		name   string
		filter oneoff.Filter
		want   []string
	}{
		{name: "everything, newest first", filter: oneoff.Filter{}, want: []string{"a4", "b2", "b3", "b1", "a3", "a2", "a1"}},
		{name: "by app", filter: oneoff.Filter{App: "web"}, want: []string{"a4", "a3", "a2", "a1"}},
		{name: "by state", filter: oneoff.Filter{State: oneoff.Running}, want: []string{"a4", "b2", "b1", "a2"}},
		{name: "by mode", filter: oneoff.Filter{Mode: oneoff.Attached}, want: []string{"b3", "a3", "a2"}},
		{name: "by app and state", filter: oneoff.Filter{App: "api", State: oneoff.Running}, want: []string{"b2", "b1"}},
		{name: "by everything", filter: oneoff.Filter{App: "web", State: oneoff.Running, Mode: oneoff.Attached}, want: []string{"a2"}},
		{name: "limit", filter: oneoff.Filter{Limit: 3}, want: []string{"a4", "b2", "b3"}},
		{name: "limit with a filter", filter: oneoff.Filter{App: "web", Limit: 2}, want: []string{"a4", "a3"}},
		{name: "limit above the count", filter: oneoff.Filter{App: "api", Limit: 10}, want: []string{"b2", "b3", "b1"}},
		{name: "negative limit", filter: oneoff.Filter{App: "api", Limit: -1}, want: []string{"b2", "b3", "b1"}},
		{name: "no match", filter: oneoff.Filter{App: "ghost"}, want: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list, err := db.OneOffs(ctx, tt.filter)
			if err != nil {
				t.Fatalf("OneOffs(%+v): %v", tt.filter, err)
			}
			got := []string{}
			for _, o := range list {
				if !tt.filter.Match(o) {
					t.Errorf("OneOffs(%+v) returned %s, which the filter does not match", tt.filter, o.ID)
				}
				got = append(got, o.ID)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("OneOffs(%+v): got %v, want %v", tt.filter, got, tt.want)
			}
		})
	}
}

func TestDB_CreateOneOff_Concurrent(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	const writers, each = 8, 25

	var wg sync.WaitGroup
	errs := make(chan error, writers*each*2)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("w%d-%d", w, i)
				o := minimalOneOff(id, fmt.Sprintf("app-%d", w%3), time.Now())
				if err := db.CreateOneOff(ctx, o); err != nil {
					errs <- fmt.Errorf("CreateOneOff(%s): %w", id, err)
					continue
				}
				o.State = oneoff.Running
				if err := db.UpdateOneOff(ctx, o); err != nil {
					errs <- fmt.Errorf("UpdateOneOff(%s): %w", id, err)
				}
				if _, err := db.OneOffs(ctx, oneoff.Filter{App: o.App, Limit: 5}); err != nil {
					errs <- fmt.Errorf("OneOffs: %w", err)
				}
			}
		})
	}
	// A racing name: exactly one of these may win.
	const racers = 6
	won := make(chan string, racers)
	for r := range racers {
		wg.Go(func() {
			o := minimalOneOff(fmt.Sprintf("racer-%d", r), "web", time.Now())
			o.Name = "the-name"
			err := db.CreateOneOff(ctx, o)
			switch {
			case err == nil:
				won <- o.ID
			case !errors.Is(err, errdefs.ErrConflict):
				errs <- fmt.Errorf("racing CreateOneOff: %w", err)
			}
		})
	}
	wg.Wait()
	close(errs)
	close(won)
	for err := range errs {
		t.Error(err)
	}
	if got, want := len(won), 1; got != want {
		t.Errorf("racers that got the name: got %d, want %d", got, want)
	}

	all, err := db.OneOffs(ctx, oneoff.Filter{State: oneoff.Running})
	if err != nil {
		t.Fatalf("OneOffs: %v", err)
	}
	if got, want := len(all), writers*each; got != want {
		t.Errorf("running one-offs: got %d, want %d", got, want)
	}
}
