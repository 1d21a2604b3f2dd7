package oneoff

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/oneoffd/oneoffd/deploy"
	"github.com/oneoffd/oneoffd/errdefs"
)

// Create registers a one-off for app and creates its container, not started.
// It returns the record and the secret that attaches a terminal to it.
func (m *Manager) Create(ctx context.Context, app string, req Request) (OneOff, string, error) {
	rel, err := m.releases.Current(ctx, app)
	if err != nil {
		return OneOff{}, "", err
	}
	if err := deploy.ValidateEnv(req.Env); err != nil {
		return OneOff{}, "", err
	}
	argv, err := req.argv(rel)
	if err != nil {
		return OneOff{}, "", err
	}
	ttl, err := m.lifetime(req)
	if err != nil {
		return OneOff{}, "", err
	}
	size, err := m.size(req.Size)
	if err != nil {
		return OneOff{}, "", err
	}
	uploads, err := m.checkUploads(req.Uploads)
	if err != nil {
		return OneOff{}, "", err
	}
	now := m.cfg.Now().UTC()
	rec := OneOff{
		ID: newID(), App: app, Release: rel.Version, Image: rel.Image, Command: argv,
		EnvNames: req.envNames(), Mode: Attached, TTY: req.TTY, Requester: req.Requester,
		Size: size.Name, State: Pending, Step: StepCreate, CreatedAt: now,
		Name: req.NamePrefix, // insert draws the name, after this prefix
	}
	if len(uploads) > 0 {
		rec.Step = StepUpload // a container without all its files is of no use
	}
	var secret string
	if req.Detached {
		rec.Mode = Detached
	} else {
		secret = randomString(32)
		hash := sha256.Sum256([]byte(secret))
		deadline := now.Add(m.cfg.AttachWait)
		rec.AttachDeadline, rec.SecretHash = &deadline, hash[:]
	}
	// Followed before it is written, so that a concurrent reconcile never
	// takes the new record for an orphan.
	h := newHandle(rec)
	m.mu.Lock()
	if m.closing {
		m.mu.Unlock()
		return OneOff{}, "", errdefs.Unavailable("shutting_down", nil, "oneoffd is shutting down: retry in a moment")
	}
	// Counted under the lock that registers the new one-off, in-flight
	// creates included, so that two creates cannot both take the last slot.
	if err := m.checkQuotaLocked(app); err != nil {
		m.mu.Unlock()
		return OneOff{}, "", err
	}
	m.handles[rec.ID] = h
	m.mu.Unlock()
	if err := m.insert(ctx, &rec); err != nil {
		m.forget(rec.ID)
		return OneOff{}, "", err
	}
	h.update(func(r *OneOff) { *r = rec })
	m.audit(rec, AuditCreate, req.Requester, createDetail(rec, len(uploads)))

	p := plan{
		spec: Spec{
			Name: app + "." + rec.Name + "." + rec.ID, Image: rel.Image, Cmd: argv, Env: req.env(rel),
			TTY: req.TTY, Stdin: !req.Detached, Window: req.Window, Logs: req.Detached, Limits: size, App: app,
			Labels: map[string]string{
				LabelManaged: "true", LabelInstance: m.cfg.Instance, LabelID: rec.ID,
				LabelApp: app, LabelName: rec.Name, LabelMode: string(rec.Mode),
			},
		},
		release: rel.Version, uploads: uploads, data: req.UploadData, ttl: ttl,
	}
	log := m.log.With("oneoff", rec.ID, "app", app, "name", rec.Name)
	ectx, cancel := m.engineContext(ctx)
	defer cancel()
	present, err := m.rt.HasImage(ectx, rel.Image)
	if err != nil {
		m.finish(h, Failed, nil, userMessage(err))
		return OneOff{}, "", fmt.Errorf("create one-off for %q: %w", app, err)
	}
	if !present && len(uploads) > 0 {
		// The files are in this request's body, which cannot wait: the
		// image is pulled now, while the client waits.
		log.Info("pulling the image before the upload", "image", rel.Image)
		pctx, pcancel := context.WithTimeout(ctx, m.cfg.PullTimeout)
		err := m.rt.Pull(pctx, rel.Image, nil)
		pcancel()
		if err != nil {
			m.finish(h, Failed, nil, userMessage(err))
			return OneOff{}, "", fmt.Errorf("create one-off for %q: %w", app, err)
		}
		present = true
	}
	if !present {
		// Answer now: an attached user sees the pull's progress once
		// attached, a detached one-off's log records it.
		if !req.Detached {
			m.armAttachWait(h, m.cfg.AttachWait)
		}
		m.bg.Add(1)
		go m.pullAndPrepare(h, p)
		log.Info("one-off created; its image is being pulled", "image", rel.Image)
		return rec, secret, nil
	}
	if rec, err = m.prepare(ctx, h, p); err != nil {
		return OneOff{}, "", err
	}
	if !req.Detached {
		m.armAttachWait(h, m.cfg.AttachWait)
	}
	h.markReady(nil)
	return rec, secret, nil
}

