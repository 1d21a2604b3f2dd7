package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/term"

	"github.com/oneoffd/oneoffd/api"
	"github.com/oneoffd/oneoffd/cron"
	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/internal/version"
	"github.com/oneoffd/oneoffd/logs"
	"github.com/oneoffd/oneoffd/oneoff"
	"github.com/oneoffd/oneoffd/store"
)

func run(ctx context.Context, args []string) error {
	cfg, err := parseConfig(args, os.Stderr)
	if err != nil {
		return err
	}
	if cfg.Version {
		fmt.Println("oneoffd", version.String())
		return nil
	}
	log, err := newLogger(cfg, os.Stderr)
	if err != nil {
		return err
	}
	nofile, err := raiseOpenFiles()
	if err != nil {
		log.Warn("open-files limit", "err", err)
	} else {
		log.Info("open-files limit", "limit", nofile)
	}
	fitOpenFiles(&cfg, nofile, log)
	if err := privateDataDir(cfg.DataDir, log); err != nil {
		return err
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	token, tokenFile, err := loadToken(cfg, log)
	if err != nil {
		return err
	}
	instance, err := readOrCreate(filepath.Join(cfg.DataDir, "instance-id"), 8)
	if err != nil {
		return err
	}
	db, err := store.Open(filepath.Join(cfg.DataDir, "oneoffd.db"), store.KeepReleases(cfg.ReleasesKeep))
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer db.Close()
	logStore, err := logs.Open(logs.Options{Dir: filepath.Join(cfg.DataDir, "logs"), MaxBytesPerApp: cfg.LogRetention})
	if err != nil {
		return fmt.Errorf("open log store: %w", err)
	}
	defer logStore.Close()
	drains, err := newDrains(ctx, cfg, db, log)
	if err != nil {
		return err
	}
	defer logStore.Subscribe(drains.Enqueue)()
	drainsCtx, stopDrains := context.WithCancel(context.WithoutCancel(ctx))
	drainsDone := make(chan struct{})
	go func() { defer close(drainsDone); drains.Run(drainsCtx) }()
	defer func() { stopDrains(); <-drainsDone }()
	cfg.Isolation.Instance = instance
	engine, err := openEngine(cfg, log)
	if err != nil {
		return err
	}
	defer engine.Close()
	var tlsConfig *tls.Config
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("load TLS certificate: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}

	// Closed on every way out, an early one included; the servers close
	// them again on shutdown, which is harmless.
	apiLn, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("listen for the API on %s: %w", cfg.APIAddr, err)
	}
	defer apiLn.Close()
	attachLn, err := net.Listen("tcp", cfg.AttachAddr)
	if err != nil {
		return fmt.Errorf("listen for attach on %s: %w", cfg.AttachAddr, err)
	}
	defer attachLn.Close()
	var metricsLn net.Listener
	if cfg.MetricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return fmt.Errorf("listen for metrics on %s: %w", cfg.MetricsAddr, err)
		}
		defer metricsLn.Close()
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), drains,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "oneoffd_build_info",
			Help:        "The running build: always 1, with its version and commit as labels.",
			ConstLabels: prometheus.Labels{"version": version.Version(), "commit": version.Commit()},
		}, func() float64 { return 1 }))
	engine.Instrument(reg)
	sizeNames := make([]string, len(cfg.Sizes))
	for i, sz := range cfg.Sizes {
		sizeNames[i] = sz.Name
	}
	cronRules := cron.Rules{MinInterval: cfg.CronMinInterval, Sizes: sizeNames, MaxTTL: cfg.MaxLifetime}
	deploys := deploy.NewService(db, deploy.WithCron(cronRules))
	recordDir := ""
	if cfg.RecordSessions {
		recordDir = filepath.Join(cfg.DataDir, "recordings")
	}
	mgr := oneoff.NewManager(oneoff.Config{
		Instance: instance, IdleTimeout: cfg.IdleTimeout, AttachWait: cfg.AttachWaitTimeout, StopGrace: cfg.StopGrace,
		MaxLifetime: cfg.MaxLifetime, Sizes: cfg.Sizes, DefaultSize: cfg.DefaultSize,
		MaxUploadFile: cfg.MaxUploadFile, MaxUploadTotal: cfg.MaxUploadRequest, PullTimeout: cfg.PullTimeout,
		ReconcileInterval: cfg.ReconcileInterval, ReconnectGrace: cfg.ReconnectGrace,
		RecordDir: recordDir, RecordingMaxSize: cfg.RecordingMaxSize,
		Metrics:   reg,
		MaxPerApp: cfg.MaxOneOffsPerApp, MaxTotal: cfg.MaxOneOffs, RecordRetention: cfg.RecordRetention,
	}, engine, db, deploys, logStore, log)
	deploys.CheckImage = mgr.CheckImage // a deploy of an image that cannot run fails then
	probeCtx, cancelProbe := context.WithTimeout(ctx, 30*time.Second)
	err = engine.Probe(probeCtx)
	cancelProbe()
	if err != nil {
		log.Warn("could not ask the engine whether it supports disk quotas; the first one-off will ask again", "err", err)
	}
	if err := mgr.Start(ctx); err != nil {
		return err
	}
	apiMetrics := prometheus.Gatherer(reg)
	if metricsLn != nil {
		apiMetrics = nil // on a listener of its own
	}
	sched := cron.New(cron.Config{Rules: cronRules, Metrics: reg}, mgr, deploys, db, log)
	if err := sched.Start(ctx); err != nil {
		_ = mgr.Close(context.Background())
		return err
	}
	defer deploys.Subscribe(func(deploy.Release) { sched.Wake() })()
	srv := api.NewServer(api.Config{
		Token: token, AttachAddr: attachLn.Addr().String(), AttachHost: cfg.AttachHost, AttachTLS: tlsConfig != nil,
		Version: version.Version(), Commit: version.Commit(), MetricsPublic: cfg.MetricsPublic,
	}, api.Deps{
		OneOffs: mgr, Deploys: deploys, Logs: logStore, Drains: drains, DrainStore: db, Log: log, Metrics: apiMetrics,
		Ready:        map[string]api.Checker{"engine": engine.Ping, "database": db.Ping},
		ReadyDetails: engine.ReadyDetails,
		Cron:         sched,
	})
	apiConns := api.NewConnLimit(apiLn, cfg.APIMaxConns, log, reg)
	httpSrv := newHTTPServer(api.WithTimeouts(srv.Handler(), api.Timeouts{}), log)
	httpSrv.TLSConfig, httpSrv.ConnState = tlsConfig, apiConns.ConnState
	httpSrv.RegisterOnShutdown(srv.CloseStreams)
	attachKeepAlive := cfg.AttachKeepAlive
	if attachKeepAlive == 0 {
		attachKeepAlive = -1 // off
	}
	attachSrv := api.NewAttachServer(mgr, log, api.AttachConfig{TLS: tlsConfig, Metrics: reg,
		MaxPending: cfg.AttachMaxPending, MaxPendingPerClient: cfg.AttachMaxPendingPerIP, KeepAlive: attachKeepAlive})
	srv.ServeAttach(attachSrv)
	var metricsSrv *http.Server
	if metricsLn != nil {
		metricsSrv = newHTTPServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), log)
		metricsSrv.WriteTimeout = time.Minute // no stream here
	}

	errc := make(chan error, 3)
	go func() {
		var err error
		if tlsConfig != nil {
			err = httpSrv.ServeTLS(apiConns, "", "")
		} else {
			err = httpSrv.Serve(apiConns)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("API server: %w", err)
		}
	}()
	go func() {
		if err := attachSrv.Serve(attachLn); err != nil {
			errc <- fmt.Errorf("attach server: %w", err)
		}
	}()
	if metricsSrv != nil {
		go func() {
			if err := metricsSrv.Serve(metricsLn); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics server: %w", err)
			}
		}()
	}
	attrs := []any{"version", version.Version(), "commit", version.Commit(), "api_addr", apiLn.Addr().String(), "attach_addr", attachLn.Addr().String(),
		"data_dir", cfg.DataDir, "engine", cfg.Engine, "docker_host", engine.Address()}
	if metricsLn != nil {
		attrs = append(attrs, "metrics_addr", metricsLn.Addr().String())
	}
	if tokenFile != "" {
		attrs = append(attrs, "token_file", tokenFile)
	}
	log.Info("oneoffd ready", attrs...)
	if err := engine.Ping(ctx); err != nil {
		log.Warn("the engine does not answer yet; one-offs will fail until it does", "engine", cfg.Engine, "docker_host", engine.Address(), "err", err)
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: draining attached sessions", "timeout", cfg.ShutdownTimeout)
	case runErr = <-errc:
		log.Error("shutting down after a listener failed", "err", runErr)
	}
	shutdown, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	attachSrv.Close()
	if err := httpSrv.Shutdown(shutdown); err != nil {
		log.Warn("API shutdown", "err", err)
	}
	if err := sched.Close(shutdown); err != nil {
		log.Warn("cron scheduler shutdown", "err", err)
	}
	if metricsSrv != nil {
		_ = metricsSrv.Close()
	}
	if err := mgr.Close(shutdown); err != nil {
		log.Warn("manager shutdown", "err", err)
	}
	// The networks of the one-offs that ended; those of detached jobs
	// still running, and of pending one-offs, stay for the next start.
	// The engine may take a moment to let a removed container's endpoint
	// go: a few seconds, not the whole shutdown timeout.
	pruneCtx, cancelPrune := context.WithTimeout(shutdown, 5*time.Second)
	defer cancelPrune()
	if err := engine.PruneWait(pruneCtx); err != nil {
		log.Warn("remove unused app networks", "err", err)
	}
	log.Info("oneoffd stopped")
	return runErr
}

