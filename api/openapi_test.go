package api_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/oneoffd/oneoffd/api"
	"github.com/oneoffd/oneoffd/cron"
	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/logs"
	"github.com/oneoffd/oneoffd/oneoff"
)

// specPath is the OpenAPI description of the API, from this package.
const specPath = "../docs/openapi.yaml"

// openAPIMethods are the operations a path item may hold.
var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// TestOpenAPI_matchesRouter checks docs/openapi.yaml against the router:
// every route served is documented and every documented route is served,
// and the document is well-formed enough for tools to read.
func TestOpenAPI_matchesRouter(t *testing.T) {
	raw, err := os.ReadFile(specPath)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("parse %s: %v", specPath, err)
	}
	paths, ok := doc["paths"].(map[string]any)
	if !ok {
		t.Fatalf("%s: got no paths object, want one", specPath)
	}

	// Metrics set so that /metrics is routed, as the daemon always does.
	srv := api.NewServer(api.Config{Token: "token"}, api.Deps{
		Metrics: prometheus.NewRegistry(),
		Log:     slog.New(slog.DiscardHandler),
	})
	served := servedRoutes(t, srv.Handler())
	documented := documentedRoutes(t, paths)

	t.Run("served routes are documented", func(t *testing.T) {
		if len(served) == 0 {
			t.Fatal("got no routes from the router, want some")
		}
		for _, r := range served {
			if !slices.Contains(documented, r) {
				t.Errorf("route %s is served but not in %s", r, specPath)
			}
		}
	})

	t.Run("documented routes are served", func(t *testing.T) {
		for _, r := range documented {
			if !slices.Contains(served, r) {
				t.Errorf("route %s is in %s but not served", r, specPath)
			}
		}
	})

	t.Run("operations have responses", func(t *testing.T) {
		forEachOperation(paths, func(route string, op map[string]any) {
			if resp, _ := op["responses"].(map[string]any); len(resp) == 0 {
				t.Errorf("%s: got no responses, want at least one", route)
			}
		})
	})

	t.Run("refs resolve", func(t *testing.T) {
		walkRefs(doc, "#", func(at, ref string) {
			if err := resolveRef(doc, ref); err != nil {
				t.Errorf("%s: $ref %q: %v", at, ref, err)
			}
		})
	})

	t.Run("path parameters are declared", func(t *testing.T) {
		for _, p := range sortedKeys(paths) {
			item, _ := paths[p].(map[string]any)
			inTemplate := pathParams(p)
			for _, m := range openAPIMethods {
				op, ok := item[m].(map[string]any)
				if !ok {
					continue
				}
				route := strings.ToUpper(m) + " " + p
				declared := declaredPathParams(t, doc, route, item, op)
				for _, name := range inTemplate {
					if !slices.Contains(declared, name) {
						t.Errorf("%s: path parameter %q is not declared (in: path, required: true)", route, name)
					}
				}
				for _, name := range declared {
					if !slices.Contains(inTemplate, name) {
						t.Errorf("%s: declares path parameter %q, which the path does not have", route, name)
					}
				}
			}
		}
	})

	t.Run("schemas match the Go types", func(t *testing.T) {
		types := map[string]any{
			"Error":         api.ErrorBody{},
			"CreateOneOff":  api.CreateOneOff{},
			"Created":       api.Created{},
			"Drains":        api.Drains{},
			"DrainsRequest": api.DrainsRequest{},
			"DrainList":     api.DrainList{},
			"DrainStatus":   logs.DrainStatus{},
			"OneOff":        oneoff.OneOff{},
			"TermSize":      oneoff.TermSize{},
			"Upload":        oneoff.Upload{},
			"Uploaded":      oneoff.Uploaded{},
			"AuditEvent":    oneoff.AuditEvent{},
			"LogLine":       oneoff.LogLine{},
			"App":           deploy.App{},
			"Release":       deploy.Release{},
			"Spec":          deploy.Spec{},
			"CronJob":       cron.JobStatus{},
			"CronJobs":      api.CronJobs{},
			"CronRun":       cron.Run{},
			"CronRuns":      api.CronRuns{},
		}
		for _, name := range sortedKeys(types) {
			got := schemaProperties(t, doc, "#/components/schemas/"+name)
			want := jsonFields(reflect.TypeOf(types[name]))
			for _, f := range want {
				if !slices.Contains(got, f) {
					t.Errorf("schema %s: got no property %q, want one for that JSON field of %T", name, f, types[name])
				}
			}
			for _, p := range got {
				if !slices.Contains(want, p) {
					t.Errorf("schema %s: got property %q, want none: %T has no such JSON field", name, p, types[name])
				}
			}
		}
	})

	t.Run("valid OpenAPI", func(t *testing.T) {
		loader := openapi3.NewLoader()
		spec, err := loader.LoadFromData(raw)
		if err != nil {
			t.Fatalf("load %s: %v", specPath, err)
		}
		if err := spec.Validate(t.Context()); err != nil {
			t.Errorf("validate %s: %v", specPath, err)
		}
	})
}

// servedRoutes returns the router's routes as "METHOD /path", sorted,
// leaving out the operators' web page under /ui, which is not the API.
func servedRoutes(t *testing.T, h http.Handler) []string {
	t.Helper()
	routes, ok := h.(chi.Routes)
	if !ok {
		t.Fatalf("Handler() is a %T, want a chi.Routes to walk", h)
	}
	var out []string
	err := chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		route = normalizeRoute(route)
		if route == "/ui" || strings.HasPrefix(route, "/ui/") {
			return nil
		}
		r := method + " " + route
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk the router: %v", err)
	}
	slices.Sort(out)
	return out
}

