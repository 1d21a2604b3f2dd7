package main

import (
	"context"
	"strings"
	"testing"
)

// TestRun_messages checks what the CLI says of a command line it cannot
// run, before it asks the daemon anything: one line, in its own words.
func TestRun_messages(t *testing.T) {
	t.Setenv("ONEOFF_API_TOKEN", "t")
	t.Setenv("ONEOFF_API_URL", "http://127.0.0.1:1") // nothing is asked of it
	t.Setenv("ONEOFF_APP", "")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"inspect"}, "inspect needs the one-off's id or name: oneoff [--app APP] inspect ID|NAME"},
		{[]string{"stop", "a", "b"}, "stop takes one argument, the one-off's id or name, not 2"},
		{[]string{"isnpect"}, `there is no command "isnpect": did you mean "inspect"? oneoff --help lists the commands`},
		{[]string{"ps", "--bogus"}, "oneoff ps has no flag --bogus (oneoff ps --help lists them)"},
		{[]string{"ps", "-zq"}, "oneoff ps has no flag -z (oneoff ps --help lists them)"},
		{[]string{"--app"}, "--app needs a value, as in oneoff --app APP COMMAND"},
		{[]string{"logs", "-n"}, "-n needs a value, as in --lines LINES"},
		{[]string{"-a", "web", "logs", "-n", "some"}, `--lines "some": give all or a whole number of lines, 0 or more`},
		{[]string{"-a", "web", "run", "-d", "--ttl", "5", "true"}, `--ttl: ttl "5" has no unit: write it with one, such as 5m or 5h`},
		{[]string{"-a", "web", "run", "--ttl", "5m", "true"}, "--tail and --ttl go with --detached"},
		{[]string{"run", "ls", "-a", "web"}, `which app? pass --app APP (or -a APP, or set ONEOFF_APP); flags go before the command: oneoff --app APP run CMD ("-a" came after it)`},
		{[]string{"run", "ls"}, "which app? pass --app APP"},
		{[]string{"-a", "web", "deploy"}, "deploy needs --image IMAGE"},
		{[]string{"apps", "x"}, `apps takes no argument "x"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut strings.Builder
			err := run(context.Background(), tt.args, strings.NewReader(""), &out, &errOut)
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("got %q, want one line with %q", msg, tt.want)
			}
		})
	}
}

func TestLineCount(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    lineCount
		wantErr bool
	}{
		{"all", lineCount{all: true}, false},
		{"0", lineCount{n: 0}, false},
		{"250", lineCount{n: 250}, false},
		{"-1", lineCount{}, true},
		{"lots", lineCount{}, true},
	} {
		var c lineCount
		err := c.Set(tt.in)
		if (err != nil) != tt.wantErr || (err == nil && c != tt.want) {
			t.Errorf("Set(%q) = %+v, %v; want %+v (error: %v)", tt.in, c, err, tt.want, tt.wantErr)
		}
	}
}
