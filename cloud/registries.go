package cloud

import (
	"context"
	"net/url"
	"strings"

	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/manifest"
)

// ExternalRegistry is a registry of a model management account's own
// (distribution, Harbor, a cloud registry) that images can be pushed to
// instead of the embedded one. Its password is stored, used to push, and
// never returned.
type ExternalRegistry struct {
	Meta
	Subscription string `json:"subscription"`
	Account      string `json:"account"`
	Name         string `json:"name"`
	// Host is host[:port]; Prefix is an optional repository path prefix.
	Host     string `json:"host"`
	Prefix   string `json:"prefix,omitempty"`
	Username string `json:"username,omitempty"`
	// Password is write-only: accepted on create, never shown.
	Password string `json:"password,omitempty"`
	// HasPassword tells whether a password is stored.
	HasPassword bool `json:"hasPassword"`
	// PullUsername and PullPassword (write-only) are the credential devices
	// get to pull images pushed here: give them a read-only account. Without
	// them devices pull anonymously; the push credential above never leaves
	// the cloud.
	PullUsername    string `json:"pullUsername,omitempty"`
	PullPassword    string `json:"pullPassword,omitempty"`
	HasPullPassword bool   `json:"hasPullPassword"`
	// Insecure talks plain HTTP (for registries on a trusted network).
	Insecure bool `json:"insecure,omitempty"`
}

// RegistryPath is the path of an external registry.
func RegistryPath(sub, acct, name string) string {
	return AccountPath(sub, acct) + "/registries/" + name
}

// redact clears the passwords of an answer.
func (r *ExternalRegistry) redact() { r.Password, r.PullPassword = "", "" }

func checkRegistry(in *ExternalRegistry) error {
	if err := manifest.CheckName("name", in.Name); err != nil {
		return err
	}
	if in.Host == "" || strings.ContainsAny(in.Host, "/ @") {
		return errclass.Invalid("host", "host %q must be host[:port] without a scheme or path", in.Host)
	}
	if u, err := url.Parse("https://" + in.Host); err != nil || u.Host != in.Host {
		return errclass.Invalid("host", "host %q is not a valid host[:port]", in.Host)
	}
	in.Prefix = strings.Trim(in.Prefix, "/")
	for _, seg := range strings.Split(in.Prefix, "/") {
		if in.Prefix != "" && !manifest.ValidName(seg) {
			return errclass.Invalid("prefix", "prefix %q: segment %q is not a valid repository name part", in.Prefix, seg)
		}
	}
	if len(in.Username) > 256 || len(in.Password) > 4096 || strings.ContainsAny(in.Username, ":\n") {
		return errclass.Invalid("username", "username or password is malformed or too long")
	}
	if len(in.PullUsername) > 256 || len(in.PullPassword) > 4096 || strings.ContainsAny(in.PullUsername, ":\n") {
		return errclass.Invalid("pullUsername", "pull username or password is malformed or too long")
	}
	return nil
}

// CreateRegistry stores an external registry for an account.
func (s *Service) CreateRegistry(ctx context.Context, sub, acct string, in ExternalRegistry) (*ExternalRegistry, error) {
	if _, err := authorize(ctx, AccountPath(sub, acct), Contributor); err != nil {
		return nil, err
	}
	if err := checkRegistry(&in); err != nil {
		return nil, err
	}
	out := ExternalRegistry{Meta: s.meta(ctx, RegistryPath(sub, acct, in.Name)), Subscription: sub, Account: acct, Name: in.Name,
		Host: in.Host, Prefix: in.Prefix, Username: in.Username, Password: in.Password, HasPassword: in.Password != "",
		PullUsername: in.PullUsername, PullPassword: in.PullPassword, HasPullPassword: in.PullPassword != "", Insecure: in.Insecure}
	err := s.store.Update(ctx, func(tx Tx) error {
		if _, err := account(tx, sub, acct, ModelManagement); err != nil {
			return err
		}
		return tx.Create(out.Path, &out)
	})
	if err != nil {
		return nil, err
	}
	out.redact()
	return &out, nil
}

// ListRegistries lists an account's external registries (without passwords).
func (s *Service) ListRegistries(ctx context.Context, sub, acct string, o ListOptions) (Page[ExternalRegistry], error) {
	if _, err := authorize(ctx, AccountPath(sub, acct), Reader); err != nil {
		return Page[ExternalRegistry]{}, err
	}
	page, err := list[ExternalRegistry](ctx, s, AccountPath(sub, acct)+"/registries", 1, o, nil)
	for i := range page.Items {
		page.Items[i].redact()
	}
	return page, err
}

// GetRegistry reads an external registry (without its password).
func (s *Service) GetRegistry(ctx context.Context, sub, acct, name string) (*ExternalRegistry, error) {
	r, err := get[ExternalRegistry](ctx, s, RegistryPath(sub, acct, name), Reader)
	if r != nil {
		r.redact()
	}
	return r, err
}

// DeleteRegistry forgets an external registry (images pushed there stay).
func (s *Service) DeleteRegistry(ctx context.Context, sub, acct, name string) error {
	path := RegistryPath(sub, acct, name)
	if _, err := authorize(ctx, path, Contributor); err != nil {
		return err
	}
	return s.store.Update(ctx, func(tx Tx) error { return tx.Delete(path) })
}
