package main

import (
	"io"
	"log/slog"
	"syscall"
	"testing"
)

func TestRaiseOpenFiles(t *testing.T) {
	got, err := raiseOpenFiles()
	if err != nil {
		t.Fatal(err)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if got != lim.Cur || lim.Cur != lim.Max {
		t.Errorf("got %d, limit now %d of %d; want the soft limit raised to the hard one", got, lim.Cur, lim.Max)
	}
}

func TestFitOpenFiles(t *testing.T) {
	tests := []struct {
		nofile                 uint64
		api, pending, perIP    int
		wantAPI, wantP, wantIP int
	}{
		{nofile: 1 << 20, api: 1024, pending: 256, perIP: 16, wantAPI: 1024, wantP: 256, wantIP: 16},
		{nofile: 256, api: 1024, pending: 256, perIP: 16, wantAPI: 64, wantP: 64, wantIP: 16},
		{nofile: 32, api: 1024, pending: 256, perIP: 16, wantAPI: 8, wantP: 8, wantIP: 8},
		{nofile: 0, api: 1024, pending: 256, perIP: 16, wantAPI: 1024, wantP: 256, wantIP: 16}, // unknown
	}
	for _, tt := range tests {
		cfg := config{APIMaxConns: tt.api, AttachMaxPending: tt.pending, AttachMaxPendingPerIP: tt.perIP}
		fitOpenFiles(&cfg, tt.nofile, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if cfg.APIMaxConns != tt.wantAPI || cfg.AttachMaxPending != tt.wantP || cfg.AttachMaxPendingPerIP != tt.wantIP {
			t.Errorf("limit %d: got %d, %d, %d; want %d, %d, %d", tt.nofile,
				cfg.APIMaxConns, cfg.AttachMaxPending, cfg.AttachMaxPendingPerIP, tt.wantAPI, tt.wantP, tt.wantIP)
		}
	}
}
