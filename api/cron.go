package api

import (
	"context"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/oneoffd/oneoffd/cron"
	"github.com/oneoffd/oneoffd/errdefs"
)

// Cron lists, runs and tells the history of the apps' cron jobs;
// *cron.Scheduler is one.
type Cron interface {
	Jobs(ctx context.Context, app string) ([]cron.JobStatus, error)
	RunNow(ctx context.Context, app, job, requester string) (cron.Run, error)
	History(ctx context.Context, app, job string, limit int) ([]cron.Run, error)
}

var _ Cron = (*cron.Scheduler)(nil)

// CronJobs is the answer to GET /v1/apps/{app}/cron.
type CronJobs struct {
	Jobs []cron.JobStatus `json:"jobs"`
}

// CronRuns is the answer to GET /v1/apps/{app}/cron/{job}/runs.
type CronRuns struct {
	Runs []cron.Run `json:"runs"`
}

// mountCron adds the cron routes to the /v1 router.
func (s *Server) mountCron(r chi.Router) {
	r.Get("/apps/{app}/cron", s.cronJobs)
	r.Post("/apps/{app}/cron/{job}/runs", s.runCronJob)
	r.Get("/apps/{app}/cron/{job}/runs", s.cronHistory)
}

func (s *Server) cronEnabled(w http.ResponseWriter, r *http.Request) bool {
	if s.cron == nil {
		s.writeError(w, r, errdefs.NotFound("cron_disabled", "this daemon runs no cron jobs"))
		return false
	}
	return true
}

func (s *Server) cronJobs(w http.ResponseWriter, r *http.Request) {
	if !s.cronEnabled(w, r) {
		return
	}
	jobs, err := s.cron.Jobs(r.Context(), chi.URLParam(r, "app"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, CronJobs{Jobs: jobs})
}

func (s *Server) runCronJob(w http.ResponseWriter, r *http.Request) {
	if !s.cronEnabled(w, r) {
		return
	}
	run, err := s.cron.RunNow(r.Context(), chi.URLParam(r, "app"), chi.URLParam(r, "job"), r.Header.Get(RequesterHeader))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, run)
}

func (s *Server) cronHistory(w http.ResponseWriter, r *http.Request) {
	if !s.cronEnabled(w, r) {
		return
	}
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > cron.MaxHistory {
			s.writeError(w, r, errdefs.Invalid("invalid_limit", "limit %q must be a whole number from 1 to %d", v, cron.MaxHistory))
			return
		}
		limit = n
	}
	runs, err := s.cron.History(r.Context(), chi.URLParam(r, "app"), chi.URLParam(r, "job"), limit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, CronRuns{Runs: runs})
}