// plan is what a one-off's container is made of once its image is there.
type plan struct {
	spec    Spec
	release int
	uploads []Uploaded
	data    UploadReader
	ttl     time.Duration
}

// prepare creates the one-off's container, puts the uploads in, and starts
// it when it is detached. On error the one-off is finished.
func (m *Manager) prepare(ctx context.Context, h *handle, p plan) (OneOff, error) {
	rec := h.snapshot()
	log := m.log.With("oneoff", rec.ID, "app", rec.App, "name", rec.Name)
	ectx, cancel := m.engineContext(ctx)
	defer cancel()
	placed, err := m.rt.Create(ectx, p.spec)
	cid := placed.ID
	if err != nil {
		log.Warn("create container failed", "err", err)
		m.finish(h, Failed, nil, userMessage(err))
		return OneOff{}, fmt.Errorf("create one-off for %q: %w", rec.App, err)
	}
	// The next step's intent goes with the container's id, in one write.
	rec, stopped := h.place(placed, len(p.uploads) > 0)
	if stopped != "" {
		// Stopped while the engine was creating the container: the stop
		// found nothing to remove, so the container is removed here.
		if err := m.rt.Remove(ectx, cid); err != nil {
			log.Error("remove container failed; reconcile will retry", "container", shortID(cid), "err", err)
		}
		return OneOff{}, errdefs.Conflict("oneoff_stopped", "one-off %s was stopped (%s) while its container was being created", rec.Name, stopped)
	}
	if err := m.store.UpdateOneOff(ectx, rec); err != nil {
		m.discard(h, Failed, userMessage(err))
		return OneOff{}, fmt.Errorf("record one-off %q: %w", rec.ID, err)
	}
	if len(p.uploads) > 0 {
		// Bound by the client's request rather than a timeout: a large
		// file from a slow client takes its time.
		if err := m.copyUploads(ctx, cid, p.uploads, p.data); err != nil {
			log.Warn("upload failed", "err", err)
			m.discard(h, Failed, userMessage(err))
			return OneOff{}, fmt.Errorf("upload files for one-off %s: %w", rec.Name, err)
		}
		rec = h.update(func(r *OneOff) { r.Uploads, r.Step = p.uploads, StepNone })
		if err := m.store.UpdateOneOff(ectx, rec); err != nil {
			m.discard(h, Failed, userMessage(err))
			return OneOff{}, fmt.Errorf("record one-off %q: %w", rec.ID, err)
		}
		var bytes int64
		for _, u := range p.uploads {
			bytes += u.Size
		}
		m.met.uploadBytes.Add(float64(bytes))
		log.Info("files uploaded", "files", len(p.uploads), "bytes", bytes)
	}
	if rec.Mode == Detached {
		rec, err := m.startDetached(ectx, h, p.ttl)
		if err != nil {
			return OneOff{}, fmt.Errorf("start one-off %s: %w", rec.Name, err)
		}
		log.Info("detached one-off started", "image", p.spec.Image, "release", p.release,
			"container", shortID(cid), "expires_at", rec.ExpiresAt)
		return rec, nil
	}
	log.Info("one-off created", "image", p.spec.Image, "release", p.release, "container", shortID(cid), "tty", p.spec.TTY)
	return rec, nil
}

// lifetime returns how long a detached one-off may run: what the request
// asks, no more than the configured maximum.
func (m *Manager) lifetime(req Request) (time.Duration, error) {
	switch {
	case !req.Detached && req.TTL != 0:
		return 0, errdefs.Invalid("ttl_detached_only", "a lifetime (ttl) applies to detached one-offs only: an attached one is reaped when idle")
	case !req.Detached:
		return 0, nil
	case req.TTL < 0:
		return 0, errdefs.Invalid("invalid_ttl", "ttl %s is negative: ask for a positive lifetime", req.TTL)
	case req.TTL > m.cfg.MaxLifetime:
		return 0, errdefs.Invalid("ttl_too_long", "ttl %s is over the maximum lifetime of %s: ask for %s or less", req.TTL, m.cfg.MaxLifetime, m.cfg.MaxLifetime)
	case req.TTL == 0:
		return m.cfg.MaxLifetime, nil
	}
	return req.TTL, nil
}

// insert stores rec under a fresh name, drawing again on a clash; the name
// starts with rec.Name when set, with "one-off" otherwise.
func (m *Manager) insert(ctx context.Context, rec *OneOff) error {
	prefix := rec.Name
	if prefix == "" {
		prefix = "one-off"
	}
	for attempt := 0; ; attempt++ {
		digits := 4 + attempt/4 // widen when the app's names get crowded
		rec.Name = fmt.Sprintf("%s-%d", prefix, randomNumber(digits))
		err := m.store.CreateOneOff(ctx, *rec)
		if err == nil {
			return nil
		}
		if !errors.Is(err, errdefs.ErrConflict) || attempt >= 16 {
			return fmt.Errorf("record one-off: %w", err)
		}
	}
}
