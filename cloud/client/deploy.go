package client

import (
	"context"
	"strconv"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/shared/errclass"
)

// ---- images ----

func imagesPath(sub, acct string) string { return acctPath(sub, acct) + "/images" }
func imageVersionPath(sub, acct, name string, v int) string {
	return imagesPath(sub, acct) + pathOf(name, "versions", strconv.Itoa(v))
}

// CreateImage asks the cloud to build image in.Name from the manifest
// version in.Manifest ("name:version"). The build is long: the answer is
// the Queued operation (202); follow it with GetOperation or WaitOperation.
// Its Log gets one line per layer pushed or skipped, and its Result is the
// path of the new image version.
func (c *Client) CreateImage(ctx context.Context, sub, acct string, in cloud.CreateImage) (*cloud.Operation, error) {
	var out cloud.Operation
	if err := c.doJSON(ctx, "POST", imagesPath(sub, acct), nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListImages returns one page of an account's image versions; name, if not
// empty, keeps only that image's versions.
func (c *Client) ListImages(ctx context.Context, sub, acct, name string, opts ListOptions) (*cloud.Page[cloud.Image], error) {
	q := opts.query()
	if name != "" {
		q.Set("name", name)
	}
	var out cloud.Page[cloud.Image]
	if err := c.doJSON(ctx, "GET", imagesPath(sub, acct), q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAllImages returns every image version of an account (of name if not empty).
func (c *Client) ListAllImages(ctx context.Context, sub, acct, name string) ([]cloud.Image, error) {
	return ListAll(ctx, func(ctx context.Context, o ListOptions) (*cloud.Page[cloud.Image], error) {
		return c.ListImages(ctx, sub, acct, name, o)
	})
}

// ListImageVersions returns one page of image name's versions.
func (c *Client) ListImageVersions(ctx context.Context, sub, acct, name string, opts ListOptions) (*cloud.Page[cloud.Image], error) {
	var out cloud.Page[cloud.Image]
	if err := c.doJSON(ctx, "GET", imagesPath(sub, acct)+pathOf(name, "versions"), opts.query(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAllImageVersions returns every version of image name.
func (c *Client) ListAllImageVersions(ctx context.Context, sub, acct, name string) ([]cloud.Image, error) {
	return ListAll(ctx, func(ctx context.Context, o ListOptions) (*cloud.Page[cloud.Image], error) {
		return c.ListImageVersions(ctx, sub, acct, name, o)
	})
}

// GetImage returns one image version.
func (c *Client) GetImage(ctx context.Context, sub, acct, name string, version int) (*cloud.Image, error) {
	var out cloud.Image
	if err := c.doJSON(ctx, "GET", imageVersionPath(sub, acct, name, version), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteImage deletes an image version's record (refused while a service uses it).
func (c *Client) DeleteImage(ctx context.Context, sub, acct, name string, version int) error {
	return c.doJSON(ctx, "DELETE", imageVersionPath(sub, acct, name, version), nil, nil, nil)
}

// ---- environments ----

func environmentsPath(sub, acct string) string { return acctPath(sub, acct) + "/environments" }

// EnvironmentCreate is the body of CreateEnvironment: one Device, or a
// label Selector (every device of the account carrying all its labels, now
// and later), not both.
type EnvironmentCreate struct {
	Name        string            `json:"name"`
	Device      string            `json:"device,omitempty"`
	Selector    map[string]string `json:"selector,omitempty"`
	Description string            `json:"description,omitempty"`
}

// CreateEnvironment creates a single-device or fleet environment.
func (c *Client) CreateEnvironment(ctx context.Context, sub, acct string, in EnvironmentCreate) (*cloud.Environment, error) {
	if in.Device != "" && len(in.Selector) > 0 {
		return nil, errclass.Invalid("selector", "environment %q: give a device or a label selector, not both", in.Name)
	}
	var out cloud.Environment
	if err := c.doJSON(ctx, "POST", environmentsPath(sub, acct), nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListEnvironments returns one page of an account's environments.
func (c *Client) ListEnvironments(ctx context.Context, sub, acct string, opts ListOptions) (*cloud.Page[cloud.Environment], error) {
	var out cloud.Page[cloud.Environment]
	if err := c.doJSON(ctx, "GET", environmentsPath(sub, acct), opts.query(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAllEnvironments returns every environment of an account.
func (c *Client) ListAllEnvironments(ctx context.Context, sub, acct string) ([]cloud.Environment, error) {
	return ListAll(ctx, func(ctx context.Context, o ListOptions) (*cloud.Page[cloud.Environment], error) {
		return c.ListEnvironments(ctx, sub, acct, o)
	})
}

// GetEnvironment returns one environment.
func (c *Client) GetEnvironment(ctx context.Context, sub, acct, name string) (*cloud.Environment, error) {
	var out cloud.Environment
	if err := c.doJSON(ctx, "GET", environmentsPath(sub, acct)+pathOf(name), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteEnvironment deletes an environment no service uses.
func (c *Client) DeleteEnvironment(ctx context.Context, sub, acct, name string) error {
	return c.doJSON(ctx, "DELETE", environmentsPath(sub, acct)+pathOf(name), nil, nil, nil)
}

// ---- services ----

func servicesPath(sub, acct string) string { return acctPath(sub, acct) + "/services" }
func servicePath(sub, acct, name string) string {
	return servicesPath(sub, acct) + pathOf(name)
}

// ServiceCreated is the answer of CreateService: the service and the
// rollout that moves the environment's devices to its image.
type ServiceCreated struct {
	Service cloud.ScoringService `json:"service"`
	Rollout *cloud.Rollout       `json:"rollout"`
}

// CreateService creates a service in an environment and starts its first
// rollout (in.Rollout tunes it; nil: every device in one batch).
func (c *Client) CreateService(ctx context.Context, sub, acct string, in cloud.CreateServiceRequest) (*ServiceCreated, error) {
	var out ServiceCreated
	if err := c.doJSON(ctx, "POST", servicesPath(sub, acct), nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListServices returns one page of an account's services.
func (c *Client) ListServices(ctx context.Context, sub, acct string, opts ListOptions) (*cloud.Page[cloud.ScoringService], error) {
	var out cloud.Page[cloud.ScoringService]
	if err := c.doJSON(ctx, "GET", servicesPath(sub, acct), opts.query(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAllServices returns every service of an account.
func (c *Client) ListAllServices(ctx context.Context, sub, acct string) ([]cloud.ScoringService, error) {
	return ListAll(ctx, func(ctx context.Context, o ListOptions) (*cloud.Page[cloud.ScoringService], error) {
		return c.ListServices(ctx, sub, acct, o)
	})
}

// GetService returns one service.
func (c *Client) GetService(ctx context.Context, sub, acct, name string) (*cloud.ScoringService, error) {
	var out cloud.ScoringService
	if err := c.doJSON(ctx, "GET", servicePath(sub, acct, name), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteService deletes a service and its rollout history; its devices stop it.
func (c *Client) DeleteService(ctx context.Context, sub, acct, name string) error {
	return c.doJSON(ctx, "DELETE", servicePath(sub, acct, name), nil, nil, nil)
}

// ---- rollouts ----

func rolloutPath(sub, acct, service, id string) string {
	return servicePath(sub, acct, service) + pathOf("rollouts", id)
}

// StartRollout starts moving a service to another image version
// (in.Image, "name:version"). It fails with a conflict while another
// rollout of the service is in progress.
func (c *Client) StartRollout(ctx context.Context, sub, acct, service string, in cloud.RolloutRequest) (*cloud.Rollout, error) {
	var out cloud.Rollout
	if err := c.doJSON(ctx, "POST", servicePath(sub, acct, service)+"/rollouts", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RollbackService starts a rollout of a service back to its previous image.
func (c *Client) RollbackService(ctx context.Context, sub, acct, service string) (*cloud.Rollout, error) {
	var out cloud.Rollout
	if err := c.doJSON(ctx, "POST", servicePath(sub, acct, service)+"/rollback", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListRollouts returns one page of a service's rollouts, oldest first.
func (c *Client) ListRollouts(ctx context.Context, sub, acct, service string, opts ListOptions) (*cloud.Page[cloud.Rollout], error) {
	var out cloud.Page[cloud.Rollout]
	if err := c.doJSON(ctx, "GET", servicePath(sub, acct, service)+"/rollouts", opts.query(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAllRollouts returns every rollout of a service.
func (c *Client) ListAllRollouts(ctx context.Context, sub, acct, service string) ([]cloud.Rollout, error) {
	return ListAll(ctx, func(ctx context.Context, o ListOptions) (*cloud.Page[cloud.Rollout], error) {
		return c.ListRollouts(ctx, sub, acct, service, o)
	})
}

// GetRollout returns one rollout: its batch, per-state counts and every
// device's outcome.
func (c *Client) GetRollout(ctx context.Context, sub, acct, service, id string) (*cloud.Rollout, error) {
	var out cloud.Rollout
	if err := c.doJSON(ctx, "GET", rolloutPath(sub, acct, service, id), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

func (c *Client) actOnRollout(ctx context.Context, sub, acct, service, id, action string) (*cloud.Rollout, error) {
	var out cloud.Rollout
	if err := c.doJSON(ctx, "POST", rolloutPath(sub, acct, service, id)+pathOf(action), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// PauseRollout stops a running rollout from moving more devices.
func (c *Client) PauseRollout(ctx context.Context, sub, acct, service, id string) (*cloud.Rollout, error) {
	return c.actOnRollout(ctx, sub, acct, service, id, cloud.ActionPause)
}

// ResumeRollout lets a paused rollout go on.
func (c *Client) ResumeRollout(ctx context.Context, sub, acct, service, id string) (*cloud.Rollout, error) {
	return c.actOnRollout(ctx, sub, acct, service, id, cloud.ActionResume)
}

// AbortRollout stops a running or paused rollout and puts every device it
// moved back on the previous image (the rollout ends Aborted).
func (c *Client) AbortRollout(ctx context.Context, sub, acct, service, id string) (*cloud.Rollout, error) {
	return c.actOnRollout(ctx, sub, acct, service, id, cloud.ActionAbort)
}
