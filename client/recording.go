package client

import (
	"context"
	"io"
	"net/http"
	"net/url"
)

// Recording returns one-off id's session recording, an asciicast v2 file;
// the caller closes it.
func (c *Client) Recording(ctx context.Context, id string) (io.ReadCloser, error) {
	resp, err := c.send(ctx, http.MethodGet, "/v1/oneoffs/"+url.PathEscape(id)+"/recording", nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}
