package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/oneoffd/oneoffd/api"
	"github.com/oneoffd/oneoffd/client"
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
	LogDrains         []string
	DrainCA           string
	TLSCert           string
	TLSKey            string
	LogLevel          string
	LogFormat         string
	Version           bool
	// The listeners' bounds, against peers that would exhaust them.
	AttachMaxPending      int
	AttachMaxPendingPerIP int
	AttachKeepAlive       time.Duration
	APIMaxConns           int
	MetricsAddr           string
	MetricsPublic         bool
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
	num := func(p *int, name, env string, def int, usage string) {
		*p = def
		if v := os.Getenv(env); v != "" {
			if n, err := strconv.Atoi(v); err == nil {
				*p = n
			} else {
				fmt.Fprintf(stderr, "oneoffd: ignoring %s=%q: %v\n", env, v, err)
			}
		}
		fs.IntVar(p, name, *p, usage+" (env "+env+")")
	}
	boolean := func(p *bool, name, env string, usage string) {
		if v := os.Getenv(env); v != "" {
			if b, err := strconv.ParseBool(v); err == nil {
				*p = b
			} else {
				fmt.Fprintf(stderr, "oneoffd: ignoring %s=%q: %v\n", env, v, err)
			}
		}
		fs.BoolVar(p, name, *p, usage+" (env "+env+")")
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
	dur(&c.MaxLifetime, "max-lifetime", "ONEOFFD_MAX_LIFETIME", oneoff.DefaultMaxLifetime, "stop a one-off still running after this long: a detached one (a request may ask for less), or an attached one however busy its terminal")
	sizes := oneoff.DefaultSizes
	str(&sizes, "sizes", "ONEOFFD_SIZES", sizes, "the sizes a one-off may ask for: comma-separated NAME:MEMORY:CPUS:PIDS")
	str(&c.DefaultSize, "default-size", "ONEOFFD_DEFAULT_SIZE", oneoff.DefaultSize, "the size of a one-off that asks for none")
	str(&c.RegistryConfig, "registry-config", "ONEOFFD_REGISTRY_CONFIG", "", "a docker config.json whose \"auths\" give the credentials to pull images with")
	dur(&c.PullTimeout, "pull-timeout", "ONEOFFD_PULL_TIMEOUT", oneoff.DefaultPullTimeout, "give up pulling an image after this long")
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
	num(&c.AttachMaxPending, "attach-max-pending", "ONEOFFD_ATTACH_MAX_PENDING", api.DefaultAttachMaxPending, "attach connections that may be in their handshake at once; more are refused")
	num(&c.AttachMaxPendingPerIP, "attach-max-pending-per-ip", "ONEOFFD_ATTACH_MAX_PENDING_PER_IP", api.DefaultAttachMaxPendingPerClient, "the same, from one client address")
	dur(&c.AttachKeepAlive, "attach-keepalive", "ONEOFFD_ATTACH_KEEPALIVE", api.DefaultAttachKeepAlive, "TCP keepalive idle and interval on attach connections: a vanished peer is noticed after 4 times this (0 turns it off)")
	num(&c.APIMaxConns, "api-max-conns", "ONEOFFD_API_MAX_CONNS", api.DefaultMaxConns, "API connections open at once; at the cap the idlest keep-alive connection is closed for a new one")
	str(&c.MetricsAddr, "metrics-addr", "ONEOFFD_METRICS_ADDR", "", "serve /metrics on this address of its own, without a token, instead of on the API")
	boolean(&c.MetricsPublic, "metrics-public", "ONEOFFD_METRICS_PUBLIC", "serve the API's /metrics without the token")
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
	for name, n := range map[string]int{"attach-max-pending": c.AttachMaxPending, "attach-max-pending-per-ip": c.AttachMaxPendingPerIP, "api-max-conns": c.APIMaxConns} {
		if n <= 0 {
			return c, fmt.Errorf("--%s must be positive, got %d", name, n)
		}
	}
	if c.AttachKeepAlive < 0 {
		return c, fmt.Errorf("--attach-keepalive must be positive, or 0 for none; got %s", c.AttachKeepAlive)
	}
	for name, d := range map[string]time.Duration{"idle-timeout": c.IdleTimeout, "attach-wait-timeout": c.AttachWaitTimeout,
		"stop-grace": c.StopGrace, "max-lifetime": c.MaxLifetime, "pull-timeout": c.PullTimeout} {
		if d <= 0 {
			return c, fmt.Errorf("--%s must be positive, got %s", name, d)
		}
	}
	c.LogLevel = strings.ToLower(c.LogLevel)
	return c, nil
}
