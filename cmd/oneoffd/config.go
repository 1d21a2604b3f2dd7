package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/oneoffd/oneoffd/client"
	"github.com/oneoffd/oneoffd/cron"
	"github.com/oneoffd/oneoffd/oneoff"
)

var errUsage = errors.New("usage")

// config is the daemon's configuration: flags, each with an ONEOFFD_*
// environment variable as fallback.
type config struct {
	APIAddr           string
	AttachAddr        string
	AttachHost        string
	DataDir           string
	DockerHost        string
	Token             string
	IdleTimeout       time.Duration
	AttachWaitTimeout time.Duration
	StopGrace         time.Duration
	ShutdownTimeout   time.Duration
	MaxLifetime       time.Duration
	LogRetention      int64
	Sizes             []oneoff.Size
	DefaultSize       string
	MaxUploadFile     int64
	MaxUploadRequest  int64
	RegistryConfig    string
	PullTimeout       time.Duration
	ReconcileInterval time.Duration
	CronMinInterval   time.Duration
	LogDrains         []string
	DrainCA           string
	TLSCert           string
	TLSKey            string
	LogLevel          string
	LogFormat         string
	Version           bool
}

func parseConfig(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("oneoffd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	str := func(p *string, name, env, def, usage string) {
		if v := os.Getenv(env); v != "" {
			def = v
		}
		fs.StringVar(p, name, def, usage+" (env "+env+")")
	}
	dur := func(p *time.Duration, name, env string, def time.Duration, usage string) {
		*p = def
		if v := os.Getenv(env); v != "" {
			if d, err := time.ParseDuration(v); err == nil {
				*p = d
			} else {
				fmt.Fprintf(stderr, "oneoffd: ignoring %s=%q: %v\n", env, v, err)
			}
		}
		fs.DurationVar(p, name, *p, usage+" (env "+env+")")
	}
	str(&c.APIAddr, "api-addr", "ONEOFFD_API_ADDR", "127.0.0.1:8080", "HTTP API address")
	str(&c.AttachAddr, "attach-addr", "ONEOFFD_ATTACH_ADDR", ":5000", "attach endpoint address")
	str(&c.AttachHost, "attach-host", "ONEOFFD_ATTACH_HOST", "", "host[:port] clients dial to attach (default: the host the API was reached at)")
	str(&c.DataDir, "data-dir", "ONEOFFD_DATA_DIR", client.DefaultDataDir(), "directory for the database and the generated API token")
	str(&c.DockerHost, "docker-host", "DOCKER_HOST", "", "Docker engine address (default: the local engine)")
	str(&c.Token, "token", "ONEOFFD_TOKEN", "", "API bearer token (default: generated into the data dir)")
	dur(&c.IdleTimeout, "idle-timeout", "ONEOFFD_IDLE_TIMEOUT", oneoff.DefaultIdleTimeout, "close an attached session after this long without input or output")
	dur(&c.AttachWaitTimeout, "attach-wait-timeout", "ONEOFFD_ATTACH_WAIT_TIMEOUT", oneoff.DefaultAttachWait, "discard an attached one-off nobody attached to after this long")
	dur(&c.StopGrace, "stop-grace", "ONEOFFD_STOP_GRACE", oneoff.DefaultStopGrace, "time between SIGTERM and SIGKILL when stopping a one-off")
	dur(&c.ShutdownTimeout, "shutdown-timeout", "ONEOFFD_SHUTDOWN_TIMEOUT", 30*time.Second, "on SIGTERM, how long attached sessions may go on before they are stopped")
	dur(&c.MaxLifetime, "max-lifetime", "ONEOFFD_MAX_LIFETIME", oneoff.DefaultMaxLifetime, "stop a detached one-off still running after this long (a request may ask for less)")
	sizes := oneoff.DefaultSizes
	str(&sizes, "sizes", "ONEOFFD_SIZES", sizes, "the sizes a one-off may ask for: comma-separated NAME:MEMORY:CPUS:PIDS")
	str(&c.DefaultSize, "default-size", "ONEOFFD_DEFAULT_SIZE", oneoff.DefaultSize, "the size of a one-off that asks for none")
	str(&c.RegistryConfig, "registry-config", "ONEOFFD_REGISTRY_CONFIG", "", "a docker config.json whose \"auths\" give the credentials to pull images with")
	dur(&c.PullTimeout, "pull-timeout", "ONEOFFD_PULL_TIMEOUT", oneoff.DefaultPullTimeout, "give up pulling an image after this long")
	dur(&c.ReconcileInterval, "reconcile-interval", "ONEOFFD_RECONCILE_INTERVAL", oneoff.DefaultReconcileInterval, "how often the engine's containers and the records are compared, strays removed and unfollowed one-offs settled")
	dur(&c.CronMinInterval, "cron-min-interval", "ONEOFFD_CRON_MIN_INTERVAL", cron.DefaultMinInterval, "the shortest time allowed between two runs of a cron job (at least 1s; seconds need @every)")
	maxFile, maxRequest := "100MiB", "512MiB"
	str(&maxFile, "upload-max-file", "ONEOFFD_UPLOAD_MAX_FILE", maxFile, "the largest file a one-off may be sent")
	str(&maxRequest, "upload-max-request", "ONEOFFD_UPLOAD_MAX_REQUEST", maxRequest, "the most bytes of files one request may send")
	retention := "64MiB"
	str(&retention, "log-retention", "ONEOFFD_LOG_RETENTION", retention, "disk kept for each app's log; older lines go first")
	var drains string
	str(&drains, "log-drains", "ONEOFFD_LOG_DRAINS", "", "comma-separated syslog drains for every app's log: syslog+tls://HOST:PORT, or syslog+tcp://HOST:PORT (also syslog://HOST:PORT)")
	str(&c.DrainCA, "drain-ca", "ONEOFFD_DRAIN_CA", "", "CA certificate (PEM) trusted for syslog+tls drains, besides the system's")
	str(&c.TLSCert, "tls-cert", "ONEOFFD_TLS_CERT", "", "TLS certificate file for the API and attach endpoint")
	str(&c.TLSKey, "tls-key", "ONEOFFD_TLS_KEY", "", "TLS key file")
	str(&c.LogLevel, "log-level", "ONEOFFD_LOG_LEVEL", "info", "debug, info, warn or error")
	str(&c.LogFormat, "log-format", "ONEOFFD_LOG_FORMAT", "", "json or text (default: text on a terminal, json otherwise)")
	fs.BoolVar(&c.Version, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, errUsage
		}
		return c, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "oneoffd: unexpected argument %q; see oneoffd -h\n", fs.Arg(0))
		return c, errUsage
	}
	var err error
	if c.Sizes, err = oneoff.ParseSizes(sizes); err != nil {
		return c, fmt.Errorf("--sizes: %w", err)
	}
	if !slices.ContainsFunc(c.Sizes, func(s oneoff.Size) bool { return s.Name == c.DefaultSize }) {
		return c, fmt.Errorf("--default-size %q is not in --sizes %q", c.DefaultSize, sizes)
	}
	for _, b := range []struct {
		flag, value string
		to          *int64
	}{{"upload-max-file", maxFile, &c.MaxUploadFile}, {"upload-max-request", maxRequest, &c.MaxUploadRequest}} {
		n, err := humanize.ParseBytes(b.value)
		if err != nil || n == 0 {
			return c, fmt.Errorf("--%s %q: give a size, such as 100MiB", b.flag, b.value)
		}
		*b.to = int64(n)
	}
	n, err := humanize.ParseBytes(retention)
	if err != nil || n < 1<<20 {
		return c, fmt.Errorf("--log-retention %q: give a size of at least 1MiB, such as 64MiB or 1GB", retention)
	}
	c.LogRetention = int64(n)
	for _, d := range strings.Split(drains, ",") {
		if d = strings.TrimSpace(d); d != "" {
			c.LogDrains = append(c.LogDrains, d)
		}
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return c, fmt.Errorf("--tls-cert and --tls-key go together: give both or neither")
	}
	for name, d := range map[string]time.Duration{"idle-timeout": c.IdleTimeout, "attach-wait-timeout": c.AttachWaitTimeout,
		"stop-grace": c.StopGrace, "max-lifetime": c.MaxLifetime, "pull-timeout": c.PullTimeout,
		"reconcile-interval": c.ReconcileInterval, "cron-min-interval": c.CronMinInterval} {
		if d <= 0 {
			return c, fmt.Errorf("--%s must be positive, got %s", name, d)
		}
	}
	if c.CronMinInterval < time.Second {
		return c, fmt.Errorf("--cron-min-interval must be at least 1s, got %s", c.CronMinInterval)
	}
	c.LogLevel = strings.ToLower(c.LogLevel)
	return c, nil
}
