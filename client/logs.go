package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/oneoffd/oneoffd/apitypes"
)

// LogOptions say which lines to read.
type LogOptions struct {
	// Lines is how many past lines to start with; 0 means the daemon's
	// default, a negative number none.
	Lines int
	// All starts with every line the log keeps, whatever Lines says.
	All bool
	// Follow goes on with new lines as they come.
	Follow bool
	// Filter keeps the lines of one source, a one-off's name.
	Filter string
}

func (o LogOptions) query() string {
	q := url.Values{"format": {"json"}}
	switch {
	case o.All:
		q.Set("lines", "all")
	case o.Lines > 0:
		q.Set("lines", strconv.Itoa(o.Lines))
	case o.Lines < 0:
		q.Set("lines", "0")
	}
	if o.Follow {
		q.Set("follow", "true")
	}
	if o.Filter != "" {
		q.Set("filter", o.Filter)
	}
	return q.Encode()
}

// AppLogs calls fn with each line of app's log, until the stream ends (it
// does not end by itself when following) or fn fails.
func (c *Client) AppLogs(ctx context.Context, app string, opts LogOptions, fn func(apitypes.LogLine) error) error {
	return c.logs(ctx, "/v1/apps/"+url.PathEscape(app)+"/logs?"+opts.query(), fn)
}

// OneOffLogs calls fn with each line of one-off id's output; when
// following, the stream ends once the one-off has finished.
func (c *Client) OneOffLogs(ctx context.Context, id string, opts LogOptions, fn func(apitypes.LogLine) error) error {
	opts.Filter = ""
	return c.logs(ctx, "/v1/oneoffs/"+url.PathEscape(id)+"/logs?"+opts.query(), fn)
}

func (c *Client) logs(ctx context.Context, path string, fn func(apitypes.LogLine) error) error {
	resp, err := c.send(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var line apitypes.LogLine
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return fmt.Errorf("decode log line: %w", err)
		}
		if err := fn(line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("read logs: %w", err)
	}
	return nil
}

// Drains returns app's log drains: their URLs and how each fares.
func (c *Client) Drains(ctx context.Context, app string) (apitypes.Drains, error) {
	var out apitypes.Drains
	err := c.do(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(app)+"/drains", nil, &out)
	return out, err
}

// SetDrains replaces app's log drains, and returns them as Drains does.
func (c *Client) SetDrains(ctx context.Context, app string, urls []string) (apitypes.Drains, error) {
	var out apitypes.Drains
	err := c.do(ctx, http.MethodPut, "/v1/apps/"+url.PathEscape(app)+"/drains", apitypes.DrainsRequest{URLs: urls}, &out)
	return out, err
}

// AllDrains returns the state of every drain the daemon runs, daemon-wide
// and per app.
func (c *Client) AllDrains(ctx context.Context) ([]apitypes.DrainStatus, error) {
	var out apitypes.DrainList
	err := c.do(ctx, http.MethodGet, "/v1/drains", nil, &out)
	return out.Drains, err
}
