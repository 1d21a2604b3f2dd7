package api

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/logs"
)

// Drains is the answer of both routes of an app's drains.
type Drains struct {
	URLs []string `json:"urls"`
	// Status is each running drain's state (connected, failing with its
	// last error and since when, idle) and counts, by URL without
	// credentials.
	Status []logs.DrainStatus `json:"status"`
}

// DrainsRequest is the body of PUT /v1/apps/{app}/drains.
type DrainsRequest = apitypes.DrainsRequest

// DrainList is the answer of GET /v1/drains: every drain the daemon runs,
// daemon-wide and per app.
type DrainList struct {
	Drains []logs.DrainStatus `json:"drains"`
}

func (s *Server) getDrains(w http.ResponseWriter, r *http.Request) {
	app, err := s.deploys.App(r.Context(), chi.URLParam(r, "app"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	urls, err := s.drainStore.AppDrains(r.Context(), app.Name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, Drains{URLs: urls, Status: s.drains.AppStatus(app.Name)})
}

// listDrains shows the state of every drain, so that an operator sees a
// failing one without reading the daemon's log.
func (s *Server) listDrains(w http.ResponseWriter, r *http.Request) {
	list := s.drains.Status()
	if list == nil {
		list = []logs.DrainStatus{}
	}
	writeJSON(w, http.StatusOK, DrainList{Drains: list})
}

// setDrains replaces an app's drains: all URLs are checked first, and a bad
// one changes nothing.
func (s *Server) setDrains(w http.ResponseWriter, r *http.Request) {
	app, err := s.deploys.App(r.Context(), chi.URLParam(r, "app"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var body DrainsRequest
	if err := decodeJSON(w, r, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(body.URLs) > 20 {
		s.writeError(w, r, errdefs.Invalid("too_many_drains", "an app may have at most 20 drains, not %d", len(body.URLs)))
		return
	}
	if body.URLs == nil {
		body.URLs = []string{}
	}
	for _, u := range body.URLs {
		// The form, and no internal address but those the operator allows.
		if err := s.drains.Validate(u); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	// Recorded first: what runs is never what a restart would not find.
	if err := s.drainStore.SetAppDrains(r.Context(), app.Name, body.URLs); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.drains.SetApp(app.Name, body.URLs); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info("app drains set", "app", app.Name, "drains", len(body.URLs))
	writeJSON(w, http.StatusOK, Drains{URLs: body.URLs, Status: s.drains.AppStatus(app.Name)})
}
