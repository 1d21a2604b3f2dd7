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
	"github.com/oneoffd/oneoffd/cron"
	"github.com/oneoffd/oneoffd/logs"
	"github.com/oneoffd/oneoffd/oneoff"
	"github.com/oneoffd/oneoffd/runtime/docker"
	"github.com/oneoffd/oneoffd/store"
)

var errUsage = errors.New("usage")

// config is the daemon's configuration: flags, each with an ONEOFFD_*
// environment variable as fallback.
type config struct {
	APIAddr    string
	AttachAddr string
	AttachHost string
	DataDir    string
	DockerHost string
	// Engine is what runs the one-offs: "docker", the engine at
	// DockerHost, or "swarm", the cluster whose manager is at DockerHost.
	Engine string
	// NodeTLSDir holds ca.pem, cert.pem and key.pem: the client
	// certificate the swarm runtime reaches the manager and the nodes'
	// engines with; NodePort is the port of the nodes' engines.
	NodeTLSDir   string
	NodePort     int
	PlaceTimeout time.Duration
	// Placement are the Swarm placement constraints of every one-off,
	// such as node.role==worker.
	Placement []string
	// Warm is how many warm holders the swarm runtime keeps ready for each
	// app, image and size of attached one-offs; 0 keeps none.
	Warm              int
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
	DrainAllow        logs.DrainAllow
	TLSCert           string
	TLSKey            string
	LogLevel          string
	LogFormat         string
	Version           bool
	// How one-offs are isolated; the instance is set at start-up.
	Isolation docker.Isolation
	// MaxOneOffsPerApp and MaxOneOffs are the quotas of one-offs pending
	// or running, of one app and of all.
	MaxOneOffsPerApp int
	MaxOneOffs       int
	// RecordRetention is how long finished one-offs' records and audit
	// events are kept; ReleasesKeep how many releases each app keeps.
	RecordRetention time.Duration
	ReleasesKeep    int
	// The listeners' bounds, against peers that would exhaust them.
	AttachMaxPending      int
	AttachMaxPendingPerIP int
	AttachKeepAlive       time.Duration
	APIMaxConns           int
	MetricsAddr           string
	MetricsPublic         bool

	// ReconnectGrace is how long an attached session waits for its
	// terminal to reconnect.
	ReconnectGrace time.Duration
	// RecordSessions records attached sessions in the data dir, each
	// recording capped at RecordingMaxSize.
	RecordSessions   bool
	RecordingMaxSize int64
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
	str(&c.Engine, "engine", "ONEOFFD_ENGINE", "docker", "what runs the one-offs: docker (the engine at --docker-host) or swarm (the Swarm cluster whose manager's engine is at --docker-host)")
	str(&c.NodeTLSDir, "node-tls-dir", "ONEOFFD_NODE_TLS_DIR", "", "with --engine swarm: a directory with ca.pem, cert.pem and key.pem, the client certificate for the manager's and the nodes' engines (mutual TLS)")
	dur(&c.PlaceTimeout, "place-timeout", "ONEOFFD_PLACE_TIMEOUT", 30*time.Second, "with --engine swarm: how long a one-off may wait for a node with room for its size before it fails")
	var placement string
	str(&placement, "placement", "ONEOFFD_PLACEMENT", "", "with --engine swarm: comma-separated placement constraints for one-offs, such as node.role==worker or node.labels.oneoffs==yes")
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
	dur(&c.ReconcileInterval, "reconcile-interval", "ONEOFFD_RECONCILE_INTERVAL", oneoff.DefaultReconcileInterval, "how often the engine's containers and the records are compared, strays removed and unfollowed one-offs settled")
	dur(&c.CronMinInterval, "cron-min-interval", "ONEOFFD_CRON_MIN_INTERVAL", cron.DefaultMinInterval, "the shortest time allowed between two runs of a cron job (at least 1s; seconds need @every)")
	recordingMax := "64MiB"
	str(&recordingMax, "recording-max-size", "ONEOFFD_RECORDING_MAX_SIZE", recordingMax, "with --record-sessions: the largest a session's recording grows; past it the rest is not recorded")
	maxFile, maxRequest := "100MiB", "512MiB"
	str(&maxFile, "upload-max-file", "ONEOFFD_UPLOAD_MAX_FILE", maxFile, "the largest file a one-off may be sent")
	str(&maxRequest, "upload-max-request", "ONEOFFD_UPLOAD_MAX_REQUEST", maxRequest, "the most bytes of files one request may send")
	retention := "64MiB"
	str(&retention, "log-retention", "ONEOFFD_LOG_RETENTION", retention, "disk kept for each app's log; older lines go first")
	var drains string
	str(&drains, "log-drains", "ONEOFFD_LOG_DRAINS", "", "comma-separated syslog drains for every app's log: syslog+tls://HOST:PORT, or syslog+tcp://HOST:PORT (also syslog://HOST:PORT)")
	var drainAllow string
	str(&drainAllow, "drain-allow", "ONEOFFD_DRAIN_ALLOW", "", "comma-separated CIDR prefixes of internal networks (loopback, private, link-local...) that log drains may reach nonetheless, such as 10.1.2.0/24")
	str(&c.DrainCA, "drain-ca", "ONEOFFD_DRAIN_CA", "", "CA certificate (PEM) trusted for syslog+tls drains, besides the system's")
	str(&c.TLSCert, "tls-cert", "ONEOFFD_TLS_CERT", "", "TLS certificate file for the API and attach endpoint")
	str(&c.TLSKey, "tls-key", "ONEOFFD_TLS_KEY", "", "TLS key file")
	str(&c.LogLevel, "log-level", "ONEOFFD_LOG_LEVEL", "info", "debug, info, warn or error")
	str(&c.LogFormat, "log-format", "ONEOFFD_LOG_FORMAT", "", "json or text (default: text on a terminal, json otherwise)")
	boolean := func(p *bool, name, env string, def bool, usage string) {
		*p = def
		if v := os.Getenv(env); v != "" {
			if b, err := strconv.ParseBool(v); err == nil {
				*p = b
			} else {
				fmt.Fprintf(stderr, "oneoffd: ignoring %s=%q: use true or false\n", env, v)
			}
		}
		fs.BoolVar(p, name, *p, usage+" (env "+env+")")
	}
	caps := strings.Join(shortCapabilities(docker.DefaultCapabilities), ",")
	str(&caps, "capabilities", "ONEOFFD_CAPABILITIES", caps, "the only capabilities one-offs keep, comma-separated (none for none); all others are dropped")
	boolean(&c.Isolation.NoNewPrivileges, "no-new-privileges", "ONEOFFD_NO_NEW_PRIVILEGES", true, "keep setuid binaries and file capabilities from granting one-offs' processes more")
	boolean(&c.Isolation.AppNetworks, "app-networks", "ONEOFFD_APP_NETWORKS", true, "put each app's one-offs on a network of their own (false: the engine's default bridge)")
	diskQuota := "10GiB"
	str(&diskQuota, "disk-quota", "ONEOFFD_DISK_QUOTA", diskQuota, "bound each one-off's writable layer where the storage driver can (0 for no bound)")
	integer := func(p *int, name, env string, def int, usage string) {
		*p = def
		if v := os.Getenv(env); v != "" {
			if n, err := strconv.Atoi(v); err == nil {
				*p = n
			} else {
				fmt.Fprintf(stderr, "oneoffd: ignoring %s=%q: not a whole number\n", env, v)
			}
		}
		fs.IntVar(p, name, *p, usage+" (env "+env+")")
	}
	integer(&c.MaxOneOffsPerApp, "max-oneoffs-per-app", "ONEOFFD_MAX_ONEOFFS_PER_APP", oneoff.DefaultMaxPerApp, "the most one-offs, pending or running, one app may have at once (429 beyond)")
	integer(&c.MaxOneOffs, "max-oneoffs", "ONEOFFD_MAX_ONEOFFS", oneoff.DefaultMaxTotal, "the most one-offs, pending or running, of all apps at once (429 beyond)")
	integer(&c.NodePort, "node-port", "ONEOFFD_NODE_PORT", 2376, "with --engine swarm: the TCP port of the nodes' engines, which speak mutual TLS")
	integer(&c.Warm, "warm", "ONEOFFD_WARM", 0, "with --engine swarm: how many containers to keep started ahead for each app, image and size of attached one-offs, which then start at once; each reserves its size on a node (0: none)")
	integer(&c.ReleasesKeep, "releases-keep", "ONEOFFD_RELEASES_KEEP", store.DefaultReleasesKept, "how many releases of each app are kept, the current one among them")
	recordRetention := "90d"
	str(&recordRetention, "record-retention", "ONEOFFD_RECORD_RETENTION", recordRetention, "how long finished one-offs' records and audit events are kept: a duration such as 720h, or days such as 90d")
	integer(&c.AttachMaxPending, "attach-max-pending", "ONEOFFD_ATTACH_MAX_PENDING", api.DefaultAttachMaxPending, "attach connections that may be in their handshake at once; more are refused")
	integer(&c.AttachMaxPendingPerIP, "attach-max-pending-per-ip", "ONEOFFD_ATTACH_MAX_PENDING_PER_IP", api.DefaultAttachMaxPendingPerClient, "the same, from one client address")
	dur(&c.AttachKeepAlive, "attach-keepalive", "ONEOFFD_ATTACH_KEEPALIVE", api.DefaultAttachKeepAlive, "TCP keepalive idle and interval on attach connections: a vanished peer is noticed after 4 times this (0 turns it off)")
	dur(&c.ReconnectGrace, "reconnect-grace", "ONEOFFD_RECONNECT_GRACE", 2*time.Minute, "how long an attached one-off whose terminal dropped goes on, its output kept, waiting for the CLI to reconnect (0: stop it at once)")
	integer(&c.APIMaxConns, "api-max-conns", "ONEOFFD_API_MAX_CONNS", api.DefaultMaxConns, "API connections open at once; at the cap the idlest keep-alive connection is closed for a new one")
	str(&c.MetricsAddr, "metrics-addr", "ONEOFFD_METRICS_ADDR", "", "serve /metrics on this address of its own, without a token, instead of on the API")
	boolean(&c.RecordSessions, "record-sessions", "ONEOFFD_RECORD_SESSIONS", false, "record each attached session's output and input (asciicast v2) in the data dir, kept as long as the one-off's record; off for the users' privacy")
	boolean(&c.MetricsPublic, "metrics-public", "ONEOFFD_METRICS_PUBLIC", false, "serve the API's /metrics without the token")
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
	}{{"upload-max-file", maxFile, &c.MaxUploadFile}, {"upload-max-request", maxRequest, &c.MaxUploadRequest},
		{"recording-max-size", recordingMax, &c.RecordingMaxSize}} {
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
	if c.Isolation.Capabilities, err = docker.ParseCapabilities(caps); err != nil {
		return c, fmt.Errorf("--capabilities: %w", err)
	}
	if q, err := humanize.ParseBytes(diskQuota); err != nil {
		return c, fmt.Errorf("--disk-quota %q: give a size, such as 10GiB, or 0 for no bound", diskQuota)
	} else if q > 0 && q < 1<<20 {
		return c, fmt.Errorf("--disk-quota %q: give at least 1MiB, or 0 for no bound", diskQuota)
	} else {
		c.Isolation.DiskQuota = int64(q)
	}
	for _, d := range strings.Split(drains, ",") {
		if d = strings.TrimSpace(d); d != "" {
			c.LogDrains = append(c.LogDrains, d)
		}
	}
	if c.DrainAllow, err = logs.ParseDrainAllow(drainAllow); err != nil {
		return c, fmt.Errorf("--drain-allow: %w", err)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return c, fmt.Errorf("--tls-cert and --tls-key go together: give both or neither")
	}
	for name, n := range map[string]int{"attach-max-pending": c.AttachMaxPending, "attach-max-pending-per-ip": c.AttachMaxPendingPerIP, "api-max-conns": c.APIMaxConns} {
		if n <= 0 {
			return c, fmt.Errorf("--%s must be positive, got %d", name, n)
		}
	}
	if c.ReconnectGrace < 0 {
		return c, fmt.Errorf("--reconnect-grace must be positive, or 0 to stop at once; got %s", c.ReconnectGrace)
	}
	if c.AttachKeepAlive < 0 {
		return c, fmt.Errorf("--attach-keepalive must be positive, or 0 for none; got %s", c.AttachKeepAlive)
	}
	for name, d := range map[string]time.Duration{"idle-timeout": c.IdleTimeout, "attach-wait-timeout": c.AttachWaitTimeout,
		"stop-grace": c.StopGrace, "max-lifetime": c.MaxLifetime, "pull-timeout": c.PullTimeout,
		"reconcile-interval": c.ReconcileInterval, "cron-min-interval": c.CronMinInterval} {
		if d <= 0 {
			return c, fmt.Errorf("--%s must be positive, got %s", name, d)
		}
	}
	for name, n := range map[string]int{"max-oneoffs-per-app": c.MaxOneOffsPerApp, "max-oneoffs": c.MaxOneOffs, "releases-keep": c.ReleasesKeep} {
		if n < 1 {
			return c, fmt.Errorf("--%s must be at least 1, got %d", name, n)
		}
	}
	if c.RecordRetention, err = parseRetention(recordRetention); err != nil {
		return c, fmt.Errorf("--record-retention %q: %w", recordRetention, err)
	}
	if c.CronMinInterval < time.Second {
		return c, fmt.Errorf("--cron-min-interval must be at least 1s, got %s", c.CronMinInterval)
	}
	switch c.Engine {
	case "docker":
	case "swarm":
		if c.NodeTLSDir == "" {
			return c, errors.New("--engine swarm needs --node-tls-dir: the client certificate (ca.pem, cert.pem, key.pem) that reaches the nodes' engines")
		}
		if c.NodePort < 1 || c.NodePort > 65535 {
			return c, fmt.Errorf("--node-port %d is not a TCP port", c.NodePort)
		}
		if c.Warm < 0 {
			return c, fmt.Errorf("--warm %d: give how many containers to keep warm, 0 for none", c.Warm)
		}
		for _, p := range strings.Split(placement, ",") {
			if p = strings.TrimSpace(p); p != "" {
				if !strings.Contains(p, "==") && !strings.Contains(p, "!=") {
					return c, fmt.Errorf("--placement %q: a constraint compares with == or !=, such as node.role==worker", p)
				}
				c.Placement = append(c.Placement, p)
			}
		}
		if c.PlaceTimeout <= 0 {
			return c, fmt.Errorf("--place-timeout must be positive, got %s", c.PlaceTimeout)
		}
	default:
		return c, fmt.Errorf("--engine %q: use docker (one engine) or swarm (a Swarm cluster)", c.Engine)
	}
	c.LogLevel = strings.ToLower(c.LogLevel)
	return c, nil
}

// shortCapabilities returns capability names without their CAP_ prefix, as
// the flag shows them.
func shortCapabilities(caps []string) []string {
	out := make([]string, len(caps))
	for i, c := range caps {
		out[i] = strings.TrimPrefix(c, "CAP_")
	}
	return out
}

// parseRetention reads a retention: days such as "90d", or a Go duration
// such as "720h"; at least an hour.
func parseRetention(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil {
			return 0, errors.New("give days, such as 90d, or a duration, such as 720h")
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, errors.New("give days, such as 90d, or a duration, such as 720h")
		}
	}
	if d < time.Hour {
		return 0, errors.New("keep records for an hour at least")
	}
	return d, nil
}
