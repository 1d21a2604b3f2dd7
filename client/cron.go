package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/oneoffd/oneoffd/apitypes"
)

// CronJobs lists app's cron jobs with their next and last runs.
func (c *Client) CronJobs(ctx context.Context, app string) ([]apitypes.CronJob, error) {
	var out apitypes.CronJobs
	err := c.do(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(app)+"/cron", nil, &out)
	return out.Jobs, err
}

// RunCronJob starts one of app's cron jobs now.
func (c *Client) RunCronJob(ctx context.Context, app, job string) (apitypes.CronRun, error) {
	var out apitypes.CronRun
	err := c.do(ctx, http.MethodPost, "/v1/apps/"+url.PathEscape(app)+"/cron/"+url.PathEscape(job)+"/runs", nil, &out)
	return out, err
}

// CronHistory returns a cron job's runs, newest first; limit 0 lets the
// daemon choose.
func (c *Client) CronHistory(ctx context.Context, app, job string, limit int) ([]apitypes.CronRun, error) {
	path := "/v1/apps/" + url.PathEscape(app) + "/cron/" + url.PathEscape(job) + "/runs"
	if limit > 0 {
		path += fmt.Sprintf("?limit=%d", limit)
	}
	var out apitypes.CronRuns
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out.Runs, err
}
