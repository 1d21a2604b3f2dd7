// Package cron runs an app's scheduled jobs: it reads the definitions that
// come with a release (Scalingo's cron.json form or an explicit one),
// checks them, and, at each due time, starts the job as a detached one-off
// of the app's current release.
//
// The scheduler drives a Starter, which *oneoff.Manager satisfies, and keeps
// its state (last runs, history) in a Store; both are small interfaces
// declared here.
package cron

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // time zones work on hosts and images without zoneinfo

	robfig "github.com/robfig/cron/v3"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

// Overlap says what happens when a job is due while its previous run still
// runs.
type Overlap string

// The overlap policies.
const (
	// Forbid skips the new run, and records the skip (the default).
	Forbid Overlap = "forbid"
	// Allow starts the new run alongside the previous one.
	Allow Overlap = "allow"
	// Replace stops the previous run and starts the new one.
	Replace Overlap = "replace"
)

// Limits of the definitions.
const (
	// DefaultMinInterval is the shortest time allowed between two runs
	// of a job, unless configured otherwise.
	DefaultMinInterval = time.Minute
	// MaxDeadline caps how late a missed run may still start.
	MaxDeadline = time.Hour
	// MaxJobs bounds the jobs of one release.
	MaxJobs = 100
	// intervalSamples is how many successive ticks the shortest interval
	// of a schedule is measured over.
	intervalSamples = 512
)

// Job is one scheduled job of an app, as a release defines it.
type Job struct {
	// Name identifies the job within its app; its one-offs are named
	// after it (cron-NAME-1234).
	Name string `json:"name"`
	// Schedule is the cron expression: five fields, or a descriptor such
	// as @daily or @every 10m.
	Schedule string `json:"schedule"`
	// Timezone is the IANA time zone the schedule is read in; UTC when empty.
	Timezone string `json:"timezone,omitempty"`
	// Command is the shell line the one-off runs.
	Command string `json:"command"`
	// Size names the one-off's resource limits; the default size when empty.
	Size string `json:"size,omitempty"`
	// TTL is the longest a run may go on, such as "1h"; the daemon's
	// maximum lifetime when empty.
	TTL string `json:"ttl,omitempty"`
	// Overlap is the policy when the previous run still runs; forbid when empty.
	Overlap Overlap `json:"overlap,omitempty"`

	sched    robfig.Schedule
	loc      *time.Location
	ttl      time.Duration
	interval time.Duration
}

// Definitions is the cron document of a release: {"jobs": [...]}.
type Definitions struct {
	Jobs []Job `json:"jobs"`
}

// Next returns the job's first due time after t. A wall-clock time that
// comes twice, when clocks go back, is due once (the first), unless the
// schedule's hour is "*".
func (j Job) Next(t time.Time) time.Time {
	n := j.sched.Next(t)
	spec, ok := j.sched.(*robfig.SpecSchedule)
	if !ok || n.IsZero() || spec.Hour&starBit != 0 {
		return n
	}
	n = n.In(spec.Location)
	_, offset := n.Zone()
	for _, back := range []time.Duration{time.Hour, 30 * time.Minute} {
		m := n.Add(-back)
		if _, o := m.Zone(); o == offset {
			continue // no change of offset: no time comes twice
		}
		if sameWallClock(m, n) && j.sched.Next(m.Add(-time.Second)).Equal(m) {
			return j.Next(n)
		}
	}
	return n
}

// starBit marks a field given as "*" in robfig's SpecSchedule.
const starBit = 1 << 63

func sameWallClock(a, b time.Time) bool {
	return a.Year() == b.Year() && a.YearDay() == b.YearDay() && a.Hour() == b.Hour() && a.Minute() == b.Minute()
}

// Interval is the shortest time between two of the job's runs.
func (j Job) Interval() time.Duration { return j.interval }

// Deadline is how late a missed run may still start: the job's interval,
// at most MaxDeadline.
func (j Job) Deadline() time.Duration { return min(j.interval, MaxDeadline) }

// overlap returns the job's policy, the default filled in.
func (j Job) overlap() Overlap {
	if j.Overlap == "" {
		return Forbid
	}
	return j.Overlap
}

// request is what the scheduler asks the manager to run for the job.
func (j Job) request(requester string) oneoff.Request {
	return oneoff.Request{
		Command: oneoff.Command{Line: j.Command}, Size: j.Size, TTL: j.ttl,
		Detached: true, Requester: requester, NamePrefix: "cron-" + j.Name,
	}
}

// Rules are what definitions are checked against.
type Rules struct {
	// MinInterval is the shortest time allowed between two runs of a job;
	// DefaultMinInterval when zero.
	MinInterval time.Duration
	// Sizes are the size names a job may ask for; any when empty.
	Sizes []string
	// MaxTTL is the longest TTL a job may ask for; no cap when zero.
	MaxTTL time.Duration
}

