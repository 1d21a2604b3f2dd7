package deploy_test

import (
	"errors"
	"maps"
	"strings"
	"testing"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
)

func TestParseProcfile(t *testing.T) {
	tests := []struct {
		name string
		text string
		want map[string]string
	}{
		{name: "empty", text: "", want: map[string]string{}},
		{name: "only blank lines", text: "\n\n   \n\t\n", want: map[string]string{}},
		{
			name: "one process",
			text: "web: bundle exec puma\n",
			want: map[string]string{"web": "bundle exec puma"},
		},
		{
			name: "no trailing newline",
			text: "web: bundle exec puma",
			want: map[string]string{"web": "bundle exec puma"},
		},
		{
			name: "several processes",
			text: "web: bundle exec puma\nworker: bundle exec sidekiq\nrelease_phase-2: rake db:migrate\n",
			want: map[string]string{
				"web":             "bundle exec puma",
				"worker":          "bundle exec sidekiq",
				"release_phase-2": "rake db:migrate",
			},
		},
		{
			name: "comments and blank lines",
			text: "# the web tier\n\nweb: ./server\n   # indented comment\n\nworker: ./worker\n#clock: ./clock\n",
			want: map[string]string{"web": "./server", "worker": "./worker"},
		},
		{
			name: "CRLF line endings",
			text: "web: ./server --port $PORT\r\n\r\nworker: ./worker\r\n",
			want: map[string]string{"web": "./server --port $PORT", "worker": "./worker"},
		},
		{
			name: "colon inside the command",
			text: "web: bundle exec puma -b tcp://0.0.0.0:$PORT",
			want: map[string]string{"web": "bundle exec puma -b tcp://0.0.0.0:$PORT"},
		},
		{
			name: "whitespace is trimmed",
			text: "  web:\t  ./server   \n",
			want: map[string]string{"web": "./server"},
		},
		{
			name: "no space after the colon",
			text: "web:./server",
			want: map[string]string{"web": "./server"},
		},
		{
			name: "byte order mark",
			text: "\ufeffweb: ./server\n",
			want: map[string]string{"web": "./server"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := deploy.ParseProcfile(tt.text)
			if err != nil {
				t.Fatalf("ParseProcfile(%q): %v", tt.text, err)
			}
			if got == nil {
				t.Fatalf("ParseProcfile(%q) = nil map, want non-nil", tt.text)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("ParseProcfile(%q) = %v, want %v", tt.text, got, tt.want)
			}
		})
	}
}

func TestParseProcfile_Errors(t *testing.T) {
	tests := []struct {
		name string
		text string
		// wantMsg are substrings the error message must contain.
		wantMsg []string
	}{
		{
			name:    "no colon",
			text:    "web: ./server\n\nweb bundle exec\n",
			wantMsg: []string{"Procfile line 3:", `"web bundle exec" has no "name: command" form`},
		},
		{
			name:    "no colon after CRLF lines",
			text:    "# comment\r\nweb: ./server\r\njunk\r\n",
			wantMsg: []string{"Procfile line 3:", `"junk"`},
		},
		{
			name:    "empty name",
			text:    ": ./server",
			wantMsg: []string{"Procfile line 1:", `process type name ""`, "invalid"},
		},
		{
			name:    "name with a space",
			text:    "web server: ./server",
			wantMsg: []string{"Procfile line 1:", `process type name "web server"`, "invalid"},
		},
		{
			name:    "name with a dot",
			text:    "\nweb.1: ./server",
			wantMsg: []string{"Procfile line 2:", `"web.1"`},
		},
		{
			name:    "name with a non-ASCII letter",
			text:    "wéb: ./server",
			wantMsg: []string{"Procfile line 1:", `"wéb"`},
		},
		{
			name:    "empty command",
			text:    "web: ./server\nworker:\n",
			wantMsg: []string{"Procfile line 2:", `process type "worker" has an empty command`},
		},
		{
			name:    "blank command",
			text:    "worker:   \t\r\n",
			wantMsg: []string{"Procfile line 1:", "empty command"},
		},
		{
			name:    "duplicate name",
			text:    "web: ./a\nworker: ./w\n\nweb: ./b\n",
			wantMsg: []string{"Procfile line 4:", `"web"`, "already defined on line 1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := deploy.ParseProcfile(tt.text)
			if err == nil {
				t.Fatalf("ParseProcfile(%q) = %v, nil; want an error", tt.text, got)
			}
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("ParseProcfile(%q) error %v: got not ErrInvalid, want ErrInvalid", tt.text, err)
			}
			e, ok := errdefs.As(err)
			if !ok {
				t.Fatalf("ParseProcfile(%q) error %v is not an *errdefs.Error", tt.text, err)
			}
			if got, want := e.Code, "invalid_procfile"; got != want {
				t.Errorf("error code: got %q, want %q", got, want)
			}
			for _, want := range tt.wantMsg {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error message: got %q, want it to contain %q", err.Error(), want)
				}
			}
		})
	}
}
