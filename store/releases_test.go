package store

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
)

// testRelease returns a release of app with every field the caller sets.
func testRelease(app string) deploy.Release {
	return deploy.Release{
		App:       app,
		Image:     "registry.example.com/" + app + ":v42",
		Env:       map[string]string{"DATABASE_URL": "postgres://db/" + app, "EMPTY": ""},
		Procfile:  "web: ./server\nworker: ./worker\n",
		Processes: map[string]string{"web": "./server", "worker": "./worker"},
	}
}

// assertRelease fails t unless got and want have the same fields.
func assertRelease(t *testing.T, got, want deploy.Release) {
	t.Helper()
	if got.App != want.App || got.Version != want.Version || got.Image != want.Image || got.Procfile != want.Procfile {
		t.Errorf("release: got %+v, want %+v", got, want)
	}
	if !maps.Equal(got.Env, want.Env) || (got.Env == nil) != (want.Env == nil) {
		t.Errorf("release Env: got %#v, want %#v", got.Env, want.Env)
	}
	if !maps.Equal(got.Processes, want.Processes) {
		t.Errorf("release Processes: got %#v, want %#v", got.Processes, want.Processes)
	}
	if got.Processes == nil {
		t.Errorf("release Processes: got nil, want a non-nil map")
	}
	if !got.CreatedAt.Equal(want.CreatedAt) || got.CreatedAt.Location() != time.UTC {
		t.Errorf("release CreatedAt: got %v, want %v in UTC", got.CreatedAt, want.CreatedAt)
	}
}

func TestDB_CreateRelease(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)

	before := time.Now()
	first, err := db.CreateRelease(ctx, testRelease("web"))
	if err != nil {
		t.Fatalf("CreateRelease: %v", err)
	}
	after := time.Now()
	if got, want := first.Version, 1; got != want {
		t.Errorf("first version: got %d, want %d", got, want)
	}
	if first.CreatedAt.Before(before) || first.CreatedAt.After(after) {
		t.Errorf("CreatedAt: got %v, want between %v and %v", first.CreatedAt, before, after)
	}
	if got, want := first.CreatedAt.Location(), time.UTC; got != want {
		t.Errorf("CreatedAt location: got %v, want %v", got, want)
	}

	spec := deploy.Release{App: "web", Image: "alpine:3", Version: 99} // Version is ignored
	second, err := db.CreateRelease(ctx, spec)
	if err != nil {
		t.Fatalf("second CreateRelease: %v", err)
	}
	if got, want := second.Version, 2; got != want {
		t.Errorf("second version: got %d, want %d", got, want)
	}
	if second.Processes == nil {
		t.Errorf("Processes: got nil, want a non-nil map")
	}

	other, err := db.CreateRelease(ctx, testRelease("api"))
	if err != nil {
		t.Fatalf("CreateRelease for another app: %v", err)
	}
	if got, want := other.Version, 1; got != want {
		t.Errorf("other app's first version: got %d, want %d", got, want)
	}

	app, err := db.App(ctx, "web")
	if err != nil {
		t.Fatalf("App: %v", err)
	}
	if app.Release == nil {
		t.Fatalf("App: got no release, want version 2")
	}
	assertRelease(t, *app.Release, second)
	if !app.CreatedAt.Equal(first.CreatedAt) {
		t.Errorf("app CreatedAt: got %v, want the first release's %v", app.CreatedAt, first.CreatedAt)
	}
}

func TestDB_App(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	want, err := db.CreateRelease(ctx, testRelease("web"))
	if err != nil {
		t.Fatalf("CreateRelease: %v", err)
	}
	// An app without a release: the schema allows it, the API never makes one.
	if _, err := db.w.ExecContext(ctx, `INSERT INTO apps (name, created_at) VALUES ('empty', ?)`,
		formatTime(time.Now())); err != nil {
		t.Fatalf("insert app: %v", err)
	}

	t.Run("with a release", func(t *testing.T) {
		app, err := db.App(ctx, "web")
		if err != nil {
			t.Fatalf("App: %v", err)
		}
		if got, want := app.Name, "web"; got != want {
			t.Errorf("Name: got %q, want %q", got, want)
		}
		if app.Release == nil {
			t.Fatalf("Release: got nil, want version %d", want.Version)
		}
		assertRelease(t, *app.Release, want)
	})

	t.Run("without a release", func(t *testing.T) {
		app, err := db.App(ctx, "empty")
		if err != nil {
			t.Fatalf("App: %v", err)
		}
		if app.Release != nil {
			t.Errorf("Release: got %+v, want nil", app.Release)
		}
	})

	t.Run("not found", func(t *testing.T) {
		_, err := db.App(ctx, "ghost")
		if !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatalf("App: got %v, want ErrNotFound", err)
		}
		if e, ok := errdefs.As(err); !ok || e.Code != "app_not_found" {
			t.Errorf("App error: got %v, want code app_not_found", err)
		}
	})
}

func TestDB_Apps(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)

	apps, err := db.Apps(ctx)
	if err != nil {
		t.Fatalf("Apps on an empty database: %v", err)
	}
	if apps == nil || len(apps) != 0 {
		t.Errorf("Apps on an empty database: got %#v, want an empty slice", apps)
	}

	latest := map[string]deploy.Release{}
	for _, name := range []string{"zeta", "alpha", "zeta", "mid", "alpha", "alpha"} {
		r, err := db.CreateRelease(ctx, testRelease(name))
		if err != nil {
			t.Fatalf("CreateRelease(%q): %v", name, err)
		}
		latest[name] = r
	}
	if _, err := db.w.ExecContext(ctx, `INSERT INTO apps (name, created_at) VALUES ('bare', ?)`,
		formatTime(time.Now())); err != nil {
		t.Fatalf("insert app: %v", err)
	}

	apps, err = db.Apps(ctx)
	if err != nil {
		t.Fatalf("Apps: %v", err)
	}
	var names []string
	for _, a := range apps {
		names = append(names, a.Name)
	}
	if got, want := names, []string{"alpha", "bare", "mid", "zeta"}; !slices.Equal(got, want) {
		t.Fatalf("Apps names: got %v, want %v", got, want)
	}
	for _, a := range apps {
		want, ok := latest[a.Name]
		switch {
		case !ok && a.Release != nil:
			t.Errorf("app %q: got release %+v, want none", a.Name, a.Release)
		case ok && a.Release == nil:
			t.Errorf("app %q: got no release, want version %d", a.Name, want.Version)
		case ok:
			assertRelease(t, *a.Release, want)
		}
	}
	if got, want := apps[0].Release.Version, 3; got != want {
		t.Errorf("alpha's current version: got %d, want %d", got, want)
	}
}