// normalizeRoute turns a chi pattern into an OpenAPI path: without the
// "/*" or "/" that chi's Route and Mount leave at the end.
func normalizeRoute(route string) string {
	for {
		trimmed := strings.TrimSuffix(strings.TrimSuffix(route, "/*"), "/")
		if trimmed == route {
			break
		}
		route = trimmed
	}
	if route == "" {
		return "/"
	}
	return route
}

// documentedRoutes returns the document's operations as "METHOD /path",
// sorted.
func documentedRoutes(t *testing.T, paths map[string]any) []string {
	t.Helper()
	var out []string
	for _, p := range sortedKeys(paths) {
		item, ok := paths[p].(map[string]any)
		if !ok {
			t.Errorf("path %s: got a %T, want a path item object", p, paths[p])
			continue
		}
		if !strings.HasPrefix(p, "/") {
			t.Errorf("path %q: want it to start with /", p)
		}
		n := 0
		for _, m := range openAPIMethods {
			if _, ok := item[m]; ok {
				out = append(out, strings.ToUpper(m)+" "+p)
				n++
			}
		}
		if n == 0 {
			t.Errorf("path %s: got no operations, want at least one", p)
		}
	}
	slices.Sort(out)
	return out
}

// forEachOperation calls fn with each operation of paths and its route.
func forEachOperation(paths map[string]any, fn func(route string, op map[string]any)) {
	for _, p := range sortedKeys(paths) {
		item, _ := paths[p].(map[string]any)
		for _, m := range openAPIMethods {
			if op, ok := item[m].(map[string]any); ok {
				fn(strings.ToUpper(m)+" "+p, op)
			}
		}
	}
}

// walkRefs calls fn with every "$ref" under v and where it is.
func walkRefs(v any, at string, fn func(at, ref string)) {
	switch v := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(v) {
			if k == "$ref" {
				ref, _ := v[k].(string)
				fn(at, ref)
				continue
			}
			walkRefs(v[k], at+"/"+escapePointer(k), fn)
		}
	case []any:
		for i, e := range v {
			walkRefs(e, fmt.Sprintf("%s/%d", at, i), fn)
		}
	}
}

// resolveRef follows a local reference ("#/components/...") in doc.
func resolveRef(doc map[string]any, ref string) error {
	_, err := lookupRef(doc, ref)
	return err
}

// lookupRef returns what a local reference points to in doc.
func lookupRef(doc map[string]any, ref string) (any, error) {
	rest, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, fmt.Errorf("want a reference within the document, starting with #/")
	}
	var cur any = doc
	for _, tok := range strings.Split(rest, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%q is under a %T, not an object", tok, cur)
		}
		if cur, ok = m[tok]; !ok {
			return nil, fmt.Errorf("no %q", tok)
		}
	}
	return cur, nil
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

var pathParam = regexp.MustCompile(`\{([^{}]+)\}`)

// pathParams returns the names of a path template's parameters.
func pathParams(path string) []string {
	var names []string
	for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
		names = append(names, m[1])
	}
	return names
}

// declaredPathParams returns the names of the path parameters an operation
// declares, its own and its path item's, following references; each must
// be required.
func declaredPathParams(t *testing.T, doc map[string]any, route string, item, op map[string]any) []string {
	t.Helper()
	var names []string
	for _, list := range []any{item["parameters"], op["parameters"]} {
		params, _ := list.([]any)
		for _, p := range params {
			param, _ := p.(map[string]any)
			if ref, ok := param["$ref"].(string); ok {
				target, err := lookupRef(doc, ref)
				if err != nil {
					continue // reported by "refs resolve"
				}
				param, _ = target.(map[string]any)
			}
			if param["in"] != "path" {
				continue
			}
			name, _ := param["name"].(string)
			if param["required"] != true {
				t.Errorf("%s: path parameter %q: got required %v, want true", route, name, param["required"])
			}
			names = append(names, name)
		}
	}
	return names
}

// schemaProperties returns the sorted property names of the schema ref
// points to, with those of its allOf members.
func schemaProperties(t *testing.T, doc map[string]any, ref string) []string {
	t.Helper()
	target, err := lookupRef(doc, ref)
	if err != nil {
		t.Errorf("schema %s: %v", ref, err)
		return nil
	}
	schema, _ := target.(map[string]any)
	props, _ := schema["properties"].(map[string]any)
	names := sortedKeys(props)
	all, _ := schema["allOf"].([]any)
	for _, member := range all {
		m, _ := member.(map[string]any)
		if r, ok := m["$ref"].(string); ok {
			names = append(names, schemaProperties(t, doc, r)...)
			continue
		}
		props, _ := m["properties"].(map[string]any)
		names = append(names, sortedKeys(props)...)
	}
	slices.Sort(names)
	return names
}

// jsonFields returns the sorted names encoding/json gives typ's fields,
// those of embedded structs included.
func jsonFields(typ reflect.Type) []string {
	var names []string
	for f := range typ.Fields() {
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		switch {
		case name == "-" || !f.IsExported() && !f.Anonymous:
			continue
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			names = append(names, jsonFields(f.Type)...)
			continue
		case name == "":
			name = f.Name
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
