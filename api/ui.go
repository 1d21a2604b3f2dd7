package api

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

// The operators' page: what runs, what ran, and a Stop button, rendered on
// the server with no script and no external asset.

// UIRealm is the realm of the page's HTTP Basic challenge.
const UIRealm = "oneoffd"

const (
	// uiFinishedLimit is how many finished one-offs the page lists.
	uiFinishedLimit = 50
	// uiStopWait bounds how long a Stop click waits for the one-off to end
	// before the page comes back; the stop goes on after it.
	uiStopWait = 2 * time.Second
	// uiRefresh is how often the page reloads itself, in seconds.
	uiRefresh = 5
	// uiCommandWidth is how many characters of a command a row shows.
	uiCommandWidth = 60
)

//go:embed ui.html.tmpl
var uiSource string

var uiTemplate = template.Must(template.New("ui").Parse(uiSource))

// mountUI adds the operators' page to r: GET /ui, and the stop form's
// POST /ui/oneoffs/{id}/stop, refused when it comes from another site.
func (s *Server) mountUI(r chi.Router) {
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.uiError(w, r, http.StatusForbidden, "This request came from another site: one-offs are stopped only from this page.")
	}))
	r.Group(func(r chi.Router) {
		r.Use(s.uiAuthenticate)
		r.Get("/ui", s.uiPage)
		r.Get("/ui/oneoffs/{id}/recording", s.recording)
		r.With(csrf.Handler).Post("/ui/oneoffs/{id}/stop", s.uiStop)
	})
}

// uiUserKey keys the authenticated user name in a request's context.
type uiUserKey struct{}

// uiAuthenticate lets through requests that carry the API token, either as
// a bearer token or as the password of HTTP Basic auth (any user name), so
// that a browser can ask for it; others get a Basic challenge.
func (s *Server) uiAuthenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, ok := s.uiCredentials(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+UIRealm+`", charset="UTF-8"`)
			s.uiError(w, r, http.StatusUnauthorized,
				"This page needs the daemon's API token: sign in with any user name and the token as the password.")
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), uiUserKey{}, user)))
	})
}

// uiCredentials checks a request's token and returns the Basic user name,
// if any.
func (s *Server) uiCredentials(r *http.Request) (user string, ok bool) {
	if s.cfg.Token == "" {
		return "", false
	}
	if u, password, basic := r.BasicAuth(); basic {
		return u, sameToken(password, s.cfg.Token)
	}
	if tok, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); bearer {
		return "", sameToken(tok, s.cfg.Token)
	}
	return "", false
}

