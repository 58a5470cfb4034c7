package cloud

import (
	"context"
	"net/mail"
	"time"

	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/manifest"
)

// MaxTokenTTL bounds how long a token may live.
const MaxTokenTTL = 5 * 365 * 24 * time.Hour

// Init creates the first administrator and a token for it. It refuses once
// any user exists.
func (s *Service) Init(ctx context.Context, name, email string) (*Token, error) {
	u, err := newUser(User{Name: name, Email: email, Admin: true}, s.now())
	if err != nil {
		return nil, err
	}
	var tok *Token
	err = s.store.Update(ctx, func(tx Tx) error {
		if any, err := tx.HasAny("/users"); err != nil {
			return err
		} else if any {
			return errclass.Conflictf("the cloud is already initialized: it has users")
		}
		if err := tx.Create(userPath(u.Name), u); err != nil {
			return err
		}
		tok, err = s.newToken(tx, u.Name, "init", 0)
		return err
	})
	return tok, err
}

func newUser(in User, now time.Time) (*User, error) {
	if err := manifest.CheckName("name", in.Name); err != nil {
		return nil, err
	}
	if in.Email != "" {
		if a, err := mail.ParseAddress(in.Email); err != nil || a.Address != in.Email {
			return nil, errclass.Invalid("email", "email %q is not an address", in.Email)
		}
	}
	return &User{Name: in.Name, Email: in.Email, Admin: in.Admin, CreatedAt: now}, nil
}

func (s *Service) newToken(tx Tx, user, name string, ttl time.Duration) (*Token, error) {
	if len(name) > 128 {
		return nil, errclass.Invalid("name", "token name is longer than 128 characters")
	}
	if ttl < 0 || ttl > MaxTokenTTL {
		return nil, errclass.Invalid("expiresInHours", "token lifetime %s is not between 0 (no expiry) and %s", ttl, MaxTokenTTL)
	}
	id, secret, err := newTokenSecret()
	if err != nil {
		return nil, err
	}
	t := Token{ID: id, User: user, Name: name, CreatedAt: s.now(), Hash: hashSecret(secret)}
	if ttl > 0 {
		exp := t.CreatedAt.Add(ttl)
		t.ExpiresAt = &exp
	}
	if err := tx.PutToken(t); err != nil {
		return nil, err
	}
	t.Secret = secret
	return &t, nil
}

// Whoami returns the caller and their role assignments.
func (s *Service) Whoami(ctx context.Context) (*User, []RoleAssignment, error) {
	p := PrincipalFrom(ctx)
	if p == nil {
		return nil, nil, errclass.New(errclass.Unauthenticated, "", "authentication required")
	}
	u := p.User
	g := append([]RoleAssignment{}, p.Grants...)
	return &u, g, nil
}

// CreateUser creates a user (administrators only).
func (s *Service) CreateUser(ctx context.Context, in User) (*User, error) {
	if _, err := requireAdmin(ctx); err != nil {
		return nil, err
	}
	u, err := newUser(in, s.now())
	if err != nil {
		return nil, err
	}
	if err := s.store.Update(ctx, func(tx Tx) error { return tx.Create(userPath(u.Name), u) }); err != nil {
		return nil, err
	}
	return u, nil
}

// ListUsers lists users (administrators only).
func (s *Service) ListUsers(ctx context.Context, o ListOptions) (Page[User], error) {
	if _, err := requireAdmin(ctx); err != nil {
		return Page[User]{}, err
	}
	return list[User](ctx, s, "/users", 1, o, nil)
}

// selfOrAdmin lets a user act on themselves and administrators on anyone.
// Others get NotFound: user names do not leak.
func selfOrAdmin(ctx context.Context, user string) error {
	p := PrincipalFrom(ctx)
	if p == nil {
		return errclass.New(errclass.Unauthenticated, "", "authentication required")
	}
	if p.User.Admin || p.User.Name == user {
		return nil
	}
	return notFound(userPath(user))
}

// GetUser reads a user (themselves, or anyone for administrators).
func (s *Service) GetUser(ctx context.Context, name string) (*User, error) {
	if err := selfOrAdmin(ctx, name); err != nil {
		return nil, err
	}
	var u User
	if err := s.store.View(ctx, func(tx Tx) error { return tx.Get(userPath(name), &u) }); err != nil {
		return nil, err
	}
	return &u, nil
}

