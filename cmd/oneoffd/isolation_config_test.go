package main

import (
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/oneoffd/oneoffd/runtime/docker"
)

func TestParseConfig_isolation(t *testing.T) {
	t.Run("secure by default", func(t *testing.T) {
		c, err := parseConfig(nil, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		iso := c.Isolation
		if !slices.Equal(iso.Capabilities, docker.DefaultCapabilities) || !iso.NoNewPrivileges || !iso.AppNetworks || iso.DiskQuota != docker.DefaultDiskQuota {
			t.Errorf("isolation = %+v, want the defaults", iso)
		}
	})
	t.Run("flags", func(t *testing.T) {
		c, err := parseConfig([]string{"--capabilities", "kill,cap_chown", "--no-new-privileges=false", "--app-networks=false", "--disk-quota", "2GiB"}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		iso := c.Isolation
		if !slices.Equal(iso.Capabilities, []string{"CAP_KILL", "CAP_CHOWN"}) || iso.NoNewPrivileges || iso.AppNetworks || iso.DiskQuota != 2<<30 {
			t.Errorf("isolation = %+v", iso)
		}
	})
	t.Run("environment", func(t *testing.T) {
		t.Setenv("ONEOFFD_CAPABILITIES", "none")
		t.Setenv("ONEOFFD_NO_NEW_PRIVILEGES", "false")
		t.Setenv("ONEOFFD_APP_NETWORKS", "0")
		t.Setenv("ONEOFFD_DISK_QUOTA", "0")
		c, err := parseConfig(nil, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		iso := c.Isolation
		if len(iso.Capabilities) != 0 || iso.NoNewPrivileges || iso.AppNetworks || iso.DiskQuota != 0 {
			t.Errorf("isolation = %+v, want everything off", iso)
		}
	})
	for _, tt := range []struct{ args, want string }{
		{"--capabilities chown,fly", `--capabilities: unknown capability "fly"`},
		{"--capabilities ALL", "capability ALL is refused"},
		{"--disk-quota lots", `--disk-quota "lots": give a size`},
		{"--disk-quota 10KiB", "give at least 1MiB"},
	} {
		t.Run("refused: "+tt.args, func(t *testing.T) {
			_, err := parseConfig(strings.Fields(tt.args), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one saying %q", err, tt.want)
			}
		})
	}
}
