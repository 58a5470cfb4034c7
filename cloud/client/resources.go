package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/shared/errclass"
)

// ListOptions selects one page of a list.
type ListOptions struct {
	Limit     int    // page size; 0 means the server's default
	PageToken string // from the previous page's NextPageToken
}

func (o ListOptions) query() url.Values {
	q := url.Values{}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.PageToken != "" {
		q.Set("pageToken", o.PageToken)
	}
	return q
}

// maxPages bounds ListAll loops against a server that never ends a list.
const maxPages = 100000

// ListAll fetches every page that list returns, following NextPageToken.
func ListAll[T any](ctx context.Context, list func(context.Context, ListOptions) (*cloud.Page[T], error)) ([]T, error) {
	var all []T
	opts := ListOptions{}
	seen := map[string]bool{}
	for range maxPages {
		p, err := list(ctx, opts)
		if err != nil {
			return nil, err
		}
		all = append(all, p.Items...)
		if p.NextPageToken == "" {
			return all, nil
		}
		if seen[p.NextPageToken] {
			return nil, errclass.New(errclass.Unknown, "nextPageToken", "server repeated page token %q", p.NextPageToken)
		}
		seen[p.NextPageToken] = true
		opts.PageToken = p.NextPageToken
	}
	return nil, errclass.New(errclass.Unknown, "nextPageToken", "list did not end after %d pages", maxPages)
}

const apiPrefix = "/api/v1"

func subPath(sub string) string { return apiPrefix + pathOf("subscriptions", sub) }
func acctPath(sub, acct string) string {
	return apiPrefix + pathOf("subscriptions", sub, "accounts", acct)
}
func wsPath(sub, acct, ws string) string {
	return apiPrefix + pathOf("subscriptions", sub, "accounts", acct, "workspaces", ws)
}

func forceQuery(force bool) url.Values {
	if !force {
		return nil
	}
	return url.Values{"force": {"true"}}
}

// Health checks GET /healthz.
func (c *Client) Health(ctx context.Context) error {
	var out struct {
		Status string `json:"status"`
	}
	return c.doJSON(ctx, "GET", "/healthz", nil, nil, &out)
}

