package docker

import (
	"slices"
	"strings"
	"testing"

	"github.com/oneoffd/oneoffd/oneoff"
)

func TestDocker_containerConfig(t *testing.T) {
	spec := oneoff.Spec{Image: "img", Cmd: []string{"true"}, App: "shop"}
	for _, tt := range []struct {
		name        string
		iso         Isolation
		quota       bool
		wantStorage map[string]string
		wantSecOpt  []string
	}{
		{"the defaults, quota supported", DefaultIsolation("i"), true, map[string]string{"size": "10737418240"}, []string{"no-new-privileges:true"}},
		{"the defaults, quota unsupported", DefaultIsolation("i"), false, nil, []string{"no-new-privileges:true"}},
		{"no quota configured", Isolation{Capabilities: []string{"CAP_KILL"}, NoNewPrivileges: true}, true, nil, []string{"no-new-privileges:true"}},
		{"a quota of 1 GiB", Isolation{DiskQuota: 1 << 30}, true, map[string]string{"size": "1073741824"}, nil},
		{"no-new-privileges off", Isolation{Capabilities: []string{"CAP_KILL"}}, false, nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d := &Runtime{iso: tt.iso}
			_, host := d.containerConfig(spec, tt.quota)
			if got, want := host.CapDrop, []string{"ALL"}; !slices.Equal(got, want) {
				t.Errorf("CapDrop = %v, want %v", got, want)
			}
			if got, want := []string(host.CapAdd), tt.iso.Capabilities; !slices.Equal(got, want) {
				t.Errorf("CapAdd = %v, want %v", got, want)
			}
			if got := host.SecurityOpt; !slices.Equal(got, tt.wantSecOpt) {
				t.Errorf("SecurityOpt = %v, want %v", got, tt.wantSecOpt)
			}
			if got := host.StorageOpt; len(got) != len(tt.wantStorage) || got["size"] != tt.wantStorage["size"] {
				t.Errorf("StorageOpt = %v, want %v", got, tt.wantStorage)
			}
			if host.Init == nil || !*host.Init {
				t.Error("Init is not set: signals and zombies need the engine's init")
			}
		})
	}
}

func TestParseCapabilities(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"CHOWN,SETUID", []string{"CAP_CHOWN", "CAP_SETUID"}, ""},
		{" cap_kill , net_bind_service,KILL", []string{"CAP_KILL", "CAP_NET_BIND_SERVICE"}, ""},
		{"none", []string{}, ""},
		{"", []string{}, ""},
		{"CHOWN,FLY", nil, `unknown capability "FLY"`},
		{"all", nil, "capability ALL is refused"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseCapabilities(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	t.Run("the default set parses, and is not risky", func(t *testing.T) {
		got, err := ParseCapabilities(strings.Join(DefaultCapabilities, ","))
		if err != nil || !slices.Equal(got, DefaultCapabilities) {
			t.Errorf("got %v, %v; want %v", got, err, DefaultCapabilities)
		}
		for _, c := range []string{"CAP_NET_RAW", "CAP_SYS_ADMIN", "CAP_NET_ADMIN"} {
			if slices.Contains(DefaultCapabilities, c) {
				t.Errorf("the default set holds %s", c)
			}
		}
		if risky := RiskyCapabilities(DefaultCapabilities); len(risky) > 0 {
			t.Errorf("risky capabilities in the default set: %v", risky)
		}
	})
}

func TestIsolationReport_Details(t *testing.T) {
	def := DefaultIsolation("i")
	for _, tt := range []struct {
		name string
		r    IsolationReport
		want []string
	}{
		{"all as configured", IsolationReport{Isolation: def, StorageDriver: "overlay2", DiskQuotaProbed: true, DiskQuotaSupported: true}, nil},
		{"quota unsupported", IsolationReport{Isolation: def, StorageDriver: "fuse-overlayfs", DiskQuotaProbed: true},
			[]string{"disk quota: unsupported by storage driver fuse-overlayfs"}},
		{"not probed", IsolationReport{Isolation: def}, []string{"disk quota: not probed yet (the engine has not answered)"}},
		{"everything off", IsolationReport{Isolation: Isolation{Capabilities: []string{"CAP_NET_RAW", "CAP_KILL"}}},
			[]string{"disk quota: off", "app networks: off (one-offs of all apps share the default bridge)", "no-new-privileges: off", "capabilities: CAP_NET_RAW granted"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.Details(); !slices.Equal(got, tt.want) {
				t.Errorf("details = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNetworkNames(t *testing.T) {
	name, bridge := NetworkNames("0123456789abcdef", "a-rather-long-app-name-of-sixty-three-characters-in-all-xxxxxxxx")
	if len(bridge) > 15 || !strings.HasPrefix(bridge, BridgePrefix) {
		t.Errorf("bridge %q: want at most 15 characters, beginning with %s", bridge, BridgePrefix)
	}
	if !strings.HasPrefix(name, "oneoffd-a-rather-long-app-name") || !strings.HasSuffix(name, strings.TrimPrefix(bridge, BridgePrefix)) {
		t.Errorf("name %q: want the app's name and the bridge's hash", name)
	}
	if n2, b2 := NetworkNames("0123456789abcdef", "a-rather-long-app-name-of-sixty-three-characters-in-all-xxxxxxxx"); n2 != name || b2 != bridge {
		t.Errorf("names differ from one call to the next: %s %s, then %s %s", name, bridge, n2, b2)
	}
	for _, other := range [][2]string{{"other-instance", "shop"}, {"0123456789abcdef", "shop"}} {
		if _, b := NetworkNames(other[0], other[1]); b == bridge {
			t.Errorf("%v gets the same bridge %s", other, b)
		}
	}
}
