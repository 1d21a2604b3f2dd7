package oneoff

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/oneoffd/oneoffd/errdefs"
)

// Puller brings images onto the engine from their registries.
type Puller interface {
	// HasImage reports whether the engine has the image ref.
	HasImage(ctx context.Context, ref string) (bool, error)
	// CanPull asks ref's registry, through the engine, whether it has the
	// image, without pulling it; the error says why not.
	CanPull(ctx context.Context, ref string) error
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

// pullAndPrepare pulls a one-off's image, then makes its container (and
// starts it when detached). An attached user sees the pull's progress; a
// detached one-off's log records it.
func (m *Manager) pullAndPrepare(h *handle, p plan) {
	defer m.bg.Done()
	rec := h.snapshot()
	log := m.log.With("oneoff", rec.ID, "app", rec.App, "name", rec.Name)
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.PullTimeout)
	defer cancel()
	start := time.Now()
	var lastNote time.Time
	note := func(text string) {
		if rec.Mode == Detached {
			line := LogLine{Time: time.Now().UTC(), App: rec.App, Source: rec.Name, Stream: "stderr", Text: "oneoffd: " + text}
			if err := m.logs.Append(context.WithoutCancel(ctx), []LogLine{line}); err != nil {
				log.Warn("record the pull in the log failed", "err", err)
			}
		}
	}
	note("pulling image " + p.spec.Image)
	err := m.rt.Pull(ctx, p.spec.Image, func(pp PullProgress) {
		h.setProgress(pp)
		if time.Since(lastNote) >= 5*time.Second {
			lastNote = time.Now()
			note(pp.String())
		}
	})
	if err != nil {
		msg := userMessage(err)
		if m.ctx.Err() != nil {
			msg = "the daemon stopped during the image's pull"
		}
		log.Warn("pull failed", "image", p.spec.Image, "err", err)
		note("pull failed: " + msg)
		if _, ok := errdefs.As(err); !ok {
			msg = "pull image " + p.spec.Image + ": " + msg
		}
		m.discard(h, Failed, msg)
		return
	}
	took := time.Since(start).Round(100 * time.Millisecond)
	log.Info("image pulled", "image", p.spec.Image, "took", took)
	note(fmt.Sprintf("pulled image %s in %s", p.spec.Image, took))
	if h.stopReason() != "" {
		return // discarded while pulling: nothing to make
	}
	if _, err := m.prepare(m.ctx, h, p); err != nil {
		log.Warn("prepare after the pull failed", "err", err)
		return
	}
	h.markReady(nil)
}

// CheckImage makes sure the engine can run image: it has it, or its
// registry has it for the engine to pull when a one-off needs it. The
// error says why not, in the words a deploy reports, with the class of
// the registry's answer (one that does not answer is ErrUnavailable, an
// image it does not know ErrNotFound).
//
// An engine that does not answer cannot tell: the release is recorded
// anyway, as registering it needs no engine, and the first one-off, which
// does, will say what is wrong.
func (m *Manager) CheckImage(ctx context.Context, image string) error {
	has, err := m.rt.HasImage(ctx, image)
	if EngineGone(err) {
		m.log.Warn("the engine does not answer: the image of a deploy is not checked", "image", image, "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("check image %s: %w", image, err)
	}
	if has {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, min(m.cfg.PullTimeout, time.Minute))
	defer cancel()
	if err := m.rt.CanPull(ctx, image); err != nil {
		if EngineGone(err) {
			m.log.Warn("the engine does not answer: the image of a deploy is not checked", "image", image, "err", err)
			return nil
		}
		msg := fmt.Sprintf("the engine does not have image %s and cannot pull it: %s", image, userMessage(err))
		if e, ok := errdefs.As(err); ok {
			return &errdefs.Error{Class: e.Class, Code: "image_unavailable", Message: msg, Err: err}
		}
		return errdefs.Unavailable("image_unavailable", err, "%s", msg)
	}
	return nil
}
