package client

import (
	"context"
	"net/url"
	"sort"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// ---- devices ----

func devicesPath(sub, acct string) string { return acctPath(sub, acct) + "/devices" }
func devicePath(sub, acct, id string) string {
	return acctPath(sub, acct) + pathOf("devices", id)
}

// EnrollmentTokenCreate is the body of CreateEnrollmentToken.
type EnrollmentTokenCreate struct {
	// Labels are given to the device that enrolls with the token.
	Labels map[string]string `json:"labels,omitempty"`
	// ExpiresInHours is the token's lifetime; 0 means the server's default (24 h).
	ExpiresInHours float64 `json:"expiresInHours,omitempty"`
}

// CreateEnrollmentToken makes a one-time token with which one device joins a
// model management account. The answer's Token is shown only this once.
func (c *Client) CreateEnrollmentToken(ctx context.Context, sub, acct string, in EnrollmentTokenCreate) (*cloud.EnrollmentToken, error) {
	if in.ExpiresInHours < 0 {
		return nil, errclass.Invalid("expiresInHours", "enrollment token lifetime %g hours is negative", in.ExpiresInHours)
	}
	var out cloud.EnrollmentToken
	if err := c.doJSON(ctx, "POST", acctPath(sub, acct)+"/enrollmentTokens", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Enroll exchanges a one-time enrollment token for a device identity (POST
// /api/v1/enroll). The route is public: the enrollment token is the only
// credential, so the client's own token is not sent. With DeviceID and
// Credential set, an enrolled device keeps its id and gets a new credential.
func (c *Client) Enroll(ctx context.Context, in cloud.EnrollRequest) (*cloud.Enrollment, error) {
	if in.Token == "" {
		return nil, errclass.Invalid("token", "enrollment token is empty")
	}
	anon := *c
	anon.token = ""
	var out cloud.Enrollment
	if err := anon.doJSON(ctx, "POST", apiPrefix+"/enroll", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// labelQuery adds selector to q as repeated label=KEY=VALUE, sorted by key.
func labelQuery(q url.Values, selector map[string]string) url.Values {
	keys := make([]string, 0, len(selector))
	for k := range selector {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		q.Add("label", k+"="+selector[k])
	}
	return q
}

// ListDevices returns one page of an account's devices; selector, if not
// empty, keeps only devices carrying every one of its labels.
func (c *Client) ListDevices(ctx context.Context, sub, acct string, selector map[string]string, opts ListOptions) (*cloud.Page[cloud.Device], error) {
	for k := range selector {
		if k == "" {
			return nil, errclass.Invalid("label", "label selector has an empty key")
		}
	}
	var out cloud.Page[cloud.Device]
	if err := c.doJSON(ctx, "GET", devicesPath(sub, acct), labelQuery(opts.query(), selector), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAllDevices returns every device of an account matching selector (all
// devices when it is empty).
func (c *Client) ListAllDevices(ctx context.Context, sub, acct string, selector map[string]string) ([]cloud.Device, error) {
	return ListAll(ctx, func(ctx context.Context, o ListOptions) (*cloud.Page[cloud.Device], error) {
		return c.ListDevices(ctx, sub, acct, selector, o)
	})
}

// GetDevice returns one device with its desired and reported state.
func (c *Client) GetDevice(ctx context.Context, sub, acct, id string) (*cloud.Device, error) {
	var out cloud.Device
	if err := c.doJSON(ctx, "GET", devicePath(sub, acct, id), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateDeviceLabels replaces all of a device's labels with labels (nil or
// empty removes them all).
func (c *Client) UpdateDeviceLabels(ctx context.Context, sub, acct, id string, labels map[string]string) (*cloud.Device, error) {
	if labels == nil {
		labels = map[string]string{}
	}
	body := struct {
		Labels map[string]string `json:"labels"`
	}{labels}
	var out cloud.Device
	if err := c.doJSON(ctx, "PATCH", devicePath(sub, acct, id), nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteDevice deletes a device; its credential stops working at once.
func (c *Client) DeleteDevice(ctx context.Context, sub, acct, id string) error {
	return c.doJSON(ctx, "DELETE", devicePath(sub, acct, id), nil, nil, nil)
}

// SetDesiredServices replaces what a device must run, under the next desired
// version, and returns the device. Nil or empty services means "run nothing".
func (c *Client) SetDesiredServices(ctx context.Context, sub, acct, id string, services []twin.ServiceSpec) (*cloud.Device, error) {
	if services == nil {
		services = []twin.ServiceSpec{}
	}
	body := struct {
		Services []twin.ServiceSpec `json:"services"`
	}{services}
	var out cloud.Device
	if err := c.doJSON(ctx, "PUT", devicePath(sub, acct, id)+"/desired", nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
