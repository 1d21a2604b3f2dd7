package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/jsonmessage"

	"github.com/oneoffd/oneoffd/oneoff"
)

// LabelProbe marks the container made to probe the engine, which no
// one-off claims: reconcile removes it if a crash left it behind.
const LabelProbe = "io.oneoffd.probe"

// quotaState is what the engine said about disk quotas.
type quotaState struct {
	probed, supported bool
	driver            string
}

// Probe asks the engine whether its storage driver can bound a container's
// writable layer, by creating (and removing) a container of an empty image
// with the configured quota. The answer is kept, and Create sets the quota
// only where it is supported. While the engine does not answer the
// question stays open, and the next Create asks again.
func (d *Runtime) Probe(ctx context.Context) error {
	d.probeMu.Lock()
	defer d.probeMu.Unlock()
	if d.quotaState().probed || d.iso.DiskQuota <= 0 {
		return nil
	}
	defer d.timed("probe")()
	info, err := d.cli.Info(ctx)
	if err != nil {
		return d.wrap("probe disk quota", err)
	}
	quotaErr := d.probeQuota(ctx)
	if quotaErr == nil {
		d.setQuotaState(quotaState{probed: true, supported: true, driver: info.Driver})
		return nil
	}
	if client.IsErrConnectionFailed(quotaErr) {
		return d.wrap("probe disk quota", quotaErr)
	}
	// Any other answer is taken as a no, once: a quota the engine cannot
	// be shown to apply is not promised.
	d.setQuotaState(quotaState{probed: true, driver: info.Driver})
	if d.log != nil {
		d.log.Warn("the storage driver cannot bound a container's disk: one-offs get no disk quota",
			"storage_driver", info.Driver, "engine_said", quotaErr.Error())
	}
	return nil
}

// probeQuota creates a container of an empty image with the quota: nil
// means the engine accepted it.
func (d *Runtime) probeQuota(ctx context.Context) error {
	img, err := d.importEmpty(ctx)
	if err != nil {
		return err
	}
	defer func() {
		_, _ = d.cli.ImageRemove(context.WithoutCancel(ctx), img, image.RemoveOptions{Force: true, PruneChildren: true})
	}()
	quotaErr := d.probeCreate(ctx, img, map[string]string{"size": strconv.FormatInt(d.iso.DiskQuota, 10)})
	if quotaErr == nil || client.IsErrConnectionFailed(quotaErr) {
		return quotaErr
	}
	// The same container without the quota tells a refusal of the quota
	// from any other failure.
	if err := d.probeCreate(ctx, img, nil); err != nil {
		return fmt.Errorf("create a probe container even without a quota: %w", err)
	}
	return quotaErr
}

// quotaSupported says whether Create may set the disk quota, probing the
// engine if it has not answered yet.
func (d *Runtime) quotaSupported(ctx context.Context) bool {
	if d.iso.DiskQuota <= 0 {
		return false
	}
	_ = d.Probe(ctx) // an engine that does not answer fails the create anyway
	return d.quotaState().supported
}

func (d *Runtime) quotaState() quotaState {
	d.quotaMu.Lock()
	defer d.quotaMu.Unlock()
	return d.quota
}

func (d *Runtime) setQuotaState(q quotaState) {
	d.quotaMu.Lock()
	defer d.quotaMu.Unlock()
	d.quota = q
}

// probeCreate creates, then removes, a container of img with storage opts.
func (d *Runtime) probeCreate(ctx context.Context, img string, opts map[string]string) error {
	cfg := &container.Config{Image: img, Cmd: []string{"/probe"}, Labels: map[string]string{
		oneoff.LabelManaged: "true", oneoff.LabelInstance: d.iso.Instance, LabelProbe: "disk-quota",
	}}
	host := &container.HostConfig{StorageOpt: opts, NetworkMode: "none", LogConfig: container.LogConfig{Type: "none"}}
	resp, err := d.cli.ContainerCreate(ctx, cfg, host, nil, nil, "")
	if err != nil {
		return err
	}
	return d.cli.ContainerRemove(context.WithoutCancel(ctx), resp.ID, container.RemoveOptions{Force: true})
}

// importEmpty imports an image with nothing in it, untagged, and returns
// its ID: a probe needs an image, and the engine may have none.
func (d *Runtime) importEmpty(ctx context.Context) (string, error) {
	var buf bytes.Buffer
	if err := tar.NewWriter(&buf).Close(); err != nil {
		return "", err
	}
	rc, err := d.cli.ImageImport(ctx, image.ImportSource{Source: &buf, SourceName: "-"}, "", image.ImportOptions{})
	if err != nil {
		return "", err
	}
	defer rc.Close()
	var id string
	dec := json.NewDecoder(rc)
	for {
		var m jsonmessage.JSONMessage
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", fmt.Errorf("read import answer: %w", err)
		}
		if m.Error != nil {
			return "", fmt.Errorf("import: %s", m.Error.Message)
		}
		if s := strings.TrimSpace(m.Status); strings.HasPrefix(s, "sha256:") {
			id = s
		}
	}
	if id == "" {
		return "", errors.New("import: the engine named no image")
	}
	return id, nil
}
