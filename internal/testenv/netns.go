package testenv

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test networks live in 10.231.X.0/24, one X per network; every name a
// network and its engines use starts with "ooe-X-" (namespaces, cgroups,
// /tmp/ooe-X), so that teardown finds them all by prefix, also those of a
// test binary that died before its cleanup.
const (
	netPrefix = "10.231."
	netMTU    = "1400"
)

// Network is a small network of a test's own for test engines: a hub
// namespace holding a bridge, linked to the root namespace by a veth whose
// root end has HostIP, in a /24 no other network on the machine uses. Each
// engine sits in a namespace of its own, linked to the hub: several engines
// on one Network reach each other and the root namespace, and nothing else.
type Network struct {
	// Index is X in the network's 10.231.X.0/24.
	Index int
	// HostIP is the root namespace's address on the network.
	HostIP string
	// Hub is the name of the namespace holding the bridge.
	Hub string
	// Dir is the network's directory under /tmp; its engines keep theirs in it.
	Dir string
	tb  testing.TB
}

// NewNetwork makes a network for test engines and removes it when the test
// ends. It needs root and iproute2: without them the test is skipped on a
// laptop and fails in CI.
func NewNetwork(tb testing.TB) *Network {
	tb.Helper()
	needNetns(tb)
	sweepOnce.Do(func() { sweepStale(tb) })
	start := rand.IntN(255)
	for i := 0; i < 255; i++ {
		x := (start + i) % 255
		if n, ok := claimNetwork(tb, x); ok {
			tb.Cleanup(n.teardown)
			if err := n.link(); err != nil {
				tb.Fatalf("test network %s0/24: %v", n.subnet(), err)
			}
			return n
		}
	}
	tb.Fatalf("no free subnet in %sX.0/24 for a test network", netPrefix)
	return nil
}

// NodeIP returns the address of the engine with index node.
func (n *Network) NodeIP(node int) string { return n.subnet() + strconv.Itoa(10+node) }

func (n *Network) subnet() string { return fmt.Sprintf("%s%d.", netPrefix, n.Index) }

var (
	claimMu   sync.Mutex
	sweepOnce sync.Once
)

// sweepStale tears down every network whose owner process is gone: a test
// binary killed, as by go test's -timeout, leaves its engines running.
func sweepStale(tb testing.TB) {
	owners, _ := filepath.Glob("/tmp/ooe-*/owner")
	for _, o := range owners {
		x, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(filepath.Dir(o)), "ooe-"))
		if err != nil {
			continue
		}
		unlock, ok := lockStale(x)
		if !ok {
			continue
		}
		n := &Network{Index: x, Hub: fmt.Sprintf("ooe-%d-hub", x), Dir: filepath.Dir(o), tb: tb}
		tb.Logf("removing the test network %s0/24 that a test binary which is gone left behind", n.subnet())
		n.teardown()
		unlock()
	}
}

// claimNetwork takes X for this process: creating the hub namespace is the
// claim, since a namespace's name is taken once. A network whose owner
// process is gone is torn down and taken.
func claimNetwork(tb testing.TB, x int) (*Network, bool) {
	claimMu.Lock() // one claim at a time in this process: a stale network is reclaimed once
	defer claimMu.Unlock()
	n := &Network{Index: x, Hub: fmt.Sprintf("ooe-%d-hub", x), Dir: fmt.Sprintf("/tmp/ooe-%d", x), tb: tb}
	n.HostIP = n.subnet() + "1"
	if subnetInUse(n.subnet()) && !staleNetwork(x) {
		return nil, false
	}
	if err := ipCmd("netns", "add", n.Hub); err != nil {
		unlock, ok := lockStale(x)
		if !ok {
			return nil, false
		}
		tb.Logf("removing the test network %s0/24 that a test binary which is gone left behind", n.subnet())
		n.teardown()
		unlock()
		if err := ipCmd("netns", "add", n.Hub); err != nil {
			return nil, false
		}
	}
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.Dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		tb.Fatal(err)
	}
	return n, true
}

// link makes the hub's bridge and the veth from the root namespace to it.
func (n *Network) link() error {
	host, peer := fmt.Sprintf("ooe%dh", n.Index), fmt.Sprintf("ooe%dp", n.Index)
	steps := [][]string{
		{"-n", n.Hub, "link", "set", "lo", "up"},
		{"-n", n.Hub, "link", "add", "br0", "mtu", netMTU, "type", "bridge"},
		{"-n", n.Hub, "link", "set", "br0", "up"},
		{"link", "add", host, "mtu", netMTU, "type", "veth", "peer", "name", peer, "mtu", netMTU, "netns", n.Hub},
		{"-n", n.Hub, "link", "set", peer, "master", "br0", "up"},
		{"addr", "add", n.HostIP + "/24", "dev", host},
		{"link", "set", host, "up"},
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			return err
		}
	}
	return nil
}