// OpenAPI returns the server's OpenAPI document.
func (c *Client) OpenAPI(ctx context.Context) (json.RawMessage, error) {
	var out json.RawMessage
	if err := c.doJSON(ctx, "GET", apiPrefix+"/openapi.json", nil, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// WhoAmI is the answer of GET /api/v1/whoami.
type WhoAmI struct {
	User            cloud.User             `json:"user"`
	RoleAssignments []cloud.RoleAssignment `json:"roleAssignments"`
}

// WhoAmI tells who the token belongs to and what roles that user has.
func (c *Client) WhoAmI(ctx context.Context) (*WhoAmI, error) {
	var out WhoAmI
	if err := c.doJSON(ctx, "GET", apiPrefix+"/whoami", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ---- users and tokens ----

// UserCreate is the body of CreateUser.
type UserCreate struct {
	Name  string `json:"name"`
	Email string `json:"email,omitempty"`
	Admin bool   `json:"admin,omitempty"`
}

// CreateUser creates a user (admin only).
func (c *Client) CreateUser(ctx context.Context, in UserCreate) (*cloud.User, error) {
	var out cloud.User
	if err := c.doJSON(ctx, "POST", apiPrefix+"/users", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListUsers returns one page of users (admin only).
func (c *Client) ListUsers(ctx context.Context, opts ListOptions) (*cloud.Page[cloud.User], error) {
	var out cloud.Page[cloud.User]
	if err := c.doJSON(ctx, "GET", apiPrefix+"/users", opts.query(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAllUsers returns every user.
func (c *Client) ListAllUsers(ctx context.Context) ([]cloud.User, error) {
	return ListAll(ctx, c.ListUsers)
}

// GetUser returns one user.
func (c *Client) GetUser(ctx context.Context, user string) (*cloud.User, error) {
	var out cloud.User
	if err := c.doJSON(ctx, "GET", apiPrefix+pathOf("users", user), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteUser deletes a user with its tokens and role assignments.
func (c *Client) DeleteUser(ctx context.Context, user string) error {
	return c.doJSON(ctx, "DELETE", apiPrefix+pathOf("users", user), nil, nil, nil)
}

// TokenCreate is the body of CreateToken.
type TokenCreate struct {
	Name           string `json:"name,omitempty"`
	ExpiresInHours int    `json:"expiresInHours,omitempty"`
}

// CreateToken makes a token for user; the answer's Secret is shown only this once.
func (c *Client) CreateToken(ctx context.Context, user string, in TokenCreate) (*cloud.Token, error) {
	var out cloud.Token
	if err := c.doJSON(ctx, "POST", apiPrefix+pathOf("users", user, "tokens"), nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListTokens returns one page of user's tokens (without secrets).
func (c *Client) ListTokens(ctx context.Context, user string, opts ListOptions) (*cloud.Page[cloud.Token], error) {
	var out cloud.Page[cloud.Token]
	if err := c.doJSON(ctx, "GET", apiPrefix+pathOf("users", user, "tokens"), opts.query(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAllTokens returns every token of user.
func (c *Client) ListAllTokens(ctx context.Context, user string) ([]cloud.Token, error) {
	return ListAll(ctx, func(ctx context.Context, o ListOptions) (*cloud.Page[cloud.Token], error) {
		return c.ListTokens(ctx, user, o)
	})
}

// DeleteToken revokes one token of user.
func (c *Client) DeleteToken(ctx context.Context, user, id string) error {
	return c.doJSON(ctx, "DELETE", apiPrefix+pathOf("users", user, "tokens", id), nil, nil, nil)
}

// ---- subscriptions ----

// SubscriptionCreate is the body of CreateSubscription.
type SubscriptionCreate struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// Update is the body of the PATCH calls of subscriptions, accounts and
// workspaces: nil fields are left unchanged.
type Update struct {
	Description *string `json:"description,omitempty"`
}

// CreateSubscription creates a subscription (admin only).
func (c *Client) CreateSubscription(ctx context.Context, in SubscriptionCreate) (*cloud.Subscription, error) {
	var out cloud.Subscription
	if err := c.doJSON(ctx, "POST", apiPrefix+"/subscriptions", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListSubscriptions returns one page of the subscriptions the caller has a role in.
func (c *Client) ListSubscriptions(ctx context.Context, opts ListOptions) (*cloud.Page[cloud.Subscription], error) {
	var out cloud.Page[cloud.Subscription]
	if err := c.doJSON(ctx, "GET", apiPrefix+"/subscriptions", opts.query(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAllSubscriptions returns every subscription the caller has a role in.
func (c *Client) ListAllSubscriptions(ctx context.Context) ([]cloud.Subscription, error) {
	return ListAll(ctx, c.ListSubscriptions)
}

// GetSubscription returns one subscription.
func (c *Client) GetSubscription(ctx context.Context, sub string) (*cloud.Subscription, error) {
	var out cloud.Subscription
	if err := c.doJSON(ctx, "GET", subPath(sub), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateSubscription changes a subscription's description.
func (c *Client) UpdateSubscription(ctx context.Context, sub string, in Update) (*cloud.Subscription, error) {
	var out cloud.Subscription
	if err := c.doJSON(ctx, "PATCH", subPath(sub), nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteSubscription deletes a subscription; force deletes what it contains too.
func (c *Client) DeleteSubscription(ctx context.Context, sub string, force bool) error {
	return c.doJSON(ctx, "DELETE", subPath(sub), forceQuery(force), nil, nil)
}

// ---- accounts ----

// AccountCreate is the body of CreateAccount.
type AccountCreate struct {
	Name        string            `json:"name"`
	Kind        cloud.AccountKind `json:"kind"`
	Description string            `json:"description,omitempty"`
}

// CreateAccount creates an account in sub.
func (c *Client) CreateAccount(ctx context.Context, sub string, in AccountCreate) (*cloud.Account, error) {
	var out cloud.Account
	if err := c.doJSON(ctx, "POST", subPath(sub)+"/accounts", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAccounts returns one page of sub's accounts.
func (c *Client) ListAccounts(ctx context.Context, sub string, opts ListOptions) (*cloud.Page[cloud.Account], error) {
	var out cloud.Page[cloud.Account]
	if err := c.doJSON(ctx, "GET", subPath(sub)+"/accounts", opts.query(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAllAccounts returns every account of sub.
func (c *Client) ListAllAccounts(ctx context.Context, sub string) ([]cloud.Account, error) {
	return ListAll(ctx, func(ctx context.Context, o ListOptions) (*cloud.Page[cloud.Account], error) {
		return c.ListAccounts(ctx, sub, o)
	})
}

// GetAccount returns one account.
func (c *Client) GetAccount(ctx context.Context, sub, acct string) (*cloud.Account, error) {
	var out cloud.Account
	if err := c.doJSON(ctx, "GET", acctPath(sub, acct), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateAccount changes an account's description.
func (c *Client) UpdateAccount(ctx context.Context, sub, acct string, in Update) (*cloud.Account, error) {
	var out cloud.Account
	if err := c.doJSON(ctx, "PATCH", acctPath(sub, acct), nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteAccount deletes an account; force deletes what it contains too.
func (c *Client) DeleteAccount(ctx context.Context, sub, acct string, force bool) error {
	return c.doJSON(ctx, "DELETE", acctPath(sub, acct), forceQuery(force), nil, nil)
}

// ---- workspaces ----

// WorkspaceCreate is the body of CreateWorkspace.
type WorkspaceCreate struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// CreateWorkspace creates a workspace in an experimentation account.
func (c *Client) CreateWorkspace(ctx context.Context, sub, acct string, in WorkspaceCreate) (*cloud.Workspace, error) {
	var out cloud.Workspace
	if err := c.doJSON(ctx, "POST", acctPath(sub, acct)+"/workspaces", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListWorkspaces returns one page of an account's workspaces.
func (c *Client) ListWorkspaces(ctx context.Context, sub, acct string, opts ListOptions) (*cloud.Page[cloud.Workspace], error) {
	var out cloud.Page[cloud.Workspace]
	if err := c.doJSON(ctx, "GET", acctPath(sub, acct)+"/workspaces", opts.query(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAllWorkspaces returns every workspace of an account.
func (c *Client) ListAllWorkspaces(ctx context.Context, sub, acct string) ([]cloud.Workspace, error) {
	return ListAll(ctx, func(ctx context.Context, o ListOptions) (*cloud.Page[cloud.Workspace], error) {
		return c.ListWorkspaces(ctx, sub, acct, o)
	})
}

// GetWorkspace returns one workspace.
func (c *Client) GetWorkspace(ctx context.Context, sub, acct, ws string) (*cloud.Workspace, error) {
	var out cloud.Workspace
	if err := c.doJSON(ctx, "GET", wsPath(sub, acct, ws), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateWorkspace changes a workspace's description.
func (c *Client) UpdateWorkspace(ctx context.Context, sub, acct, ws string, in Update) (*cloud.Workspace, error) {
	var out cloud.Workspace
	if err := c.doJSON(ctx, "PATCH", wsPath(sub, acct, ws), nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteWorkspace deletes a workspace; force deletes its projects too.
func (c *Client) DeleteWorkspace(ctx context.Context, sub, acct, ws string, force bool) error {
	return c.doJSON(ctx, "DELETE", wsPath(sub, acct, ws), forceQuery(force), nil, nil)
}

// ---- projects ----

// ProjectCreate is the body of CreateProject.
type ProjectCreate struct {
	Name        string `json:"name"`
	Folder      string `json:"folder,omitempty"`
	GitRemote   string `json:"gitRemote,omitempty"`
	Description string `json:"description,omitempty"`
}

// ProjectUpdate is the body of UpdateProject: nil fields are left unchanged.
type ProjectUpdate struct {
	Folder      *string `json:"folder,omitempty"`
	GitRemote   *string `json:"gitRemote,omitempty"`
	Description *string `json:"description,omitempty"`
}

func projPath(sub, acct, ws, proj string) string {
	return wsPath(sub, acct, ws) + pathOf("projects", proj)
}

// CreateProject creates a project in a workspace.
func (c *Client) CreateProject(ctx context.Context, sub, acct, ws string, in ProjectCreate) (*cloud.Project, error) {
	var out cloud.Project
	if err := c.doJSON(ctx, "POST", wsPath(sub, acct, ws)+"/projects", nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListProjects returns one page of a workspace's projects.
func (c *Client) ListProjects(ctx context.Context, sub, acct, ws string, opts ListOptions) (*cloud.Page[cloud.Project], error) {
	var out cloud.Page[cloud.Project]
	if err := c.doJSON(ctx, "GET", wsPath(sub, acct, ws)+"/projects", opts.query(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAllProjects returns every project of a workspace.
func (c *Client) ListAllProjects(ctx context.Context, sub, acct, ws string) ([]cloud.Project, error) {
	return ListAll(ctx, func(ctx context.Context, o ListOptions) (*cloud.Page[cloud.Project], error) {
		return c.ListProjects(ctx, sub, acct, ws, o)
	})
}

// GetProject returns one project.
func (c *Client) GetProject(ctx context.Context, sub, acct, ws, proj string) (*cloud.Project, error) {
	var out cloud.Project
	if err := c.doJSON(ctx, "GET", projPath(sub, acct, ws, proj), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UpdateProject changes a project.
func (c *Client) UpdateProject(ctx context.Context, sub, acct, ws, proj string, in ProjectUpdate) (*cloud.Project, error) {
	var out cloud.Project
	if err := c.doJSON(ctx, "PATCH", projPath(sub, acct, ws, proj), nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteProject deletes a project.
func (c *Client) DeleteProject(ctx context.Context, sub, acct, ws, proj string, force bool) error {
	return c.doJSON(ctx, "DELETE", projPath(sub, acct, ws, proj), forceQuery(force), nil, nil)
}

// ---- role assignments ----

// Scope is where a role is granted: a subscription, an account in it, or a
// workspace in that account.
type Scope struct {
	Subscription string
	Account      string
	Workspace    string
}

// Path returns the scope's resource path ("/subscriptions/s/accounts/a").
func (s Scope) Path() string {
	p := pathOf("subscriptions", s.Subscription)
	if s.Account != "" {
		p += pathOf("accounts", s.Account)
		if s.Workspace != "" {
			p += pathOf("workspaces", s.Workspace)
		}
	}
	return p
}

func (s Scope) check() error {
	switch {
	case s.Subscription == "":
		return errclass.Invalid("subscription", "scope needs a subscription")
	case s.Workspace != "" && s.Account == "":
		return errclass.Invalid("account", "scope with workspace %q needs an account", s.Workspace)
	}
	return nil
}

// ListRoleAssignments returns one page of the role assignments on scope.
func (c *Client) ListRoleAssignments(ctx context.Context, scope Scope, opts ListOptions) (*cloud.Page[cloud.RoleAssignment], error) {
	if err := scope.check(); err != nil {
		return nil, err
	}
	var out cloud.Page[cloud.RoleAssignment]
	if err := c.doJSON(ctx, "GET", apiPrefix+scope.Path()+"/roleAssignments", opts.query(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAllRoleAssignments returns every role assignment on scope.
func (c *Client) ListAllRoleAssignments(ctx context.Context, scope Scope) ([]cloud.RoleAssignment, error) {
	return ListAll(ctx, func(ctx context.Context, o ListOptions) (*cloud.Page[cloud.RoleAssignment], error) {
		return c.ListRoleAssignments(ctx, scope, o)
	})
}

// AssignRole grants user role on scope, replacing any role user had there.
func (c *Client) AssignRole(ctx context.Context, scope Scope, user string, role cloud.Role) (*cloud.RoleAssignment, error) {
	if err := scope.check(); err != nil {
		return nil, err
	}
	var out cloud.RoleAssignment
	body := struct {
		Role cloud.Role `json:"role"`
	}{role}
	if err := c.doJSON(ctx, "PUT", apiPrefix+scope.Path()+pathOf("roleAssignments", user), nil, body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RemoveRole removes user's role on scope.
func (c *Client) RemoveRole(ctx context.Context, scope Scope, user string) error {
	if err := scope.check(); err != nil {
		return err
	}
	return c.doJSON(ctx, "DELETE", apiPrefix+scope.Path()+pathOf("roleAssignments", user), nil, nil, nil)
}

// ---- operations ----

// ListOperations returns one page of an account's operations.
func (c *Client) ListOperations(ctx context.Context, sub, acct string, opts ListOptions) (*cloud.Page[cloud.Operation], error) {
	var out cloud.Page[cloud.Operation]
	if err := c.doJSON(ctx, "GET", acctPath(sub, acct)+"/operations", opts.query(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAllOperations returns every operation of an account.
func (c *Client) ListAllOperations(ctx context.Context, sub, acct string) ([]cloud.Operation, error) {
	return ListAll(ctx, func(ctx context.Context, o ListOptions) (*cloud.Page[cloud.Operation], error) {
		return c.ListOperations(ctx, sub, acct, o)
	})
}

// GetOperation returns one operation.
func (c *Client) GetOperation(ctx context.Context, sub, acct, id string) (*cloud.Operation, error) {
	var out cloud.Operation
	if err := c.doJSON(ctx, "GET", acctPath(sub, acct)+pathOf("operations", id), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// WaitOperation polls an operation every interval until it is done or ctx
// ends, and returns its last state. A failed operation is returned with a nil
// error: look at its Status and Error.
func (c *Client) WaitOperation(ctx context.Context, sub, acct, id string, interval time.Duration) (*cloud.Operation, error) {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		op, err := c.GetOperation(ctx, sub, acct, id)
		if err != nil {
			return nil, err
		}
		if op.Done {
			return op, nil
		}
		select {
		case <-ctx.Done():
			return op, fmt.Errorf("wait for operation %q: %w", id, ctx.Err())
		case <-t.C:
		}
	}
}
