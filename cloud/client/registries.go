package client

import (
	"context"
	"fmt"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/shared/errclass"
)

// ---- external registries ----

func registriesPath(sub, acct string) string { return acctPath(sub, acct) + "/registries" }

// maxRegistryPassword is the longest password the cloud stores.
const maxRegistryPassword = 4096

// RegistryCreate is the body of CreateRegistry: an external registry
// (host[:port], optional repository path prefix) that image builds push to
// with Username and Password, and that devices pull from with PullUsername
// and PullPassword (a read-only account; none: anonymous pulls). The push
// credential never leaves the cloud. Passwords are sent once and never
// returned; Insecure talks plain HTTP.
type RegistryCreate struct {
	Name         string `json:"name"`
	Host         string `json:"host"`
	Prefix       string `json:"prefix,omitempty"`
	Username     string `json:"username,omitempty"`
	Password     string `json:"password,omitempty"`
	PullUsername string `json:"pullUsername,omitempty"`
	PullPassword string `json:"pullPassword,omitempty"`
	Insecure     bool   `json:"insecure,omitempty"`
}

// String describes the registry without its password, so that printing a
// RegistryCreate (%v, %+v) never leaks it.
func (r RegistryCreate) String() string {
	set := func(p string) string {
		if p != "" {
			return "(set)"
		}
		return ""
	}
	return fmt.Sprintf("{Name:%s Host:%s Prefix:%s Username:%s Password:%s PullUsername:%s PullPassword:%s Insecure:%t}",
		r.Name, r.Host, r.Prefix, r.Username, set(r.Password), r.PullUsername, set(r.PullPassword), r.Insecure)
}

// GoString is String for %#v.
func (r RegistryCreate) GoString() string { return "client.RegistryCreate" + r.String() }

// CreateRegistry configures an external registry of a model management
// account. The answer never carries the password: HasPassword tells
// whether one is stored.
func (c *Client) CreateRegistry(ctx context.Context, sub, acct string, in RegistryCreate) (*cloud.ExternalRegistry, error) {
	if len(in.Password) > maxRegistryPassword {
		return nil, errclass.Invalid("password", "registry %q: password is %d bytes, over the %d the cloud stores",
			in.Name, len(in.Password), maxRegistryPassword)
	}
	if len(in.PullPassword) > maxRegistryPassword {
		return nil, errclass.Invalid("pullPassword", "registry %q: pull password is %d bytes, over the %d the cloud stores",
			in.Name, len(in.PullPassword), maxRegistryPassword)
	}
	var out cloud.ExternalRegistry
	if err := c.doJSON(ctx, "POST", registriesPath(sub, acct), nil, in, &out); err != nil {
		return nil, err
	}
	out.Password, out.PullPassword = "", "" // never handed on, whatever the server said
	return &out, nil
}

// ListRegistries returns one page of an account's external registries.
func (c *Client) ListRegistries(ctx context.Context, sub, acct string, opts ListOptions) (*cloud.Page[cloud.ExternalRegistry], error) {
	var out cloud.Page[cloud.ExternalRegistry]
	if err := c.doJSON(ctx, "GET", registriesPath(sub, acct), opts.query(), nil, &out); err != nil {
		return nil, err
	}
	for i := range out.Items {
		out.Items[i].Password, out.Items[i].PullPassword = "", ""
	}
	return &out, nil
}

// ListAllRegistries returns every external registry of an account.
func (c *Client) ListAllRegistries(ctx context.Context, sub, acct string) ([]cloud.ExternalRegistry, error) {
	return ListAll(ctx, func(ctx context.Context, o ListOptions) (*cloud.Page[cloud.ExternalRegistry], error) {
		return c.ListRegistries(ctx, sub, acct, o)
	})
}

// GetRegistry returns one external registry (without its password).
func (c *Client) GetRegistry(ctx context.Context, sub, acct, name string) (*cloud.ExternalRegistry, error) {
	var out cloud.ExternalRegistry
	if err := c.doJSON(ctx, "GET", registriesPath(sub, acct)+pathOf(name), nil, nil, &out); err != nil {
		return nil, err
	}
	out.Password, out.PullPassword = "", ""
	return &out, nil
}

// DeleteRegistry forgets an external registry; images already pushed there
// stay where they are.
func (c *Client) DeleteRegistry(ctx context.Context, sub, acct, name string) error {
	return c.doJSON(ctx, "DELETE", registriesPath(sub, acct)+pathOf(name), nil, nil, nil)
}