// addNode makes a node's namespace, linked to the hub, with the node's
// address on its eth0.
func (n *Network) addNode(ns string, node int) error {
	hubEnd := fmt.Sprintf("ooe%dn%d", n.Index, node)
	if err := ipCmd("netns", "add", ns); err != nil {
		return err
	}
	steps := [][]string{
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", n.Hub, "link", "add", hubEnd, "mtu", netMTU, "type", "veth", "peer", "name", "eth0", "mtu", netMTU, "netns", ns},
		{"-n", n.Hub, "link", "set", hubEnd, "master", "br0", "up"},
		{"-n", ns, "addr", "add", n.NodeIP(node) + "/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
	}
	for _, s := range steps {
		if err := ipCmd(s...); err != nil {
			return err
		}
	}
	return nil
}

// teardown removes the network and everything of its engines.
func (n *Network) teardown() {
	prefix := fmt.Sprintf("ooe-%d-", n.Index)
	teardown(n.tb, func(name string) bool { return strings.HasPrefix(name, prefix) }, n.Dir)
}

// teardown kills every process in the namespaces and cgroups whose names
// match, then deletes them and dir. Deleting a namespace deletes its
// interfaces, and a veth goes with either of its ends.
func teardown(tb testing.TB, match func(name string) bool, dir string) {
	var namespaces []string
	if entries, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range entries {
			if match(e.Name()) {
				namespaces = append(namespaces, e.Name())
			}
		}
	}
	cgroups := cgroupDirs(match)
	if err := killAll(namespaces, cgroups); err != nil {
		tb.Errorf("tear down the test network: %v", err)
	}
	for _, d := range cgroups {
		removeCgroup(d)
	}
	for _, ns := range namespaces {
		if err := ipCmd("netns", "del", ns); err != nil {
			tb.Errorf("tear down the test network: %v", err)
		}
	}
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			tb.Errorf("tear down the test network: %v", err)
		}
	}
}

// killAll SIGKILLs, by pid, every process in the namespaces and in the
// cgroups (and their children), until none is left.
func killAll(namespaces, cgroups []string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		pids := map[int]bool{}
		for _, ns := range namespaces {
			out, _ := exec.Command("ip", "netns", "pids", ns).Output()
			for _, f := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(f); err == nil {
					pids[pid] = true
				}
			}
		}
		for _, d := range cgroups {
			for _, pid := range cgroupProcs(d) {
				pids[pid] = true
			}
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still alive after SIGKILL", pids)
		}
		for pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cgroupDirs lists the top-level cgroups whose names match, in every
// hierarchy.
func cgroupDirs(match func(string) bool) []string {
	all, _ := filepath.Glob("/sys/fs/cgroup/*/ooe-*")
	var dirs []string
	for _, d := range all {
		if match(filepath.Base(d)) {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// cgroupProcs lists the processes of a cgroup and its children.
func cgroupProcs(dir string) []int {
	var pids []int
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(path)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// joinCgroup moves the process pid into the top-level cgroup name of the
// pids hierarchy, which counts and limits nothing here: it only lets
// teardown find the process by the name's prefix, also after the test
// binary that started it died. Without a pids hierarchy it does nothing.
func joinCgroup(name string, pid int) error {
	root := "/sys/fs/cgroup/pids"
	if _, err := os.Stat(root); err != nil {
		return nil
	}
	dir := filepath.Join(root, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
}

// removeCgroup removes an empty cgroup and its children, deepest first.
func removeCgroup(dir string) {
	var dirs []string
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, path)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = syscall.Rmdir(dirs[i])
	}
}

// staleNetwork reports whether network X was made by a process that is gone.
func staleNetwork(x int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/tmp/ooe-%d/owner", x))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return false
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// lockStale takes network X's owner file, with an exclusive lock that the
// process's death also releases, when the owner process is gone: one
// process alone then tears the network down. unlock releases it.
func lockStale(x int) (unlock func(), ok bool) {
	path := fmt.Sprintf("/tmp/ooe-%d/owner", x)
	f, err := os.Open(path)
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	// Torn down by another process, and maybe made again, since it was
	// opened: not this file's to judge any more.
	locked, err1 := f.Stat()
	now, err2 := os.Stat(path)
	if err1 != nil || err2 != nil || !os.SameFile(locked, now) || !staleNetwork(x) {
		f.Close()
		return nil, false
	}
	return func() { f.Close() }, true
}

// subnetInUse reports whether an address of the root namespace is in the
// /24 starting with prefix.
func subnetInUse(prefix string) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true
	}
	for _, a := range addrs {
		if strings.HasPrefix(a.String(), prefix) {
			return true
		}
	}
	return false
}

// needNetns checks for what network namespaces need: root and iproute2.
func needNetns(tb testing.TB) {
	tb.Helper()
	var missing string
	switch {
	case os.Geteuid() != 0:
		missing = "root, to make network namespaces"
	case lookPath("ip") != nil:
		missing = "the ip command: install Debian's iproute2 (apt-get install iproute2)"
	case lookPath("unshare") != nil:
		missing = "the unshare command: install Debian's util-linux (apt-get install util-linux)"
	case lookPath("mount") != nil:
		missing = "the mount command: install Debian's mount (apt-get install mount)"
	case lookPath("dockerd") != nil:
		missing = "dockerd: install Debian's docker.io (apt-get install docker.io)"
	default:
		return
	}
	if InCI() {
		tb.Fatalf("a test engine needs %s, and CI needs it", missing)
	}
	tb.Skipf("a test engine needs %s", missing)
}

func lookPath(name string) error {
	_, err := exec.LookPath(name)
	return err
}

// ipCmd runs ip with args, its output in the error.
func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
