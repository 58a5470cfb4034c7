package cloud

import (
	"context"
	"io"
)

// Store keeps the cloud's state: a tree of JSON resources addressed by path,
// plus the indexes the services need. It is implemented over bbolt in
// cloud/internal/boltstore. Every method of Tx works inside one transaction;
// values returned are copies that outlive it.
type Store interface {
	View(ctx context.Context, fn func(Tx) error) error
	Update(ctx context.Context, fn func(Tx) error) error
	Close() error
}

// Tx is one store transaction.
type Tx interface {
	// Get decodes the resource at path into v; errclass.NotFound if absent.
	Get(path string, v any) error
	// Exists reports whether a resource is stored at path.
	Exists(path string) (bool, error)
	// Create stores v at path; errclass.Conflict if something is there.
	Create(path string, v any) error
	// Put stores v at path, replacing what is there.
	Put(path string, v any) error
	// Delete removes the resource at path (not what is below it);
	// errclass.NotFound if absent.
	Delete(path string) error
	// DeleteTree removes path, everything below it, role assignments on
	// scopes inside it, and references made by resources inside it.
	DeleteTree(path string) error
	// List calls fn for the resources path+"/"+s1+"/"+...+"/"+sN with N =
	// depth segments below the collection path, in key order, starting
	// after the opaque page token, at most limit of them. It returns the
	// token of the next page, or "" on the last one.
	List(collection string, depth int, pageToken string, limit int, fn func(raw []byte) error) (next string, err error)
	// HasAny reports whether any resource is stored below the collection path.
	HasAny(collection string) (bool, error)
	// NextSeq increments and returns the counter named key (from 1).
	NextSeq(key string) (uint64, error)

	// AddRef records that referrer uses target; RemoveRefs forgets every
	// reference referrer made; Referrers lists who uses target or anything
	// below it.
	AddRef(target, referrer string) error
	RemoveRefs(referrer string) error
	Referrers(target string, limit int) ([]string, error)

	// Grant sets user's role on scope; Revoke removes it (NotFound if none).
	Grant(a RoleAssignment) error
	Revoke(scope, user string) error
	// Grants lists role assignments, of one user if user != "", on one
	// scope if scope != "".
	Grants(user, scope string) ([]RoleAssignment, error)

	// Tokens are indexed by id.
	PutToken(t Token) error
	GetToken(id string) (Token, error)
	DeleteToken(id string) error
	TokensOf(user string) ([]Token, error)
}

// Blobs keeps content-addressed files (model files, later run outputs).
type Blobs interface {
	// Write streams r into a new blob and returns its digest ("sha256:<hex>")
	// and size. At most limit bytes are read (errclass.TooLarge beyond).
	// The blob becomes visible only when complete and fsynced. check, if
	// not nil, sees the stored file before it becomes visible and can refuse it.
	Write(ctx context.Context, r io.Reader, limit int64, check func(path string) error) (digest string, size int64, err error)
	// Open opens a blob for reading; errclass.NotFound if absent.
	Open(digest string) (io.ReadSeekCloser, error)
	// Delete removes a blob; deleting a missing blob is not an error.
	Delete(digest string) error
	// Path is the blob's file, for readers that need a path (image builds).
	Path(digest string) (string, error)
}
