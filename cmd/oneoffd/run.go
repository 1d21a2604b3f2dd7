package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/term"

	"github.com/oneoffd/oneoffd/api"
	"github.com/oneoffd/oneoffd/client"
	"github.com/oneoffd/oneoffd/cron"
	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/internal/version"
	"github.com/oneoffd/oneoffd/logs"
	"github.com/oneoffd/oneoffd/oneoff"
	"github.com/oneoffd/oneoffd/runtime"
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
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	token, tokenFile, err := loadToken(cfg)
	if err != nil {
		return err
	}
	instance, err := readOrCreate(filepath.Join(cfg.DataDir, "instance-id"), 8)
	if err != nil {
		return err
	}
	db, err := store.Open(filepath.Join(cfg.DataDir, "oneoffd.db"))
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
	docker, err := runtime.NewDocker(cfg.DockerHost)
	if err != nil {
		return err
	}
	defer docker.Close()
	if cfg.RegistryConfig != "" {
		auths, err := runtime.LoadDockerConfig(cfg.RegistryConfig)
		if err != nil {
			return fmt.Errorf("--registry-config: %w", err)
		}
		docker.SetRegistryAuth(auths)
	}
	var tlsConfig *tls.Config
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("load TLS certificate: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}

	apiLn, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("listen for the API on %s: %w", cfg.APIAddr, err)
	}
	attachLn, err := net.Listen("tcp", cfg.AttachAddr)
	if err != nil {
		apiLn.Close()
		return fmt.Errorf("listen for attach on %s: %w", cfg.AttachAddr, err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), drains,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "oneoffd_build_info",
			Help:        "The running build: always 1, with its version and commit as labels.",
			ConstLabels: prometheus.Labels{"version": version.Version(), "commit": version.Commit()},
		}, func() float64 { return 1 }))
	docker.Instrument(reg)
	sizeNames := make([]string, len(cfg.Sizes))
	for i, sz := range cfg.Sizes {
		sizeNames[i] = sz.Name
	}
	cronRules := cron.Rules{MinInterval: cfg.CronMinInterval, Sizes: sizeNames, MaxTTL: cfg.MaxLifetime}
	deploys := deploy.NewService(db, deploy.WithCron(cronRules))
	mgr := oneoff.NewManager(oneoff.Config{
		Instance: instance, IdleTimeout: cfg.IdleTimeout, AttachWait: cfg.AttachWaitTimeout, StopGrace: cfg.StopGrace,
		MaxLifetime: cfg.MaxLifetime, Sizes: cfg.Sizes, DefaultSize: cfg.DefaultSize,
		MaxUploadFile: cfg.MaxUploadFile, MaxUploadTotal: cfg.MaxUploadRequest, PullTimeout: cfg.PullTimeout,
		ReconcileInterval: cfg.ReconcileInterval,
		Metrics:           reg,
	}, docker, db, deploys, logStore, log)
	if err := mgr.Start(ctx); err != nil {
		return err
	}
	sched := cron.New(cron.Config{Rules: cronRules, Metrics: reg}, mgr, deploys, db, log)
	if err := sched.Start(ctx); err != nil {
		return err
	}
	defer deploys.Subscribe(func(deploy.Release) { sched.Wake() })()
	srv := api.NewServer(api.Config{
		Token: token, AttachAddr: attachLn.Addr().String(), AttachHost: cfg.AttachHost, AttachTLS: tlsConfig != nil,
		Version: version.Version(), Commit: version.Commit(),
	}, api.Deps{
		OneOffs: mgr, Deploys: deploys, Logs: logStore, Drains: drains, DrainStore: db, Log: log, Metrics: reg,
		Ready: map[string]api.Checker{"engine": docker.Ping, "database": db.Ping}, Cron: sched,
	})
	httpSrv := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsConfig}
	httpSrv.RegisterOnShutdown(srv.CloseStreams)
	attachSrv := api.NewAttachServer(mgr, log, tlsConfig)

	errc := make(chan error, 2)
	go func() {
		var err error
		if tlsConfig != nil {
			err = httpSrv.ServeTLS(apiLn, "", "")
		} else {
			err = httpSrv.Serve(apiLn)
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
	attrs := []any{"version", version.Version(), "commit", version.Commit(), "api_addr", apiLn.Addr().String(), "attach_addr", attachLn.Addr().String(),
		"data_dir", cfg.DataDir, "docker_host", docker.Client().DaemonHost()}
	if tokenFile != "" {
		attrs = append(attrs, "token_file", tokenFile)
	}
	log.Info("oneoffd ready", attrs...)
	if err := docker.Ping(ctx); err != nil {
		log.Warn("the Docker engine does not answer yet; one-offs will fail until it does", "err", err)
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
	if err := mgr.Close(shutdown); err != nil {
		log.Warn("manager shutdown", "err", err)
	}
	log.Info("oneoffd stopped")
	return runErr
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
	drains := logs.NewDrains(log, tlsConfig)
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
		if err := drains.SetApp(app, urls); err != nil {
			log.Error("an app's recorded drain is invalid; skipping it", "app", app, "err", err)
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

// loadToken returns the configured token, or the one generated into the
// data dir on first start, with that file's path.
func loadToken(cfg config) (token, file string, err error) {
	if cfg.Token != "" {
		return cfg.Token, "", nil
	}
	file = filepath.Join(cfg.DataDir, client.TokenFileName)
	token, err = readOrCreate(file, 32)
	return token, file, err
}

// readOrCreate returns the content of file, first writing n random bytes,
// hex-encoded, into it if it does not exist.
func readOrCreate(file string, n int) (string, error) {
	b, err := os.ReadFile(file)
	if err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", file, err)
	}
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	s := hex.EncodeToString(buf)
	if err := os.WriteFile(file, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", file, err)
	}
	return s, nil
}
