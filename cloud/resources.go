// Package cloud is mlfleet's control plane: its domain types (the resources the
// REST API serves), the interfaces its adapters implement, and the services
// that enforce tenancy, authorization and validation.
//
// Resources live in a tree addressed by paths, Azure ML style:
//
//	/subscriptions/{sub}
//	/subscriptions/{sub}/accounts/{acct}                      (experimentation or model management)
//	/subscriptions/{sub}/accounts/{acct}/workspaces/{ws}      (experimentation accounts)
//	/subscriptions/{sub}/accounts/{acct}/workspaces/{ws}/projects/{proj}
//	/subscriptions/{sub}/accounts/{acct}/models/{name}/versions/{v}     (model management accounts)
//	/subscriptions/{sub}/accounts/{acct}/manifests/{name}/versions/{v}
//	/subscriptions/{sub}/accounts/{acct}/operations/{id}
//
// Roles granted on a subscription, account or workspace path apply to
// everything below it.
package cloud

import (
	"time"

	"github.com/mlfleet/mlfleet/shared/manifest"
)

// AccountKind tells the two kinds of account a subscription holds.
type AccountKind string

// Account kinds.
const (
	Experimentation AccountKind = "experimentation"
	ModelManagement AccountKind = "modelmanagement"
)

// Meta is what every stored resource carries.
type Meta struct {
	// Path is the resource's full path, its identity (read-only).
	Path      string    `json:"path"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	CreatedBy string    `json:"createdBy,omitempty"`
}

// Subscription is the top-level tenant.
type Subscription struct {
	Meta
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

// Account is an experimentation or a model management account.
type Account struct {
	Meta
	Subscription string      `json:"subscription"`
	Name         string      `json:"name"`
	Kind         AccountKind `json:"kind"`
	Description  string      `json:"description,omitempty"`
}

// Workspace groups projects inside an experimentation account.
type Workspace struct {
	Meta
	Subscription string `json:"subscription"`
	Account      string `json:"account"`
	Name         string `json:"name"`
	Description  string `json:"description,omitempty"`
}

// Project is a folder of files (optionally a git repository) inside a workspace.
type Project struct {
	Meta
	Subscription string `json:"subscription"`
	Account      string `json:"account"`
	Workspace    string `json:"workspace"`
	Name         string `json:"name"`
	Folder       string `json:"folder"`
	GitRemote    string `json:"gitRemote,omitempty"`
	Description  string `json:"description,omitempty"`
}

// Model is one registered version of a model file.
type Model struct {
	Meta
	Subscription string            `json:"subscription"`
	Account      string            `json:"account"`
	Name         string            `json:"name"`
	Version      int               `json:"version"`
	Digest       string            `json:"digest"` // "sha256:<hex>"
	Size         int64             `json:"size"`
	Format       string            `json:"format"` // "onnx" or "file"
	Description  string            `json:"description,omitempty"`
	Tags         map[string]string `json:"tags,omitempty"`
	RunID        string            `json:"runId,omitempty"` // lineage: the run that produced it
	// IO is what the model file declares as inputs and outputs (ONNX).
	IO *ModelIO `json:"io,omitempty"`
}

// ModelIO lists a model's declared inputs and outputs.
type ModelIO struct {
	Inputs  []manifest.Field `json:"inputs"`
	Outputs []manifest.Field `json:"outputs"`
	Opsets  map[string]int64 `json:"opsets,omitempty"`
}

// Manifest is one stored version of a manifest.
type Manifest struct {
	Meta
	Subscription string             `json:"subscription"`
	Account      string             `json:"account"`
	Name         string             `json:"name"`
	Version      int                `json:"version"`
	Digest       string             `json:"digest"` // digest of the canonical spec
	Spec         *manifest.Manifest `json:"spec"`
}

// Role is a set of permissions granted on a scope.
type Role string

// Roles, from most to least powerful.
const (
	Owner       Role = "Owner"       // everything, including granting roles
	Contributor Role = "Contributor" // create, change and delete resources
	Reader      Role = "Reader"      // read only
)

// RoleAssignment grants a user a role on a scope (a subscription, account or
// workspace path) and everything below it.
type RoleAssignment struct {
	Scope     string    `json:"scope"`
	User      string    `json:"user"`
	Role      Role      `json:"role"`
	CreatedAt time.Time `json:"createdAt"`
	CreatedBy string    `json:"createdBy,omitempty"`
}

// User is a person or robot that calls the API.
type User struct {
	Name      string    `json:"name"`
	Email     string    `json:"email,omitempty"`
	Admin     bool      `json:"admin,omitempty"` // may do everything, everywhere
	CreatedAt time.Time `json:"createdAt"`
}

// Token is an API token. Its secret is shown once, at creation, and stored
// only as a hash.
type Token struct {
	ID        string     `json:"id"`
	User      string     `json:"user"`
	Name      string     `json:"name,omitempty"`
	CreatedAt time.Time  `json:"createdAt"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	// Secret is set only in the answer to a create call.
	Secret string `json:"token,omitempty"`
	// Hash is the stored sha256 of the secret; never serialized to clients.
	Hash string `json:"-"`
}

// OperationStatus is where an operation is in its life.
type OperationStatus string

// Operation statuses.
const (
	OpQueued    OperationStatus = "Queued"
	OpRunning   OperationStatus = "Running"
	OpSucceeded OperationStatus = "Succeeded"
	OpFailed    OperationStatus = "Failed"
)

// Operation is long work accepted with 202 and polled by clients.
type Operation struct {
	Meta
	ID     string          `json:"id"`
	Kind   string          `json:"kind"`   // e.g. "image.build"
	Target string          `json:"target"` // path of the resource it makes or changes
	Status OperationStatus `json:"status"`
	Error  *APIError       `json:"error,omitempty"`
	Log    []string        `json:"log,omitempty"`
	Result string          `json:"result,omitempty"` // path of the resulting resource
	Done   bool            `json:"done"`
}

// APIError is the body of every error answer: {"error": {...}}.
type APIError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// ErrorBody wraps APIError as the REST API sends it.
type ErrorBody struct {
	Error APIError `json:"error"`
}

// Page is a page of a list answer.
type Page[T any] struct {
	Items         []T    `json:"items"`
	NextPageToken string `json:"nextPageToken,omitempty"`
}
