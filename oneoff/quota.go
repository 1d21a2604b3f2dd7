package oneoff

import (
	"fmt"
	"slices"
	"strings"

	"github.com/oneoffd/oneoffd/errdefs"
)

// quotaNames is how many of the one-offs in the way a refusal names.
const quotaNames = 5

// checkQuotaLocked refuses a new one-off of app when the app, or the
// daemon, already has as many unfinished one-offs as its quota allows.
// Every one-off not finished yet is in m.handles from the moment its create
// begins, so the count includes creates still under way. m.mu is held.
func (m *Manager) checkQuotaLocked(app string) error {
	var ofApp, all []string
	for _, h := range m.handles {
		rec := h.snapshot()
		name := rec.Name
		if name == "" {
			name = "one being created"
		}
		all = append(all, name)
		if rec.App == app {
			ofApp = append(ofApp, name)
		}
	}
	switch {
	case len(ofApp) >= m.cfg.MaxPerApp:
		m.met.quotaRefusals.WithLabelValues("app").Inc()
		return errdefs.Quota("oneoff_quota_app",
			"app %s already runs %d one-offs (%s), the most --max-oneoffs-per-app allows: stop one or wait for one to end",
			app, len(ofApp), listNames(ofApp))
	case len(all) >= m.cfg.MaxTotal:
		m.met.quotaRefusals.WithLabelValues("total").Inc()
		return errdefs.Quota("oneoff_quota_total",
			"oneoffd already runs %d one-offs, of all apps, the most --max-oneoffs allows (of app %s: %s): stop one or wait for one to end",
			len(all), app, orNone(listNames(ofApp)))
	}
	return nil
}

// listNames returns the first few names, sorted, and how many more there
// are.
func listNames(names []string) string {
	slices.Sort(names)
	if len(names) <= quotaNames {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:quotaNames], ", ") + fmt.Sprintf(" and %d more", len(names)-quotaNames)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
