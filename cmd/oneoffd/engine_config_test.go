package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseConfig_engine(t *testing.T) {
	t.Run("one Docker engine by default", func(t *testing.T) {
		c, err := parseConfig(nil, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.Engine != "docker" {
			t.Errorf("engine = %q, want docker", c.Engine)
		}
	})
	t.Run("swarm", func(t *testing.T) {
		c, err := parseConfig(strings.Fields("--engine swarm --docker-host tcp://10.0.0.1:2376 --node-tls-dir /etc/oneoffd/node-tls --node-port 2377 --place-timeout 5s --placement node.role==worker,node.labels.a!=b --warm 2"), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.Engine != "swarm" || c.DockerHost != "tcp://10.0.0.1:2376" || c.NodeTLSDir != "/etc/oneoffd/node-tls" || c.NodePort != 2377 || c.PlaceTimeout != 5*time.Second || strings.Join(c.Placement, ";") != "node.role==worker;node.labels.a!=b" || c.Warm != 2 {
			t.Errorf("config = %+v", c)
		}
	})
	for _, tt := range []struct{ args, want string }{
		{"--engine kubernetes", `--engine "kubernetes": use docker (one engine) or swarm (a Swarm cluster)`},
		{"--engine swarm", "--engine swarm needs --node-tls-dir"},
		{"--engine swarm --node-tls-dir /x --node-port 70000", "--node-port 70000 is not a TCP port"},
		{"--engine swarm --node-tls-dir /x --place-timeout 0s", "--place-timeout must be positive"},
		{"--engine swarm --node-tls-dir /x --placement worker", `--placement "worker": a constraint compares with == or !=`},
		{"--engine swarm --node-tls-dir /x --warm -1", "--warm -1: give how many containers to keep warm"},
	} {
		t.Run("refused: "+tt.args, func(t *testing.T) {
			_, err := parseConfig(strings.Fields(tt.args), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one saying %q", err, tt.want)
			}
		})
	}
}
