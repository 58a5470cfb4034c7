package cloud

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/manifest"
)

// Config tunes the services.
type Config struct {
	// MaxModelBytes bounds one model upload (default 4 GiB).
	MaxModelBytes int64
	// Now is the clock (default time.Now); tests fake it.
	Now func() time.Time
}

// Service holds the control plane's logic: tenancy, users and tokens,
// authorization, models and manifests. Its methods take the caller from ctx
// (WithPrincipal) and are safe for concurrent use.
type Service struct {
	store Store
	blobs Blobs
	cfg   Config
	// blobMu orders blob deletion against new references to a blob.
	blobMu sync.Mutex
	ops    operations

	devMu     sync.Mutex
	bus       DeviceBus
	endpoints Endpoints
	accounts  BrokerAccounts
	// pullKeyCache signs registry pull tokens (see PullToken).
	pullKeyCache []byte
	builder      ImageBuilder
	registry     RegistryTarget
	rolloutKick  chan struct{}
	// unpublished are devices whose desired state failed to publish.
	unpublished map[string]bool
}

// NewService makes a Service over a store and a blob store.
func NewService(store Store, blobs Blobs, cfg Config) *Service {
	if cfg.MaxModelBytes <= 0 {
		cfg.MaxModelBytes = 4 << 30
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{store: store, blobs: blobs, cfg: cfg, ops: operations{queue: make(chan job, maxQueuedOperations)},
		rolloutKick: make(chan struct{}, 1)}
}

func (s *Service) now() time.Time { return s.cfg.Now().UTC().Truncate(time.Millisecond) }

// ListOptions pages a list.
type ListOptions struct {
	Limit     int
	PageToken string
}

// MaxPageSize is the largest page a list answers.
const MaxPageSize = 1000

func (o ListOptions) limit() (int, error) {
	switch {
	case o.Limit == 0:
		return 100, nil
	case o.Limit < 0 || o.Limit > MaxPageSize:
		return 0, errclass.Invalid("limit", "limit %d is not between 1 and %d", o.Limit, MaxPageSize)
	}
	return o.Limit, nil
}

// list pages through the resources of a collection, keeping those keep
// accepts (nil: all).
func list[T any](ctx context.Context, s *Service, collection string, depth int, o ListOptions, keep func(*T) bool) (Page[T], error) {
	page := Page[T]{Items: []T{}}
	limit, err := o.limit()
	if err != nil {
		return page, err
	}
	err = s.store.View(ctx, func(tx Tx) error {
		token := o.PageToken
		for {
			// Filtering may drop items: keep reading until the page is full.
			next, err := tx.List(collection, depth, token, limit-len(page.Items), func(raw []byte) error {
				var v T
				if err := json.Unmarshal(raw, &v); err != nil {
					return fmt.Errorf("decode %s item: %w", collection, err)
				}
				if keep == nil || keep(&v) {
					page.Items = append(page.Items, v)
				}
				return nil
			})
			if err != nil {
				return err
			}
			page.NextPageToken, token = next, next
			if next == "" || len(page.Items) >= limit {
				return nil
			}
		}
	})
	return page, err
}

func get[T any](ctx context.Context, s *Service, path string, need Role) (*T, error) {
	if _, err := authorize(ctx, path, need); err != nil {
		return nil, err
	}
	var v T
	if err := s.store.View(ctx, func(tx Tx) error { return tx.Get(path, &v) }); err != nil {
		return nil, err
	}
	return &v, nil
}

func (s *Service) meta(ctx context.Context, path string) Meta {
	now := s.now()
	m := Meta{Path: path, CreatedAt: now, UpdatedAt: now}
	if p := PrincipalFrom(ctx); p != nil {
		m.CreatedBy = p.User.Name
	}
	return m
}

// requireParent checks, inside tx, that the parent resource exists and is
// what the child needs.
func requireParent(tx Tx, path string, v any) error {
	if err := tx.Get(path, v); err != nil {
		if errclass.Is(err, errclass.NotFound) {
			return notFound(path)
		}
		return err
	}
	return nil
}

// Patch changes the mutable fields of a resource; nil fields stay as they
// are. Fields a resource does not have are refused.
type Patch struct {
	Description *string           `json:"description,omitempty"`
	Folder      *string           `json:"folder,omitempty"`
	GitRemote   *string           `json:"gitRemote,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
}

func (p Patch) only(fields ...string) error {
	allowed := map[string]bool{}
	for _, f := range fields {
		allowed[f] = true
	}
	for f, set := range map[string]bool{"description": p.Description != nil, "folder": p.Folder != nil,
		"gitRemote": p.GitRemote != nil, "tags": p.Tags != nil} {
		if set && !allowed[f] {
			return errclass.Invalid(f, "field %q cannot be changed on this resource", f)
		}
	}
	return nil
}

func checkDescription(d string) error {
	if len(d) > 4096 {
		return errclass.Invalid("description", "description is %d bytes long; the limit is 4096", len(d))
	}
	return nil
}

// update applies fn to the stored resource at path and saves it.
func update[T any](ctx context.Context, s *Service, path string, fn func(*T, *Meta) error, meta func(*T) *Meta) (*T, error) {
	if _, err := authorize(ctx, path, Contributor); err != nil {
		return nil, err
	}
	var v T
	err := s.store.Update(ctx, func(tx Tx) error {
		if err := tx.Get(path, &v); err != nil {
			return err
		}
		m := meta(&v)
		if err := fn(&v, m); err != nil {
			return err
		}
		m.UpdatedAt = s.now()
		return tx.Put(path, &v)
	})
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// updateTx applies fn, inside the transaction, to the stored resource at
// path and saves it.
func updateTx[T any, PT interface {
	*T
	meta() *Meta
}](ctx context.Context, s *Service, path string, fn func(Tx, PT) error) (PT, error) {
	if _, err := authorize(ctx, path, Contributor); err != nil {
		return nil, err
	}
	v := PT(new(T))
	err := s.store.Update(ctx, func(tx Tx) error {
		if err := tx.Get(path, v); err != nil {
			return err
		}
		if err := fn(tx, v); err != nil {
			return err
		}
		v.meta().UpdatedAt = s.now()
		return tx.Put(path, v)
	})
	if err != nil {
		return nil, err
	}
	return v, nil
}

func (m *Meta) meta() *Meta { return m }

// remove deletes the container at path. Unless force, it refuses while any
// of the child collections holds something, or while something refers to
// anything inside it.
func (s *Service) remove(ctx context.Context, path string, need Role, force bool, children ...string) error {
	if _, err := authorize(ctx, path, need); err != nil {
		return err
	}
	var blobs []string
	err := s.store.Update(ctx, func(tx Tx) error {
		if ok, err := tx.Exists(path); err != nil {
			return err
		} else if !ok {
			return notFound(path)
		}
		if !force {
			for _, c := range children {
				if any, err := tx.HasAny(path + "/" + c); err != nil {
					return err
				} else if any {
					return errclass.Conflictf("%s is not empty (it has %s); delete them first or use force", path, c)
				}
			}
		}
		// Blobs held by models inside the tree may become unreferenced.
		refs, err := modelBlobsUnder(tx, path)
		if err != nil {
			return err
		}
		blobs = refs
		return tx.DeleteTree(path)
	})
	if err != nil {
		return err
	}
	s.collectBlobs(ctx, blobs...)
	return nil
}

// --- subscriptions, accounts, workspaces, projects ---

// CreateSubscription creates a subscription (administrators only).
func (s *Service) CreateSubscription(ctx context.Context, in Subscription) (*Subscription, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	if err := manifest.CheckName("name", in.Name); err != nil {
		return nil, err
	}
	if err := checkDescription(in.Description); err != nil {
		return nil, err
	}
	out := Subscription{Meta: s.meta(ctx, SubscriptionPath(in.Name)), Name: in.Name, Description: in.Description}
	err := s.store.Update(ctx, func(tx Tx) error { return tx.Create(out.Path, &out) })
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// ListSubscriptions lists the subscriptions the caller has a role in.
func (s *Service) ListSubscriptions(ctx context.Context, o ListOptions) (Page[Subscription], error) {
	p := PrincipalFrom(ctx)
	if p == nil {
		return Page[Subscription]{}, errclass.New(errclass.Unauthenticated, "", "authentication required")
	}
	return list(ctx, s, "/subscriptions", 1, o, func(v *Subscription) bool { return p.sees(v.Path) })
}

// GetSubscription reads a subscription.
func (s *Service) GetSubscription(ctx context.Context, sub string) (*Subscription, error) {
	return getVisible[Subscription](ctx, s, SubscriptionPath(sub))
}

// getVisible reads a container the caller can see (a role on it, above it,
// or inside it: a workspace reader may read its subscription's record).
func getVisible[T any](ctx context.Context, s *Service, path string) (*T, error) {
	p := PrincipalFrom(ctx)
	if p == nil {
		return nil, errclass.New(errclass.Unauthenticated, "", "authentication required")
	}
	if !p.sees(path) {
		return nil, notFound(path)
	}
	var v T
	if err := s.store.View(ctx, func(tx Tx) error { return tx.Get(path, &v) }); err != nil {
		return nil, err
	}
	return &v, nil
}

// UpdateSubscription changes a subscription's description.
func (s *Service) UpdateSubscription(ctx context.Context, sub string, p Patch) (*Subscription, error) {
	if err := p.only("description"); err != nil {
		return nil, err
	}
	return update(ctx, s, SubscriptionPath(sub), func(v *Subscription, _ *Meta) error { return applyDescription(&v.Description, p) },
		func(v *Subscription) *Meta { return &v.Meta })
}

func applyDescription(d *string, p Patch) error {
	if p.Description == nil {
		return nil
	}
	if err := checkDescription(*p.Description); err != nil {
		return err
	}
	*d = *p.Description
	return nil
}

// DeleteSubscription deletes a subscription; a non-empty one only with force.
func (s *Service) DeleteSubscription(ctx context.Context, sub string, force bool) error {
	return s.remove(ctx, SubscriptionPath(sub), Owner, force, "accounts")
}

// CreateAccount creates an experimentation or model management account.
func (s *Service) CreateAccount(ctx context.Context, sub string, in Account) (*Account, error) {
	parent := SubscriptionPath(sub)
	if _, err := authorize(ctx, parent, Contributor); err != nil {
		return nil, err
	}
	if err := manifest.CheckName("name", in.Name); err != nil {
		return nil, err
	}
	if in.Kind != Experimentation && in.Kind != ModelManagement {
		return nil, errclass.Invalid("kind", "kind %q is not %q or %q", in.Kind, Experimentation, ModelManagement)
	}
	if err := checkDescription(in.Description); err != nil {
		return nil, err
	}
	out := Account{Meta: s.meta(ctx, AccountPath(sub, in.Name)), Subscription: sub, Name: in.Name, Kind: in.Kind, Description: in.Description}
	err := s.store.Update(ctx, func(tx Tx) error {
		if err := requireParent(tx, parent, &Subscription{}); err != nil {
			return err
		}
		return tx.Create(out.Path, &out)
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAccounts lists a subscription's accounts the caller can see.
func (s *Service) ListAccounts(ctx context.Context, sub string, o ListOptions) (Page[Account], error) {
	p, err := seeParent(ctx, SubscriptionPath(sub))
	if err != nil {
		return Page[Account]{}, err
	}
	return list(ctx, s, SubscriptionPath(sub)+"/accounts", 1, o, func(v *Account) bool { return p.sees(v.Path) })
}

// seeParent checks the caller may know the container exists.
func seeParent(ctx context.Context, path string) (*Principal, error) {
	p := PrincipalFrom(ctx)
	if p == nil {
		return nil, errclass.New(errclass.Unauthenticated, "", "authentication required")
	}
	if !p.sees(path) {
		return nil, notFound(path)
	}
	return p, nil
}

// GetAccount reads an account.
func (s *Service) GetAccount(ctx context.Context, sub, acct string) (*Account, error) {
	return getVisible[Account](ctx, s, AccountPath(sub, acct))
}

// UpdateAccount changes an account's description.
func (s *Service) UpdateAccount(ctx context.Context, sub, acct string, p Patch) (*Account, error) {
	if err := p.only("description"); err != nil {
		return nil, err
	}
	return update(ctx, s, AccountPath(sub, acct), func(v *Account, _ *Meta) error { return applyDescription(&v.Description, p) },
		func(v *Account) *Meta { return &v.Meta })
}

// DeleteAccount deletes an account; a non-empty one only with force.
func (s *Service) DeleteAccount(ctx context.Context, sub, acct string, force bool) error {
	return s.remove(ctx, AccountPath(sub, acct), Contributor, force, "workspaces", "models", "manifests")
}

// account reads an account inside tx and checks its kind.
func account(tx Tx, sub, acct string, kind AccountKind) (*Account, error) {
	var a Account
	if err := requireParent(tx, AccountPath(sub, acct), &a); err != nil {
		return nil, err
	}
	if a.Kind != kind {
		return nil, errclass.New(errclass.FailedPrecondition, "account", "account %q is a %s account; this needs a %s account", acct, a.Kind, kind)
	}
	return &a, nil
}

// CreateWorkspace creates a workspace in an experimentation account.
func (s *Service) CreateWorkspace(ctx context.Context, sub, acct string, in Workspace) (*Workspace, error) {
	if _, err := authorize(ctx, AccountPath(sub, acct), Contributor); err != nil {
		return nil, err
	}
	if err := manifest.CheckName("name", in.Name); err != nil {
		return nil, err
	}
	if err := checkDescription(in.Description); err != nil {
		return nil, err
	}
	out := Workspace{Meta: s.meta(ctx, WorkspacePath(sub, acct, in.Name)), Subscription: sub, Account: acct, Name: in.Name, Description: in.Description}
	err := s.store.Update(ctx, func(tx Tx) error {
		if _, err := account(tx, sub, acct, Experimentation); err != nil {
			return err
		}
		return tx.Create(out.Path, &out)
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// ListWorkspaces lists an account's workspaces the caller can see.
func (s *Service) ListWorkspaces(ctx context.Context, sub, acct string, o ListOptions) (Page[Workspace], error) {
	p, err := seeParent(ctx, AccountPath(sub, acct))
	if err != nil {
		return Page[Workspace]{}, err
	}
	return list(ctx, s, AccountPath(sub, acct)+"/workspaces", 1, o, func(v *Workspace) bool { return p.sees(v.Path) })
}

// GetWorkspace reads a workspace.
func (s *Service) GetWorkspace(ctx context.Context, sub, acct, ws string) (*Workspace, error) {
	return getVisible[Workspace](ctx, s, WorkspacePath(sub, acct, ws))
}

// UpdateWorkspace changes a workspace's description.
func (s *Service) UpdateWorkspace(ctx context.Context, sub, acct, ws string, p Patch) (*Workspace, error) {
	if err := p.only("description"); err != nil {
		return nil, err
	}
	return update(ctx, s, WorkspacePath(sub, acct, ws), func(v *Workspace, _ *Meta) error { return applyDescription(&v.Description, p) },
		func(v *Workspace) *Meta { return &v.Meta })
}

// DeleteWorkspace deletes a workspace; a non-empty one only with force.
func (s *Service) DeleteWorkspace(ctx context.Context, sub, acct, ws string, force bool) error {
	return s.remove(ctx, WorkspacePath(sub, acct, ws), Contributor, force, "projects")
}

func checkProject(folder, remote string) error {
	if folder == "" || len(folder) > 1024 {
		return errclass.Invalid("folder", "folder %q must be 1 to 1024 characters", folder)
	}
	if len(remote) > 2048 {
		return errclass.Invalid("gitRemote", "gitRemote is longer than 2048 characters")
	}
	return nil
}

// CreateProject creates a project in a workspace.
func (s *Service) CreateProject(ctx context.Context, sub, acct, ws string, in Project) (*Project, error) {
	wsPath := WorkspacePath(sub, acct, ws)
	if _, err := authorize(ctx, wsPath, Contributor); err != nil {
		return nil, err
	}
	if err := manifest.CheckName("name", in.Name); err != nil {
		return nil, err
	}
	if in.Folder == "" {
		in.Folder = in.Name
	}
	if err := checkProject(in.Folder, in.GitRemote); err != nil {
		return nil, err
	}
	if err := checkDescription(in.Description); err != nil {
		return nil, err
	}
	out := Project{Meta: s.meta(ctx, ProjectPath(sub, acct, ws, in.Name)), Subscription: sub, Account: acct, Workspace: ws,
		Name: in.Name, Folder: in.Folder, GitRemote: in.GitRemote, Description: in.Description}
	err := s.store.Update(ctx, func(tx Tx) error {
		if err := requireParent(tx, wsPath, &Workspace{}); err != nil {
			return err
		}
		return tx.Create(out.Path, &out)
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// ListProjects lists a workspace's projects.
func (s *Service) ListProjects(ctx context.Context, sub, acct, ws string, o ListOptions) (Page[Project], error) {
	if _, err := authorize(ctx, WorkspacePath(sub, acct, ws), Reader); err != nil {
		return Page[Project]{}, err
	}
	return list[Project](ctx, s, WorkspacePath(sub, acct, ws)+"/projects", 1, o, nil)
}

// GetProject reads a project.
func (s *Service) GetProject(ctx context.Context, sub, acct, ws, proj string) (*Project, error) {
	return get[Project](ctx, s, ProjectPath(sub, acct, ws, proj), Reader)
}

// UpdateProject changes a project's description, folder or git remote.
func (s *Service) UpdateProject(ctx context.Context, sub, acct, ws, proj string, p Patch) (*Project, error) {
	if err := p.only("description", "folder", "gitRemote"); err != nil {
		return nil, err
	}
	return update(ctx, s, ProjectPath(sub, acct, ws, proj), func(v *Project, _ *Meta) error {
		if p.Folder != nil {
			v.Folder = *p.Folder
		}
		if p.GitRemote != nil {
			v.GitRemote = *p.GitRemote
		}
		if err := checkProject(v.Folder, v.GitRemote); err != nil {
			return err
		}
		return applyDescription(&v.Description, p)
	}, func(v *Project) *Meta { return &v.Meta })
}

// DeleteProject deletes a project.
func (s *Service) DeleteProject(ctx context.Context, sub, acct, ws, proj string) error {
	return s.remove(ctx, ProjectPath(sub, acct, ws, proj), Contributor, true)
}
