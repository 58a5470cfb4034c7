package cloud

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"strings"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// Principal is the authenticated caller of a request.
type Principal struct {
	User   User
	Grants []RoleAssignment
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal ctx carries, or nil.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

func rank(r Role) int {
	switch r {
	case Reader:
		return 1
	case Contributor:
		return 2
	case Owner:
		return 3
	}
	return 0
}

// RoleOn returns the strongest role p holds on path through grants on it or
// its ancestors ("" if none).
func (p *Principal) RoleOn(path string) Role {
	var best Role
	for _, g := range p.Grants {
		if isAncestorOrSelf(g.Scope, path) && rank(g.Role) > rank(best) {
			best = g.Role
		}
	}
	return best
}

// sees reports whether p may know path exists: a role on it or above, or
// any grant below it.
func (p *Principal) sees(path string) bool {
	if p.User.Admin {
		return true
	}
	for _, g := range p.Grants {
		if isAncestorOrSelf(g.Scope, path) || isAncestorOrSelf(path, g.Scope) {
			return true
		}
	}
	return false
}

func notFound(path string) error { return errclass.NotFoundf("%s not found", path) }

// authorize checks that the caller holds at least role need on path. A caller
// who may not even know the path exists gets NotFound, never
// PermissionDenied, so names do not leak across tenants.
func authorize(ctx context.Context, path string, need Role) (*Principal, error) {
	p := PrincipalFrom(ctx)
	if p == nil {
		return nil, errclass.New(errclass.Unauthenticated, "", "authentication required")
	}
	if p.User.Admin || rank(p.RoleOn(path)) >= rank(need) {
		return p, nil
	}
	if p.sees(path) {
		return nil, errclass.New(errclass.PermissionDenied, "", "%s on %s requires role %s", p.User.Name, path, need)
	}
	return nil, notFound(path)
}

// requireAdmin checks that the caller is an administrator.
func requireAdmin(ctx context.Context) (*Principal, error) {
	p := PrincipalFrom(ctx)
	if p == nil {
		return nil, errclass.New(errclass.Unauthenticated, "", "authentication required")
	}
	if !p.User.Admin {
		return nil, errclass.New(errclass.PermissionDenied, "", "only administrators may do this")
	}
	return p, nil
}

// Token secrets look like mlf_<id>_<secret>: the id finds the record, the
// whole string's sha256 is compared with the stored hash.
const tokenPrefix = "mlf_"

func newTokenSecret() (id, secret string, err error) {
	var idb [8]byte
	var sb [32]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return "", "", err
	}
	if _, err := rand.Read(sb[:]); err != nil {
		return "", "", err
	}
	id = hex.EncodeToString(idb[:])
	return id, tokenPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(sb[:]), nil
}

func hashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

func parseTokenSecret(secret string) (id string, ok bool) {
	rest, ok := strings.CutPrefix(secret, tokenPrefix)
	if !ok {
		return "", false
	}
	id, _, ok = strings.Cut(rest, "_")
	return id, ok && len(id) == 16
}

// Authenticate resolves a bearer token to its principal.
func (s *Service) Authenticate(ctx context.Context, secret string) (*Principal, error) {
	unauth := errclass.New(errclass.Unauthenticated, "", "invalid or expired token")
	id, ok := parseTokenSecret(secret)
	if !ok {
		return nil, unauth
	}
	p := &Principal{}
	err := s.store.View(ctx, func(tx Tx) error {
		tok, err := tx.GetToken(id)
		if err != nil {
			return unauth
		}
		if subtle.ConstantTimeCompare([]byte(tok.Hash), []byte(hashSecret(secret))) != 1 {
			return unauth
		}
		if tok.ExpiresAt != nil && s.now().After(*tok.ExpiresAt) {
			return unauth
		}
		if err := tx.Get(userPath(tok.User), &p.User); err != nil {
			return unauth
		}
		p.Grants, err = tx.Grants(tok.User, "")
		return err
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

func userPath(name string) string { return "/users/" + name }

func checkRole(r Role) error {
	if rank(r) == 0 {
		return errclass.Invalid("role", "role %q is not one of Owner, Contributor, Reader", r)
	}
	return nil
}
