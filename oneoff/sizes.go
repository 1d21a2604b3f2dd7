package oneoff

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/oneoffd/oneoffd/errdefs"
)

// Size is a set of resource limits a one-off runs with.
type Size struct {
	Name string `json:"name"`
	// Memory is the memory limit in bytes, swap included.
	Memory int64 `json:"memory"`
	// CPUs is how many CPUs' worth of time it may use.
	CPUs float64 `json:"cpus"`
	// Pids is how many processes and threads it may have at once.
	Pids int64 `json:"pids"`
}

// String renders s as it is configured: NAME:MEMORY:CPUS:PIDS.
func (s Size) String() string {
	return fmt.Sprintf("%s:%s:%s:%d", s.Name, compactBytes(s.Memory), strconv.FormatFloat(s.CPUs, 'f', -1, 64), s.Pids)
}

// compactBytes writes n in the largest binary unit that divides it.
func compactBytes(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n >= u.size && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}

// DefaultSizes is the size table when none is configured.
const DefaultSizes = "S:256MiB:0.5:256,M:512MiB:1:512,L:1GiB:2:1024,XL:2GiB:2:2048"

// DefaultSize is the size of a one-off that asks for none, unless
// configured otherwise.
const DefaultSize = "M"

// The bounds of a size's fields: an engine takes larger values, but none
// that a one-off could use, and the conversions to its units must not
// overflow.
const (
	minSizeMemory = 6 << 20
	maxSizeMemory = 1 << 50
	maxSizeCPUs   = 1024
	maxSizePids   = 1 << 22
)

var sizeName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,32}$`)

// ParseSizes reads a size table: comma-separated NAME:MEMORY:CPUS:PIDS,
// such as "S:256MiB:0.5:256,M:512MiB:1:512".
func ParseSizes(spec string) ([]Size, error) {
	var sizes []Size
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		f := strings.Split(item, ":")
		if len(f) != 4 {
			return nil, fmt.Errorf("size %q: want NAME:MEMORY:CPUS:PIDS, such as M:512MiB:1:512", item)
		}
		s := Size{Name: f[0]}
		if !sizeName.MatchString(s.Name) {
			return nil, fmt.Errorf("size %q: the name must be a word of up to 32 letters, digits, dots, dashes or underscores", item)
		}
		mem, err := humanize.ParseBytes(f[1])
		if err != nil || mem < minSizeMemory || mem > maxSizeMemory {
			return nil, fmt.Errorf("size %q: memory %q must be a size from 6MiB to 1PiB, such as 512MiB", item, f[1])
		}
		s.Memory = int64(mem)
		// The bounds also refuse NaN and the infinities, which ParseFloat accepts.
		if s.CPUs, err = strconv.ParseFloat(f[2], 64); err != nil || !(s.CPUs >= 0.01 && s.CPUs <= maxSizeCPUs) {
			return nil, fmt.Errorf("size %q: CPUs %q must be a number from 0.01 to %d, such as 0.5", item, f[2], maxSizeCPUs)
		}
		if s.Pids, err = strconv.ParseInt(f[3], 10, 64); err != nil || s.Pids < 1 || s.Pids > maxSizePids {
			return nil, fmt.Errorf("size %q: process limit %q must be a whole number from 1 to %d", item, f[3], maxSizePids)
		}
		if slices.ContainsFunc(sizes, func(o Size) bool { return o.Name == s.Name }) {
			return nil, fmt.Errorf("size %q is defined twice", s.Name)
		}
		sizes = append(sizes, s)
	}
	if len(sizes) == 0 {
		return nil, fmt.Errorf("the size table is empty: define at least one size, such as M:512MiB:1:512")
	}
	return sizes, nil
}

// size returns the size a request asks for, or the default one.
func (m *Manager) size(name string) (Size, error) {
	if name == "" {
		name = m.cfg.DefaultSize
	}
	for _, s := range m.cfg.Sizes {
		if s.Name == name {
			return s, nil
		}
	}
	names := make([]string, len(m.cfg.Sizes))
	for i, s := range m.cfg.Sizes {
		names[i] = fmt.Sprintf("%s (%s, %s CPU)", s.Name, humanize.IBytes(uint64(s.Memory)), strconv.FormatFloat(s.CPUs, 'f', -1, 64))
	}
	return Size{}, errdefs.Invalid("unknown_size", "size %q is unknown: use %s", name, strings.Join(names, ", "))
}

// memoryOf says how much memory the named size allows.
func (m *Manager) memoryOf(name string) string {
	for _, s := range m.cfg.Sizes {
		if s.Name == name {
			return humanize.IBytes(uint64(s.Memory))
		}
	}
	return "an unknown amount of memory"
}