var jobName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)

// parser reads five-field expressions and descriptors, with an optional
// CRON_TZ= or TZ= prefix.
var parser = robfig.NewParser(robfig.Minute | robfig.Hour | robfig.Dom | robfig.Month | robfig.Dow | robfig.Descriptor)

// Parse reads and checks a cron document as a release brings it, in either
// form, and returns its jobs with names, time zones and policies filled in.
// An empty document has no jobs. Every error is an errdefs.ErrInvalid that
// names the job and what is wrong with it.
func (r Rules) Parse(raw []byte) ([]Job, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, nil
	}
	var defs Definitions
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&defs); err != nil {
		return nil, errdefs.Invalid("invalid_cron", "the cron definitions are not valid: %v; expected {\"jobs\": [{\"command\": \"*/10 * * * * rake cleanup\"}]}", err)
	}
	if len(defs.Jobs) > MaxJobs {
		return nil, errdefs.Invalid("invalid_cron", "the cron definitions hold %d jobs, over the %d a release may have", len(defs.Jobs), MaxJobs)
	}
	jobs := make([]Job, 0, len(defs.Jobs))
	seen := map[string]bool{}
	for i, j := range defs.Jobs {
		named := j.Name != ""
		if err := r.check(&j, i); err != nil {
			return nil, err
		}
		if !named {
			j.Name = uniqueName(j.Name, seen)
		} else if seen[j.Name] {
			return nil, errdefs.Invalid("invalid_cron", "cron job %q: the name is used by another job of this release: give each job its own name", j.Name)
		}
		seen[j.Name] = true
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// Normalize parses raw and returns it in the explicit form, each job named
// and its time zone apart from its schedule, as a release keeps it.
func (r Rules) Normalize(raw []byte) ([]byte, error) {
	jobs, err := r.Parse(raw)
	if err != nil || len(jobs) == 0 {
		return nil, err
	}
	return json.Marshal(Definitions{Jobs: jobs})
}

// Check validates app's cron document and returns it in the explicit
// form, as a release keeps it; Rules is a deploy.Cron.
func (r Rules) Check(app string, raw json.RawMessage) (json.RawMessage, error) {
	return r.Normalize(raw)
}

// check fills in and validates job i of a document.
func (r Rules) check(j *Job, i int) error {
	label := fmt.Sprintf("cron job %d", i+1)
	if j.Name != "" {
		label = fmt.Sprintf("cron job %q", j.Name)
		if !jobName.MatchString(j.Name) {
			return errdefs.Invalid("invalid_cron", "%s: the name is invalid: use 1 to 40 lowercase letters, digits and dashes, starting with a letter or digit", label)
		}
	}
	if j.Schedule == "" {
		// Scalingo's form: the schedule leads the command.
		sched, cmd, err := splitCommand(j.Command)
		if err != nil {
			return errdefs.Invalid("invalid_cron", "%s: %v", label, err)
		}
		j.Schedule, j.Command = sched, cmd
	}
	j.Command = strings.TrimSpace(j.Command)
	if j.Command == "" {
		return errdefs.Invalid("invalid_cron", "%s: the command is empty", label)
	}
	if j.Name == "" {
		j.Name = nameFrom(j.Command)
	}
	if tz, rest, ok := cutTZ(j.Schedule); ok {
		if j.Timezone != "" && j.Timezone != tz {
			return errdefs.Invalid("invalid_cron", "%s: the schedule's time zone %s and the timezone field %s differ: give one", label, tz, j.Timezone)
		}
		j.Timezone, j.Schedule = tz, rest
	}
	j.Schedule = strings.Join(strings.Fields(j.Schedule), " ")
	loc := time.UTC
	if j.Timezone != "" {
		var err error
		if loc, err = time.LoadLocation(j.Timezone); err != nil {
			return errdefs.Invalid("invalid_cron", "%s: time zone %q is unknown: use an IANA name such as Europe/Paris", label, j.Timezone)
		}
	}
	sched, err := parser.Parse("CRON_TZ=" + loc.String() + " " + j.Schedule)
	if err != nil {
		return errdefs.Invalid("invalid_cron", "%s: schedule %q is invalid: %v; use five fields (minute hour day-of-month month day-of-week) or @hourly, @daily, @weekly, @monthly, @yearly, @every DURATION", label, j.Schedule, err)
	}
	j.sched, j.loc = sched, loc
	j.interval = shortestInterval(*j)
	if j.interval == 0 {
		return errdefs.Invalid("invalid_cron", "%s: schedule %q never comes due", label, j.Schedule)
	}
	minInterval := r.MinInterval
	if minInterval <= 0 {
		minInterval = DefaultMinInterval
	}
	if j.interval < minInterval {
		return errdefs.Invalid("invalid_cron", "%s: schedule %q runs every %s, more often than the %s this daemon allows", label, j.Schedule, j.interval, minInterval)
	}
	if len(r.Sizes) > 0 && j.Size != "" && !slices.Contains(r.Sizes, j.Size) {
		return errdefs.Invalid("invalid_cron", "%s: size %q is unknown: use one of %s", label, j.Size, strings.Join(r.Sizes, ", "))
	}
	if j.TTL != "" {
		ttl, err := apitypes.ParseTTL(j.TTL)
		if err != nil {
			return errdefs.Invalid("invalid_cron", "%s: ttl %q is invalid: give a duration such as 90m", label, j.TTL)
		}
		if r.MaxTTL > 0 && ttl > r.MaxTTL {
			return errdefs.Invalid("invalid_cron", "%s: ttl %s is over the daemon's maximum lifetime %s", label, ttl, r.MaxTTL)
		}
		j.ttl = ttl
	}
	switch j.Overlap {
	case "", Forbid, Allow, Replace:
	default:
		return errdefs.Invalid("invalid_cron", "%s: overlap %q is unknown: use forbid, allow or replace", label, j.Overlap)
	}
	return nil
}

// splitCommand splits Scalingo's "SCHEDULE COMMAND" into its parts. The
// schedule is an optional CRON_TZ=/TZ= word, then a descriptor (with its
// duration for @every) or five fields.
func splitCommand(line string) (schedule, command string, err error) {
	words := strings.Fields(line)
	n := 0
	if len(words) > 0 && (strings.HasPrefix(words[0], "CRON_TZ=") || strings.HasPrefix(words[0], "TZ=")) {
		n++
	}
	switch {
	case n < len(words) && words[n] == "@every":
		n += 2
	case n < len(words) && strings.HasPrefix(words[n], "@"):
		n++
	default:
		n += 5
	}
	if len(words) <= n {
		return "", "", fmt.Errorf("%q holds no schedule and command: write the schedule first, as in \"*/10 * * * * rake cleanup\", or give a \"schedule\" field", line)
	}
	return strings.Join(words[:n], " "), afterFields(line, n), nil
}

// afterFields returns s past its first n whitespace-separated fields, the
// rest kept byte for byte.
func afterFields(s string, n int) string {
	for range n {
		s = strings.TrimLeft(s, " \t\n\r\v\f")
		if i := strings.IndexAny(s, " \t\n\r\v\f"); i >= 0 {
			s = s[i:]
		} else {
			s = ""
		}
	}
	return strings.TrimLeft(s, " \t\n\r\v\f")
}

// cutTZ takes a CRON_TZ= or TZ= prefix off a schedule.
func cutTZ(s string) (tz, rest string, ok bool) {
	s = strings.TrimSpace(s)
	for _, p := range []string{"CRON_TZ=", "TZ="} {
		if strings.HasPrefix(s, p) {
			tz, rest, _ = strings.Cut(s[len(p):], " ")
			return tz, rest, true
		}
	}
	return "", s, false
}

// nameFrom derives a job's name from its command: its first words,
// lowercased, dashes for the rest.
func nameFrom(command string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(command) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
		default:
			dash = true
		}
		if b.Len() > 30 {
			break
		}
	}
	name := b.String()
	if len(name) > 30 {
		name = name[:30]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i] // at a word's end
		}
	}
	if name == "" {
		name = "job"
	}
	return name
}

// uniqueName returns name, or name-2, name-3... if it is taken.
func uniqueName(name string, seen map[string]bool) string {
	if !seen[name] {
		return name
	}
	for i := 2; ; i++ {
		if n := fmt.Sprintf("%s-%d", name, i); !seen[n] {
			return n
		}
	}
}

// shortestInterval measures the shortest gap between successive ticks of
// j, over its next intervalSamples ticks from a fixed start; zero if it
// never ticks.
func shortestInterval(j Job) time.Duration {
	if c, ok := j.sched.(robfig.ConstantDelaySchedule); ok {
		return c.Delay
	}
	t := j.Next(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	if t.IsZero() {
		return 0
	}
	shortest := time.Duration(0)
	for range intervalSamples {
		next := j.Next(t)
		if next.IsZero() {
			break
		}
		if d := next.Sub(t); shortest == 0 || d < shortest {
			shortest = d
		}
		t = next
	}
	if shortest == 0 {
		shortest = 100 * 365 * 24 * time.Hour // one tick in the next years
	}
	return shortest
}

var _ deploy.Cron = Rules{}
