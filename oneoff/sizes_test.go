package oneoff_test

import (
	"context"
	"strings"
	"testing"

	"github.com/oneoffd/oneoffd/errdefs"
	"github.com/oneoffd/oneoffd/oneoff"
)

func TestParseSizes(t *testing.T) {
	t.Run("the default table", func(t *testing.T) {
		sizes, err := oneoff.ParseSizes(oneoff.DefaultSizes)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range sizes {
			got = append(got, s.String())
		}
		if want := oneoff.DefaultSizes; strings.Join(got, ",") != want {
			t.Errorf("round trip = %s, want %s", strings.Join(got, ","), want)
		}
	})
	t.Run("values", func(t *testing.T) {
		sizes, err := oneoff.ParseSizes(" tiny:16MiB:0.25:64 , big:2GB:2:4096")
		if err != nil {
			t.Fatal(err)
		}
		want := []oneoff.Size{{Name: "tiny", Memory: 16 << 20, CPUs: 0.25, Pids: 64}, {Name: "big", Memory: 2e9, CPUs: 2, Pids: 4096}}
		if len(sizes) != 2 || sizes[0] != want[0] || sizes[1] != want[1] {
			t.Errorf("got %+v, want %+v", sizes, want)
		}
	})
	for _, tt := range []struct{ spec, mentions string }{
		{"", "empty"},
		{"S:256MiB:0.5", "NAME:MEMORY:CPUS:PIDS"},
		{"S:lots:0.5:10", "memory"},
		{"S:1MiB:0.5:10", "from 6MiB"},
		{"S:2PiB:0.5:10", "to 1PiB"},
		{"S:256MiB:NaN:10", "CPUs"},
		{"S:256MiB:+Inf:10", "CPUs"},
		{"S:256MiB:1:99999999999", "process limit"},
		{"two words:256MiB:1:1", "name"},
		{"S:256MiB:none:10", "CPUs"},
		{"S:256MiB:0:10", "CPUs"},
		{"S:256MiB:1:0", "process limit"},
		{"S:256MiB:1:1,S:512MiB:1:1", "twice"},
		{":256MiB:1:1", "name"},
	} {
		t.Run("refuses "+tt.spec, func(t *testing.T) {
			_, err := oneoff.ParseSizes(tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.mentions) {
				t.Errorf("got %v, want an error mentioning %q", err, tt.mentions)
			}
		})
	}
}

func TestManager_sizes(t *testing.T) {
	sizes, _ := oneoff.ParseSizes("S:256MiB:0.5:256,M:512MiB:1:512")
	h := newHarness(t, oneoff.Config{Sizes: sizes, DefaultSize: "M"})
	t.Run("default size", func(t *testing.T) {
		rec, _ := h.create(t, oneoff.Request{})
		if rec.Size != "M" || h.rt.Spec(t, rec.ContainerID).Limits != sizes[1] {
			t.Errorf("size %q, limits %+v; want M's", rec.Size, h.rt.Spec(t, rec.ContainerID).Limits)
		}
	})
	t.Run("asked size reaches the container", func(t *testing.T) {
		rec, _ := h.create(t, oneoff.Request{Size: "S"})
		if got := h.stored(t, rec.ID).Size; got != "S" {
			t.Errorf("stored size %q, want S", got)
		}
		if got := h.rt.Spec(t, rec.ContainerID).Limits; got != sizes[0] {
			t.Errorf("limits %+v, want %+v", got, sizes[0])
		}
	})
	t.Run("unknown size lists the valid ones", func(t *testing.T) {
		_, _, err := h.m.Create(context.Background(), testApp, oneoff.Request{Command: oneoff.Command{Line: "x"}, Size: "XXL"})
		e := wantClass(t, err, errdefs.ErrInvalid, "unknown_size")
		for _, want := range []string{`"XXL"`, "S (256 MiB, 0.5 CPU)", "M (512 MiB, 1 CPU)"} {
			if !strings.Contains(e.Message, want) {
				t.Errorf("message %q lacks %q", e.Message, want)
			}
		}
	})
}
