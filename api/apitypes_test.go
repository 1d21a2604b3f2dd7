package api_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/oneoffd/oneoffd/api"
	"github.com/oneoffd/oneoffd/apitypes"
	"github.com/oneoffd/oneoffd/cron"
	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/logs"
	"github.com/oneoffd/oneoffd/oneoff"
)

// TestAPITypes_matchTheServers checks that the bodies clients decode and
// send, in apitypes, have the JSON shape of what the daemon writes and
// reads: the same field names, the same omitempty, the same kinds, down
// to nested objects. The daemon's own types are checked against
// docs/openapi.yaml, so apitypes follows the contract too.
func TestAPITypes_matchTheServers(t *testing.T) {
	pairs := []struct {
		name           string
		server, client any
	}{
		{"OneOff", oneoff.OneOff{}, apitypes.OneOff{}},
		{"Created", api.Created{}, apitypes.Created{}},
		{"AuditEvent", oneoff.AuditEvent{}, apitypes.AuditEvent{}},
		{"LogLine", oneoff.LogLine{}, apitypes.LogLine{}},
		{"Upload", oneoff.Upload{}, apitypes.Upload{}},
		{"TermSize", oneoff.TermSize{}, apitypes.TermSize{}},
		{"App", deploy.App{}, apitypes.App{}},
		{"Release", deploy.Release{}, apitypes.Release{}},
		{"Deploy", deploy.Spec{}, apitypes.Deploy{}},
		{"DrainStatus", logs.DrainStatus{}, apitypes.DrainStatus{}},
		{"Drains", api.Drains{}, apitypes.Drains{}},
		{"DrainList", api.DrainList{}, apitypes.DrainList{}},
		{"CronRun", cron.Run{}, apitypes.CronRun{}},
		{"Rejoined", api.Rejoined{}, apitypes.Rejoined{}},
	}
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			got, want := jsonShape(reflect.TypeOf(p.client)), jsonShape(reflect.TypeOf(p.server))
			if got != want {
				t.Errorf("apitypes.%s encodes as\n  %s\nwant the daemon's\n  %s", p.name, got, want)
			}
		})
	}
}

// TestAPITypes_commandForms checks that a command sent in either form
// reaches the daemon's type in that form.
// TestAPITypes_cronJob checks that a cron job's status, which the daemon
// writes with a MarshalJSON of its own, decodes into apitypes.CronJob with
// no field left over and none lost.
func TestAPITypes_cronJob(t *testing.T) {
	code := 3
	at := time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)
	status := cron.JobStatus{
		Job:       cron.Job{Name: "cleanup", Schedule: "*/10 * * * *", Timezone: "Europe/Paris", Command: "rake cleanup", Size: "M", TTL: "1h", Overlap: cron.Allow},
		NextRunAt: at, Failures: 2,
		LastRun: &cron.Run{Seq: 7, App: "my-app", Job: "cleanup", Trigger: cron.Scheduled, Status: cron.Started, ScheduledAt: at, At: at,
			OneOffID: "abc", OneOffName: "cron-cleanup-1234", Outcome: oneoff.Exited, ExitCode: &code, FinishedAt: &at},
	}
	b, err := json.Marshal(status)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var got apitypes.CronJob
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	again, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(b) {
		t.Errorf("apitypes.CronJob encodes as\n  %s\nwant the daemon's\n  %s", again, b)
	}
}

func TestAPITypes_commandForms(t *testing.T) {
	for _, c := range []apitypes.Command{{Line: "ls -l"}, {Args: []string{"ls", "-l"}}} {
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var got oneoff.Command
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if got.Line != c.Line || !reflect.DeepEqual(got.Args, c.Args) {
			t.Errorf("%s: the daemon read %+v, want %+v", b, got, c)
		}
	}
}

var (
	timeType    = reflect.TypeOf(time.Time{})
	commandType = reflect.TypeOf(apitypes.Command{})
	oneoffCmd   = reflect.TypeOf(oneoff.Command{})
)

// jsonShape describes how encoding/json writes typ: object fields by name
// with their omitempty, each with its value's shape.
func jsonShape(typ reflect.Type) string {
	switch {
	case typ == timeType:
		return "time"
	case typ == commandType || typ == oneoffCmd:
		return "command"
	}
	switch typ.Kind() {
	case reflect.Pointer:
		return "*" + jsonShape(typ.Elem())
	case reflect.Slice:
		if typ.Elem().Kind() == reflect.Uint8 {
			return "bytes"
		}
		return "[]" + jsonShape(typ.Elem())
	case reflect.Map:
		return "map[" + jsonShape(typ.Key()) + "]" + jsonShape(typ.Elem())
	case reflect.Struct:
		return "{" + strings.Join(objectFields(typ), ", ") + "}"
	}
	return typ.Kind().String()
}

func objectFields(typ reflect.Type) []string {
	var out []string
	for f := range typ.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || !f.IsExported() && !f.Anonymous:
			continue
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			out = append(out, objectFields(f.Type)...)
			continue
		case name == "":
			name = f.Name
		}
		if strings.Contains(opts, "omitempty") {
			name += ",omitempty"
		}
		out = append(out, name+": "+jsonShape(f.Type))
	}
	return out
}
