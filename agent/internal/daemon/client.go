package daemon

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/vigil-ota/vigil/api"
	"github.com/vigil-ota/vigil/api/devicesig"
)

// deviceClient makes the device's signed requests to vigil-server.
type deviceClient struct {
	server string
	id     string
	key    ed25519.PrivateKey
	hc     *http.Client
}

// DeviceRequestTimeout bounds one check-in or event delivery.
const DeviceRequestTimeout = 30 * time.Second

func (c *deviceClient) post(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, DeviceRequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.server, "/")+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.key != nil {
		devicesig.SignRequest(req, c.id, c.key, body, time.Now())
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		var e api.Error
		json.Unmarshal(data, &e)
		return fmt.Errorf("%s: HTTP %d %s: %s", path, resp.StatusCode, e.Code, e.Message)
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// Send implements events.Sender.
func (c *deviceClient) Send(ctx context.Context, batch api.EventBatch) error {
	return c.post(ctx, api.PathDeviceEvents, batch, nil)
}

// CheckIn reports the installed version and returns the assignment, if any.
func (c *deviceClient) CheckIn(ctx context.Context, installed, state string) (*api.Assignment, error) {
	var out api.CheckInResponse
	if err := c.post(ctx, api.PathDeviceCheckIn, api.CheckIn{Installed: installed, State: state}, &out); err != nil {
		return nil, err
	}
	return out.Assignment, nil
}