// DeleteUser deletes a user with their tokens and role assignments.
func (s *Service) DeleteUser(ctx context.Context, name string) error {
	p, err := requireAdmin(ctx)
	if err != nil {
		return err
	}
	if p.User.Name == name {
		return errclass.New(errclass.FailedPrecondition, "user", "administrators cannot delete themselves")
	}
	return s.store.Update(ctx, func(tx Tx) error {
		if err := tx.Delete(userPath(name)); err != nil {
			return err
		}
		toks, err := tx.TokensOf(name)
		if err != nil {
			return err
		}
		for _, t := range toks {
			if err := tx.DeleteToken(t.ID); err != nil {
				return err
			}
		}
		grants, err := tx.Grants(name, "")
		if err != nil {
			return err
		}
		for _, g := range grants {
			if err := tx.Revoke(g.Scope, name); err != nil {
				return err
			}
		}
		return nil
	})
}

// CreateToken makes a token for user; its secret is in the answer only.
func (s *Service) CreateToken(ctx context.Context, user, name string, ttl time.Duration) (*Token, error) {
	if err := selfOrAdmin(ctx, user); err != nil {
		return nil, err
	}
	var tok *Token
	err := s.store.Update(ctx, func(tx Tx) error {
		if ok, err := tx.Exists(userPath(user)); err != nil {
			return err
		} else if !ok {
			return notFound(userPath(user))
		}
		var err error
		tok, err = s.newToken(tx, user, name, ttl)
		return err
	})
	return tok, err
}

// ListTokens lists a user's tokens, without secrets.
func (s *Service) ListTokens(ctx context.Context, user string) ([]Token, error) {
	if err := selfOrAdmin(ctx, user); err != nil {
		return nil, err
	}
	var out []Token
	err := s.store.View(ctx, func(tx Tx) error {
		var err error
		out, err = tx.TokensOf(user)
		return err
	})
	for i := range out {
		out[i].Hash = ""
	}
	if out == nil {
		out = []Token{}
	}
	return out, err
}

// DeleteToken revokes one of a user's tokens.
func (s *Service) DeleteToken(ctx context.Context, user, id string) error {
	if err := selfOrAdmin(ctx, user); err != nil {
		return err
	}
	return s.store.Update(ctx, func(tx Tx) error {
		t, err := tx.GetToken(id)
		if err != nil || t.User != user {
			return errclass.NotFoundf("token %q of user %q not found", id, user)
		}
		return tx.DeleteToken(id)
	})
}

// ListRoleAssignments lists the role assignments on a scope.
func (s *Service) ListRoleAssignments(ctx context.Context, scope string) ([]RoleAssignment, error) {
	if !validScope(scope) {
		return nil, errclass.Invalid("scope", "scope %q is not a subscription, account or workspace path", scope)
	}
	if _, err := authorize(ctx, scope, Reader); err != nil {
		return nil, err
	}
	var out []RoleAssignment
	err := s.store.View(ctx, func(tx Tx) error {
		if ok, err := tx.Exists(scope); err != nil {
			return err
		} else if !ok {
			return notFound(scope)
		}
		var err error
		out, err = tx.Grants("", scope)
		return err
	})
	if out == nil {
		out = []RoleAssignment{}
	}
	return out, err
}

// AssignRole grants user role on scope (Owners of the scope only).
func (s *Service) AssignRole(ctx context.Context, scope, user string, role Role) (*RoleAssignment, error) {
	if !validScope(scope) {
		return nil, errclass.Invalid("scope", "scope %q is not a subscription, account or workspace path", scope)
	}
	if _, err := authorize(ctx, scope, Owner); err != nil {
		return nil, err
	}
	if err := checkRole(role); err != nil {
		return nil, err
	}
	a := RoleAssignment{Scope: scope, User: user, Role: role, CreatedAt: s.now()}
	if p := PrincipalFrom(ctx); p != nil {
		a.CreatedBy = p.User.Name
	}
	err := s.store.Update(ctx, func(tx Tx) error {
		if ok, err := tx.Exists(scope); err != nil {
			return err
		} else if !ok {
			return notFound(scope)
		}
		if ok, err := tx.Exists(userPath(user)); err != nil {
			return err
		} else if !ok {
			return errclass.Invalid("user", "user %q does not exist", user)
		}
		return tx.Grant(a)
	})
	if err != nil {
		return nil, err
	}
	return &a, nil
}

// RemoveRole revokes user's role on scope (Owners of the scope only).
func (s *Service) RemoveRole(ctx context.Context, scope, user string) error {
	if !validScope(scope) {
		return errclass.Invalid("scope", "scope %q is not a subscription, account or workspace path", scope)
	}
	if _, err := authorize(ctx, scope, Owner); err != nil {
		return err
	}
	return s.store.Update(ctx, func(tx Tx) error { return tx.Revoke(scope, user) })
}
