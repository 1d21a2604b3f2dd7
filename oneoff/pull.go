package oneoff

import (
	"context"
	"fmt"
	"strings"

	"github.com/dustin/go-humanize"
)

// Puller brings images onto the engine from their registries.
type Puller interface {
	// HasImage reports whether the engine has the image ref.
	HasImage(ctx context.Context, ref string) (bool, error)
	// Pull pulls ref from its registry, reporting how far it has got to
	// progress, when not nil, now and then and once at the end. It gives
	// up when ctx ends.
	Pull(ctx context.Context, ref string, progress func(PullProgress)) error
}

// The statuses of a PullProgress.
const (
	// PullPulling is a pull under way.
	PullPulling = "pulling"
	// PullPulled is a pull that brought a new image, or a new version of it.
	PullPulled = "pulled"
	// PullUpToDate is a pull that found the engine's image current.
	PullUpToDate = "up to date"
)

// PullProgress is how far a pull has got.
type PullProgress struct {
	// Ref is the image being pulled.
	Ref string
	// Status is PullPulling, PullPulled or PullUpToDate.
	Status string
	// Layers counts the layers seen so far; LayersDone those on the engine,
	// pulled or there already.
	Layers, LayersDone int
	// Bytes is what has been downloaded of BytesTotal, the compressed size
	// of the layers whose size the engine has told so far.
	Bytes, BytesTotal int64
}

// String is a one-line summary for a person, such as
// "pulling registry:5000/app:v1: 3/5 layers, 12.3 MiB of 40.1 MiB".
func (p PullProgress) String() string {
	if p.Status == PullUpToDate {
		return p.Ref + " is up to date"
	}
	status := p.Status
	if status == "" {
		status = PullPulling
	}
	var b strings.Builder
	b.WriteString(status + " " + p.Ref)
	if p.Layers > 0 {
		layers := "layers"
		if p.Layers == 1 {
			layers = "layer"
		}
		fmt.Fprintf(&b, ": %d/%d %s", p.LayersDone, p.Layers, layers)
		if p.BytesTotal > 0 {
			fmt.Fprintf(&b, ", %s of %s", iec(p.Bytes), iec(p.BytesTotal))
		}
	}
	return b.String()
}

// iec is a size in IEC units with three significant digits: 12.3 MiB.
func iec(n int64) string {
	if n < 0 {
		n = 0
	}
	return humanize.IBytesN(uint64(n), 3)
}