// sameToken compares two tokens in a time that depends on neither their
// contents nor their lengths.
func sameToken(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// uiActor names who stopped a one-off from the page, for the audit trail.
func uiActor(r *http.Request) string {
	user, _ := r.Context().Value(uiUserKey{}).(string)
	user = strings.Map(func(c rune) rune {
		if unicode.IsPrint(c) && c != ' ' {
			return c
		}
		return -1
	}, user)
	user = truncateRunes(user, 64)
	if user == "" {
		return "ui"
	}
	return "ui:" + user
}

// uiFilter is what the page lists, from its query string.
type uiFilter struct {
	App  string
	Mode oneoff.Mode
}

func parseUIFilter(q url.Values) (uiFilter, error) {
	f := uiFilter{App: strings.TrimSpace(q.Get("app")), Mode: oneoff.Mode(q.Get("mode"))}
	if f.Mode != "" && f.Mode != oneoff.Attached && f.Mode != oneoff.Detached {
		m := f.Mode
		f.Mode = ""
		return f, errdefs.Invalid("invalid_mode", "mode %q is unknown: use attached or detached", m)
	}
	return f, nil
}

// query encodes the filter, with extra pairs, for a URL.
func (f uiFilter) query(extra ...string) string {
	q := url.Values{}
	if f.App != "" {
		q.Set("app", f.App)
	}
	if f.Mode != "" {
		q.Set("mode", string(f.Mode))
	}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// uiData is what the page's template renders.
type uiData struct {
	Title      string
	Refresh    int
	RefreshURL string
	Now        string
	App        string
	Mode       string
	Apps       []string
	Notice     string
	Error      string
	Active     []uiRow
	Finished   []uiRow
	Cron       []uiCronRow
	Running    int
	Pending    int
	Limit      int
	// Message is set, alone, on an error page.
	Message string
	BackURL string
}

// uiRow is one one-off, formatted.
type uiRow struct {
	ID, Name, App       string
	Command, FullCmd    string
	Mode, Size, Client  string
	Node                string
	Requester           string
	Age, Idle, Ran, Ago string
	Status, Class       string
	// State is the state, or the outcome once finished, as the API says it.
	State   string
	Detail  string
	StopURL string
	// RecordingURL, when set, downloads the session's recording.
	RecordingURL string
}

func (s *Server) uiPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f, ferr := parseUIFilter(r.URL.Query())
	now := time.Now()
	d := uiData{Title: "one-offs", Refresh: uiRefresh, RefreshURL: "/ui" + f.query(), Now: now.UTC().Format("15:04:05 UTC"),
		App: f.App, Mode: string(f.Mode), Limit: uiFinishedLimit}
	status := http.StatusOK
	if ferr != nil {
		status = http.StatusBadRequest
		d.Error = Detail(ferr).Message
	}

	var active []oneoff.OneOff
	for _, st := range []oneoff.State{oneoff.Running, oneoff.Pending} {
		list, err := s.oneoffs.List(ctx, oneoff.Filter{App: f.App, Mode: f.Mode, State: st})
		if err != nil {
			s.uiFail(w, r, err)
			return
		}
		active = append(active, list...)
	}
	finished, err := s.oneoffs.List(ctx, oneoff.Filter{App: f.App, Mode: f.Mode, State: oneoff.Finished, Limit: uiFinishedLimit})
	if err != nil {
		s.uiFail(w, r, err)
		return
	}
	slices.SortStableFunc(active, func(a, b oneoff.OneOff) int {
		if a.State != b.State {
			return cmp.Compare(stateRank(a.State), stateRank(b.State))
		}
		return b.CreatedAt.Compare(a.CreatedAt)
	})
	for _, o := range active {
		if o.State == oneoff.Running {
			d.Running++
			// The store's record lags: the live one has the terminal's last
			// activity.
			if live, err := s.oneoffs.Get(ctx, o.ID); err == nil && live.State == oneoff.Running {
				o = live
			}
		} else {
			d.Pending++
		}
		d.Active = append(d.Active, uiRowOf(o, now, f))
	}
	for _, o := range finished {
		row := uiRowOf(o, now, f)
		if s.oneoffs.HasRecording(o.ID) {
			row.RecordingURL = "/ui/oneoffs/" + url.PathEscape(o.ID) + "/recording"
		}
		d.Finished = append(d.Finished, row)
	}

	if s.deploys != nil {
		if apps, err := s.deploys.Apps(ctx); err == nil {
			for _, a := range apps {
				d.Apps = append(d.Apps, a.Name)
			}
		}
	}
	if f.App != "" && !slices.Contains(d.Apps, f.App) {
		d.Apps = append(d.Apps, f.App)
	}
	slices.Sort(d.Apps)
	if f.App != "" {
		d.Cron = s.uiCron(ctx, []string{f.App}, now)
	} else {
		d.Cron = s.uiCron(ctx, d.Apps, now)
	}

	if id := r.URL.Query().Get("stopped"); id != "" {
		if o, err := s.oneoffs.Get(ctx, id); err == nil {
			d.Notice = stopNotice(o)
		}
	}
	s.uiRender(w, status, d)
}

// stopNotice says where a one-off the page was asked to stop is.
func stopNotice(o oneoff.OneOff) string {
	switch {
	case o.State != oneoff.Finished:
		return fmt.Sprintf("Stopping %s: it got SIGTERM, and gets SIGKILL after the grace period.", o.Name)
	case o.Outcome == oneoff.Stopped:
		return fmt.Sprintf("%s stopped.", o.Name)
	}
	return fmt.Sprintf("%s had already finished: %s.", o.Name, outcomeText(o))
}

func stateRank(s oneoff.State) int {
	if s == oneoff.Running {
		return 0
	}
	return 1
}

// uiRowOf formats a one-off for the page.
func uiRowOf(o oneoff.OneOff, now time.Time, f uiFilter) uiRow {
	full := strings.Join(o.Command, " ")
	shown := full
	if len(o.Command) == 3 && o.Command[0] == "/bin/sh" && o.Command[1] == "-c" {
		shown = o.Command[2] // the line as the user typed it
	}
	row := uiRow{
		ID: o.ID, Name: o.Name, App: o.App, Command: truncateRunes(shown, uiCommandWidth), FullCmd: full,
		Mode: string(o.Mode), Size: dash(o.Size), Node: dash(o.Node), Client: o.Client, Requester: dash(o.Requester),
		Age: humanDuration(now.Sub(o.CreatedAt)), Idle: "—", Ran: "—", Ago: "—", State: string(o.State),
	}
	switch o.State {
	case oneoff.Running:
		row.Status, row.Class = "running", "running"
		if o.Mode == oneoff.Attached {
			switch {
			case o.LastActivity != nil:
				row.Idle = humanDuration(now.Sub(*o.LastActivity))
			case o.StartedAt != nil:
				row.Idle = humanDuration(now.Sub(*o.StartedAt))
			}
		}
		if o.StartedAt != nil {
			row.Ran = humanDuration(now.Sub(*o.StartedAt))
		}
	case oneoff.Pending:
		row.Status, row.Class = "pending", "pending"
		if o.Mode == oneoff.Attached {
			row.Detail = "waiting for a terminal"
		}
	default:
		row.Status, row.Class, row.State = outcomeText(o), outcomeClass(o), string(o.Outcome)
		row.Detail = o.Error
		if o.StartedAt != nil && o.FinishedAt != nil {
			row.Ran = humanDuration(o.FinishedAt.Sub(*o.StartedAt))
		}
		if o.FinishedAt != nil {
			row.Ago = humanDuration(now.Sub(*o.FinishedAt)) + " ago"
		}
	}
	if o.State != oneoff.Finished {
		row.StopURL = "/ui/oneoffs/" + url.PathEscape(o.ID) + "/stop" + f.query()
	}
	return row
}

// outcomeText says how a one-off ended, in words.
func outcomeText(o oneoff.OneOff) string {
	text := strings.ReplaceAll(string(o.Outcome), "_", " ")
	if o.ExitCode != nil {
		text += fmt.Sprintf(" (%d)", *o.ExitCode)
	}
	return text
}

// outcomeClass picks the colour of an outcome: ok, stopped, warn or bad.
func outcomeClass(o oneoff.OneOff) string {
	switch o.Outcome {
	case oneoff.Exited:
		if o.ExitCode != nil && *o.ExitCode == 0 {
			return "ok"
		}
		return "bad"
	case oneoff.Stopped:
		return "stopped"
	case oneoff.IdleTimeout, oneoff.AttachTimeout, oneoff.Disconnected, oneoff.LifetimeExceeded:
		return "warn"
	}
	return "bad"
}

func dash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// truncateRunes shortens s to n characters, ending with an ellipsis when
// it cut something.
func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// humanDuration writes d for people, to two units at most: "45s", "3m12s",
// "2h", "2h5m", "3d4h".
func humanDuration(d time.Duration) string {
	if d < time.Second {
		return "0s"
	}
	d = d.Truncate(time.Second)
	days, hours := int(d/(24*time.Hour)), int(d/time.Hour)%24
	mins, secs := int(d/time.Minute)%60, int(d/time.Second)%60
	two := func(a int, ua string, b int, ub string) string {
		if b == 0 {
			return fmt.Sprintf("%d%s", a, ua)
		}
		return fmt.Sprintf("%d%s%d%s", a, ua, b, ub)
	}
	switch {
	case days > 0:
		return two(days, "d", hours, "h")
	case hours > 0:
		return two(hours, "h", mins, "m")
	case mins > 0:
		return two(mins, "m", secs, "s")
	}
	return fmt.Sprintf("%ds", secs)
}

func (s *Server) uiStop(w http.ResponseWriter, r *http.Request) {
	f, _ := parseUIFilter(r.URL.Query())
	id := chi.URLParam(r, "id")
	// Stop returns when the one-off has ended or when ctx does, whichever
	// comes first; the stop goes on without the browser.
	ctx, cancel := context.WithTimeout(r.Context(), uiStopWait)
	defer cancel()
	_, err := s.oneoffs.Stop(ctx, id, uiActor(r))
	if err != nil && !errors.Is(err, errdefs.ErrConflict) { // a conflict: it finished meanwhile; the notice says how
		s.uiFail(w, r, err)
		return
	}
	http.Redirect(w, r, "/ui"+f.query("stopped", id), http.StatusSeeOther)
}

// uiFail answers with an error page for err.
func (s *Server) uiFail(w http.ResponseWriter, r *http.Request, err error) {
	st := status(err)
	if st >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", st, "err", err)
	}
	s.uiError(w, r, st, Detail(err).Message)
}

// uiError answers with a page that says msg, and links back to the list.
func (s *Server) uiError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	f, _ := parseUIFilter(r.URL.Query())
	s.uiRender(w, status, uiData{Title: http.StatusText(status), Message: msg, BackURL: "/ui" + f.query()})
}

func (s *Server) uiRender(w http.ResponseWriter, status int, d uiData) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	var b strings.Builder
	if err := uiTemplate.Execute(&b, d); err != nil {
		s.log.Error("render the operators' page", "err", err)
		http.Error(w, "internal error: see the daemon's log", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}