// newHTTPServer is an http.Server for h with the daemon's bounds: headers
// must come within api.DefaultReadHeaderTimeout, a keep-alive connection
// idle for api.DefaultIdleTimeout is closed. There is no absolute read or
// write timeout, which would cut log streams and uploads short: the API's
// handler puts per-request deadlines on them (api.WithTimeouts). The
// server's own complaints, such as a scanner's failed TLS handshakes, are
// debug lines: they come at the rate of the peers.
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: api.DefaultReadHeaderTimeout, IdleTimeout: api.DefaultIdleTimeout,
		MaxHeaderBytes: 64 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
}

// newDrains sets up the log drains: the daemon's for every app, and each
// app's as recorded.
func newDrains(ctx context.Context, cfg config, db *store.DB, log *slog.Logger) (*logs.Drains, error) {
	var tlsConfig *tls.Config
	if cfg.DrainCA != "" {
		pem, err := os.ReadFile(cfg.DrainCA)
		if err != nil {
			return nil, fmt.Errorf("read --drain-ca: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--drain-ca %s holds no PEM certificate", cfg.DrainCA)
		}
		tlsConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	drains := logs.NewDrains(log, tlsConfig, cfg.DrainAllow)
	for _, u := range cfg.LogDrains {
		if err := drains.AddGlobal(u); err != nil {
			return nil, fmt.Errorf("--log-drains: %w", err)
		}
	}
	byApp, err := db.AllAppDrains(ctx)
	if err != nil {
		return nil, err
	}
	for app, urls := range byApp {
		// A drain recorded before a rule refused it, or before the operator
		// narrowed --drain-allow, stays off; the app's others run.
		valid := urls[:0:0]
		for _, u := range urls {
			if err := drains.Validate(u); err != nil {
				log.Error("an app's recorded drain is refused; skipping it", "app", app, "err", err)
				continue
			}
			valid = append(valid, u)
		}
		if err := drains.SetApp(app, valid); err != nil {
			log.Error("an app's recorded drains are invalid; skipping them", "app", app, "err", err)
		}
	}
	return drains, nil
}

func newLogger(cfg config, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", cfg.LogLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	format := cfg.LogFormat
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use json or text", format)
}
