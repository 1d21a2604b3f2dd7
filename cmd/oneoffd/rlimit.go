package main

import (
	"fmt"
	"log/slog"
	"syscall"
)

// raiseOpenFiles raises the soft limit on open files to the hard one, so
// that the caps below are what bounds the connections, not EMFILE, and
// returns the limit now in force.
func raiseOpenFiles() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read the open-files limit: %w", err)
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = raised.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			return lim.Cur, fmt.Errorf("raise the open-files limit from %d to %d: %w", lim.Cur, lim.Max, err)
		}
		lim = raised
	}
	return lim.Cur, nil
}

// fitOpenFiles lowers the connection caps that an open-files limit of
// nofile could not honour: the API's connections and the attach
// endpoint's pending handshakes get a quarter of it each, which leaves half
// for the sessions, the engine, the database and the logs.
func fitOpenFiles(cfg *config, nofile uint64, log *slog.Logger) {
	share := int(min(nofile/4, 1<<20))
	for _, c := range []struct {
		flag string
		n    *int
	}{{"api-max-conns", &cfg.APIMaxConns}, {"attach-max-pending", &cfg.AttachMaxPending}, {"attach-max-pending-per-ip", &cfg.AttachMaxPendingPerIP}} {
		if *c.n > share && share > 0 {
			log.Warn("the open-files limit is low: lowering a connection cap to a quarter of it; raise the limit (LimitNOFILE=, ulimit -n) to keep the cap",
				"flag", "--"+c.flag, "configured", *c.n, "now", share, "open_files_limit", nofile)
			*c.n = share
		}
	}
}
