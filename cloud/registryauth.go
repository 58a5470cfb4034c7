package cloud

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/manifest"
)

// Image repositories in the cloud's registry are named
// <subscription>/<account>/<image>: they live in a model management account.

// RepositoryOf returns the registry repository of an image name in an account.
func RepositoryOf(sub, acct, image string) string { return sub + "/" + acct + "/" + image }

func splitRepo(repo string) (sub, acct, image string, err error) {
	parts := strings.Split(repo, "/")
	if len(parts) != 3 || !manifest.ValidName(parts[0]) || !manifest.ValidName(parts[1]) || !manifest.ValidName(parts[2]) {
		return "", "", "", errclass.NotFoundf("repository %q not found", repo)
	}
	return parts[0], parts[1], parts[2], nil
}

// Pull tokens are short-lived registry passwords scoped to one repository,
// handed to devices in their desired state: mlp_<base64 claims>.<base64 hmac>.
const pullPrefix = "mlp_"

type pullClaims struct {
	Repo    string `json:"r"`
	Device  string `json:"d,omitempty"`
	Expires int64  `json:"e"`
	// Push is set only on the tokens the cloud's own builder pushes with.
	Push bool `json:"p,omitempty"`
}

// pullKey returns the HMAC key for pull tokens, made on first use.
func (s *Service) pullKey(ctx context.Context) ([]byte, error) {
	s.devMu.Lock()
	defer s.devMu.Unlock()
	if s.pullKeyCache != nil {
		return s.pullKeyCache, nil
	}
	var key struct {
		Key []byte `json:"key"`
	}
	err := s.store.Update(ctx, func(tx Tx) error {
		err := tx.Get("/system/pullkey", &key)
		if errclass.Is(err, errclass.NotFound) {
			k, rerr := randomHex(32)
			if rerr != nil {
				return rerr
			}
			key.Key = []byte(k)
			return tx.Put("/system/pullkey", &key)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	s.pullKeyCache = key.Key
	return key.Key, nil
}

// PullToken makes a registry password that lets its holder pull one
// repository until ttl has passed.
func (s *Service) PullToken(ctx context.Context, repo, device string, ttl time.Duration) (string, time.Time, error) {
	return s.registryToken(ctx, repo, device, false, ttl)
}

// registryToken makes a signed registry password for one repository.
func (s *Service) registryToken(ctx context.Context, repo, device string, push bool, ttl time.Duration) (string, time.Time, error) {
	key, err := s.pullKey(ctx)
	if err != nil {
		return "", time.Time{}, err
	}
	exp := s.now().Add(ttl)
	claims, _ := json.Marshal(pullClaims{Repo: repo, Device: device, Expires: exp.Unix(), Push: push})
	mac := hmac.New(sha256.New, key)
	mac.Write(claims)
	return pullPrefix + base64.RawURLEncoding.EncodeToString(claims) + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), exp, nil
}

func (s *Service) checkPullToken(ctx context.Context, secret, repo string, push bool) error {
	bad := errclass.New(errclass.Unauthenticated, "", "registry credential is invalid or expired")
	body, sig, ok := strings.Cut(strings.TrimPrefix(secret, pullPrefix), ".")
	if !ok {
		return bad
	}
	claimsRaw, err1 := base64.RawURLEncoding.DecodeString(body)
	sigRaw, err2 := base64.RawURLEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil {
		return bad
	}
	key, err := s.pullKey(ctx)
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(claimsRaw)
	if !hmac.Equal(mac.Sum(nil), sigRaw) {
		return bad
	}
	var c pullClaims
	if json.Unmarshal(claimsRaw, &c) != nil || s.now().Unix() > c.Expires {
		return bad
	}
	if c.Repo != repo {
		return errclass.NotFoundf("repository %q not found", repo)
	}
	if push && !c.Push {
		return errclass.New(errclass.PermissionDenied, "", "pull tokens cannot push")
	}
	return nil
}

// AuthorizeRegistry decides a registry request. The credential is a user's
// API token (pull needs Reader, push Contributor on the repository's
// account), a device's credential (pull of its own account's repositories
// only), or a pull token (pull of the one repository it names). repo ""
// stands for registry-wide requests (catalog): administrators only.
func (s *Service) AuthorizeRegistry(ctx context.Context, secret, repo string, push bool) error {
	if secret == "" {
		return errclass.New(errclass.Unauthenticated, "", "registry credentials required")
	}
	switch {
	case strings.HasPrefix(secret, tokenPrefix):
		p, err := s.Authenticate(ctx, secret)
		if err != nil {
			return err
		}
		if repo == "" {
			if p.User.Admin {
				return nil
			}
			return errclass.New(errclass.PermissionDenied, "", "registry-wide requests need an administrator")
		}
		sub, acct, _, err := splitRepo(repo)
		if err != nil {
			return err
		}
		need := Reader
		if push {
			need = Contributor
		}
		_, err = authorize(WithPrincipal(ctx, p), AccountPath(sub, acct), need)
		return err
	case strings.HasPrefix(secret, devicePrefix):
		id, ok := splitSecret(secret, devicePrefix)
		if !ok {
			return errclass.New(errclass.Unauthenticated, "", "registry credential is invalid")
		}
		if err := s.AuthenticateDevice(ctx, id, secret); err != nil {
			return err
		}
		if repo == "" {
			return errclass.New(errclass.PermissionDenied, "", "devices cannot list the registry")
		}
		sub, acct, _, err := splitRepo(repo)
		if err != nil {
			return err
		}
		var path string
		if err := s.store.View(ctx, func(tx Tx) error {
			var err error
			path, err = s.deviceByID(tx, id)
			return err
		}); err != nil {
			return err
		}
		if path != DevicePath(sub, acct, id) {
			return errclass.NotFoundf("repository %q not found", repo)
		}
		if push {
			return errclass.New(errclass.PermissionDenied, "", "devices cannot push images")
		}
		return nil
	case strings.HasPrefix(secret, pullPrefix):
		if repo == "" {
			return errclass.New(errclass.PermissionDenied, "", "pull tokens cannot list the registry")
		}
		return s.checkPullToken(ctx, secret, repo, push)
	}
	return errclass.New(errclass.Unauthenticated, "", "registry credential is invalid")
}
