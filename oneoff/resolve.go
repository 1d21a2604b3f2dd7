package oneoff

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/oneoffd/oneoffd/errdefs"
)

// Resolve finds the one-off that ref names: its id, or its name, which is
// unique within an app. app, when not empty, is where a name is looked
// for, and an id of another app's one-off is not found; without it, a
// name that several apps' one-offs have is an error listing them.
func (m *Manager) Resolve(ctx context.Context, app, ref string) (OneOff, error) {
	if ref == "" {
		return OneOff{}, errdefs.Invalid("oneoff_required", "which one-off? give its id or its name")
	}
	o, err := m.Get(ctx, ref)
	switch {
	case err == nil && (app == "" || o.App == app):
		return o, nil
	case err != nil && !errors.Is(err, errdefs.ErrNotFound):
		return OneOff{}, err
	}
	list, err := m.store.OneOffs(ctx, Filter{App: app, Name: ref, Limit: 10})
	if err != nil {
		return OneOff{}, fmt.Errorf("find one-off %q: %w", ref, err)
	}
	switch len(list) {
	case 0:
		if app != "" {
			return OneOff{}, errdefs.NotFound("oneoff_not_found", "app %s has no one-off %q (by id or name): oneoff --app %s ps --all lists them", app, ref, app)
		}
		return OneOff{}, errdefs.NotFound("oneoff_not_found", "no one-off has the id or name %q: oneoff ps --all lists them", ref)
	case 1:
		return m.Get(ctx, list[0].ID)
	}
	matches := make([]string, len(list))
	for i, o := range list {
		matches[i] = fmt.Sprintf("%s of app %s (id %s)", o.Name, o.App, o.ID)
	}
	return OneOff{}, errdefs.Invalid("ambiguous_oneoff", "%q names %d one-offs: %s; give the id, or the app (--app APP, ?app=)",
		ref, len(list), strings.Join(matches, ", "))
}
