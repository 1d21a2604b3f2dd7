package apitypes

import (
	"encoding/json"
	"time"
)

// App is an application registered by the platform.
type App struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// Release is the current release; nil only while none was registered.
	Release *Release `json:"release,omitempty"`
}

// Release is one deployment of an app: what its one-offs run. The API
// tells the names of its environment variables, never their values.
type Release struct {
	App       string            `json:"app"`
	Version   int               `json:"version"`
	Image     string            `json:"image"`
	EnvNames  []string          `json:"env_names,omitempty"`
	Procfile  string            `json:"procfile,omitempty"`
	Processes map[string]string `json:"processes,omitempty"`
	// Cron is the release's cron document, as the daemon keeps it.
	Cron      json.RawMessage `json:"cron,omitempty"`
	CreatedAt time.Time       `json:"created_at"`
}

// Deploy is the body of POST /v1/apps/{app}/deployments.
type Deploy struct {
	Image    string            `json:"image"`
	Env      map[string]string `json:"env,omitempty"`
	Procfile string            `json:"procfile,omitempty"`
	// Cron is the app's cron jobs (Scalingo's cron.json, or the explicit
	// form); see docs/cron.md.
	Cron json.RawMessage `json:"cron,omitempty"`
	// KeepEnv gives the new release the current release's env, for a
	// request without one; KeepProcfile its Procfile, KeepCron its cron
	// jobs.
	KeepEnv      bool `json:"keep_env,omitempty"`
	KeepProcfile bool `json:"keep_procfile,omitempty"`
	KeepCron     bool `json:"keep_cron,omitempty"`
}

// DrainStatus is a log drain's state and counts.
type DrainStatus struct {
	// URL is the drain's URL, without credentials.
	URL string `json:"url"`
	// App is the app whose lines the drain gets; "" for a daemon-wide one.
	App string `json:"app,omitempty"`
	// State is connected, idle or failing.
	State        string     `json:"state"`
	Sent         uint64     `json:"sent"`
	Dropped      uint64     `json:"dropped"`
	Errors       uint64     `json:"errors"`
	Buffered     int        `json:"buffered"`
	LastError    string     `json:"last_error,omitempty"`
	LastErrorAt  *time.Time `json:"last_error_at,omitempty"`
	FailingSince *time.Time `json:"failing_since,omitempty"`
}

// Drains is the answer of both routes of an app's drains.
type Drains struct {
	URLs   []string      `json:"urls"`
	Status []DrainStatus `json:"status"`
}

// DrainsRequest is the body of PUT /v1/apps/{app}/drains.
type DrainsRequest struct {
	URLs []string `json:"urls"`
}

// DrainList is the answer of GET /v1/drains: every drain the daemon runs.
type DrainList struct {
	Drains []DrainStatus `json:"drains"`
}
