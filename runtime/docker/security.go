package docker

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/moby/sys/capability"
)

// Isolation says how one-off containers are kept from the host and from
// each other. The zero value isolates nothing; DefaultIsolation is the
// daemon's default.
type Isolation struct {
	// Instance tells this daemon's networks from other daemons' on a
	// shared engine; it must survive restarts.
	Instance string
	// Capabilities are the only ones a container's processes may hold,
	// as CAP_ names: every other is dropped.
	Capabilities []string
	// NoNewPrivileges keeps setuid binaries and file capabilities from
	// granting a process more than it had.
	NoNewPrivileges bool
	// AppNetworks puts each app's containers on a bridge network of their
	// own; without it they share the engine's default bridge.
	AppNetworks bool
	// DiskQuota bounds each container's writable layer, in bytes, where
	// the storage driver can; 0 sets no bound.
	DiskQuota int64
}

// DefaultCapabilities are what a shell, a package manager (apt, apk: they
// change owners and modes, and drop to an unprivileged user to download)
// and common tools need, and nothing that reaches beyond the container:
// no NET_RAW (forged packets), NET_ADMIN or SYS_ADMIN.
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETGID", "CAP_SETUID",
}

// DefaultDiskQuota bounds a container's writable layer by default.
const DefaultDiskQuota = 10 << 30

// DefaultIsolation is the daemon's default: the default capabilities,
// no-new-privileges, a network per app and the default disk quota.
func DefaultIsolation(instance string) Isolation {
	return Isolation{
		Instance: instance, Capabilities: slices.Clone(DefaultCapabilities),
		NoNewPrivileges: true, AppNetworks: true, DiskQuota: DefaultDiskQuota,
	}
}

// riskyCapabilities let a process reach beyond its container: the host's
// kernel, devices or network, or other processes' memory.
var riskyCapabilities = []string{
	"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_PTRACE", "CAP_SYS_MODULE",
	"CAP_SYS_RAWIO", "CAP_DAC_READ_SEARCH", "CAP_SYS_BOOT", "CAP_SYS_TIME", "CAP_MAC_ADMIN",
	"CAP_MAC_OVERRIDE", "CAP_BPF", "CAP_PERFMON", "CAP_SYSLOG", "CAP_MKNOD", "CAP_LINUX_IMMUTABLE",
}

// ParseCapabilities reads a comma-separated list of capability names, with
// or without the CAP_ prefix, in any case, into CAP_ names; "none" is the
// empty list. Names the kernel's headers do not know are refused.
func ParseCapabilities(s string) ([]string, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "none") {
		return []string{}, nil
	}
	known := map[string]bool{}
	for _, c := range capability.ListKnown() {
		known["CAP_"+strings.ToUpper(c.String())] = true
	}
	out := []string{}
	for _, f := range strings.Split(s, ",") {
		name := strings.ToUpper(strings.TrimSpace(f))
		if name == "" {
			continue
		}
		if name == "ALL" {
			return nil, fmt.Errorf("capability ALL is refused: name each capability the one-offs need")
		}
		if !strings.HasPrefix(name, "CAP_") {
			name = "CAP_" + name
		}
		if !known[name] {
			return nil, fmt.Errorf("unknown capability %q: use names from capabilities(7), such as CHOWN or NET_BIND_SERVICE", f)
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out, nil
}

// RiskyCapabilities returns those of caps that let a process reach beyond
// its container, for the operator to be warned of.
func RiskyCapabilities(caps []string) []string {
	var out []string
	for _, c := range caps {
		if slices.Contains(riskyCapabilities, c) {
			out = append(out, c)
		}
	}
	return out
}

// apply sets the isolation on a container's host config; quota says the
// storage driver can bound the writable layer.
func (iso Isolation) apply(host *container.HostConfig, quota bool) {
	host.CapDrop = []string{"ALL"}
	host.CapAdd = slices.Clone(iso.Capabilities)
	if iso.NoNewPrivileges {
		host.SecurityOpt = append(host.SecurityOpt, "no-new-privileges:true")
	}
	if quota && iso.DiskQuota > 0 {
		host.StorageOpt = map[string]string{"size": strconv.FormatInt(iso.DiskQuota, 10)}
	}
}

// IsolationReport is the isolation in force: what was configured and what
// the engine turned out to support.
type IsolationReport struct {
	Isolation
	// StorageDriver is the engine's, once probed.
	StorageDriver string
	// DiskQuotaProbed says whether the engine was asked if its storage
	// driver bounds a writable layer; DiskQuotaSupported is its answer.
	DiskQuotaProbed    bool
	DiskQuotaSupported bool
}

// Details are short notes on isolation weaker than configured or than the
// defaults, for /readyz; none when all is as it should be. They name no
// path or address.
func (r IsolationReport) Details() []string {
	var out []string
	switch {
	case r.DiskQuota <= 0:
		out = append(out, "disk quota: off")
	case !r.DiskQuotaProbed:
		out = append(out, "disk quota: not probed yet (the engine has not answered)")
	case !r.DiskQuotaSupported:
		out = append(out, "disk quota: unsupported by storage driver "+r.StorageDriver)
	}
	if !r.AppNetworks {
		out = append(out, "app networks: off (one-offs of all apps share the default bridge)")
	}
	if !r.NoNewPrivileges {
		out = append(out, "no-new-privileges: off")
	}
	if risky := RiskyCapabilities(r.Capabilities); len(risky) > 0 {
		out = append(out, "capabilities: "+strings.Join(risky, ", ")+" granted")
	}
	return out
}
