// Package registry is the OCI distribution registry embedded in mlfleet-cloud.
//
// It serves the OCI distribution API (/v2/) over a filesystem store, using the
// CNCF distribution registry for storage and the wire protocol, and puts mlfleet's
// own authentication and authorization in front of it: every request is parsed
// into (repository, push or pull) and handed to an Authorizer, which the cloud
// implements with its tokens and roles. Distribution's own auth is disabled.
//
// Repositories are named "<subscription>/<account>/<image>"; the registry
// itself does not interpret the name, the Authorizer does.
//
// The OCI referrers API, which distribution lacks, is served here from a small
// index kept beside the store (see referrers.go).
package registry

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/distribution/distribution/v3/registry/storage"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem" // also registers the "filesystem" driver

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// Authorizer decides who may do what in the registry; the cloud implements it
// with its tokens and roles. Token extracts the caller's credential from r.
//
// AuthorizeRegistry is called before the registry acts on a request:
//   - for a repository request, repo is the repository name and push is true
//     for requests that change it (POST, PUT, PATCH, DELETE) and false for
//     reads (GET, HEAD); a blob mount from another repository also asks for
//     pull on the source repository;
//   - repo "" (with push false) asks for registry-wide access, which only the
//     catalog (/v2/_catalog) needs: only administrators should get nil. The
//     ping (GET /v2/) asks the same question but only needs the caller to be
//     authenticated: any answer but an Unauthenticated error lets it through.
//
// It returns nil to allow, or an error classified with errclass:
// Unauthenticated (missing or bad credentials) is answered 401 with a Basic
// challenge, PermissionDenied 403 DENIED, NotFound 404 NAME_UNKNOWN (use it for
// repositories of other tenants, so that their names do not leak), Unavailable
// 503; any other error 500.
type Authorizer interface {
	AuthorizeRegistry(ctx context.Context, r *http.Request, repo string, push bool) error
}

// Config configures a Registry.
type Config struct {
	// RootDir is where blobs and manifests are stored (created if missing;
	// the cloud uses "<data-dir>/registry"). Required.
	RootDir string
	// Authorizer authorizes every request. Required.
	Authorizer Authorizer
	// Logger receives the registry's logs (default slog.Default()). The
	// underlying registry logs through the process-wide logrus logger, which
	// New routes to the Logger of the most recently created Registry.
	Logger *slog.Logger
}

// Registry is an OCI registry with mlfleet's auth in front. It is an
// http.Handler for the paths under /v2/.
type Registry struct {
	ctx    context.Context
	conf   *configuration.Configuration
	root   string
	authz  Authorizer
	log    *slog.Logger
	driver *filesystem.Driver

	mu       sync.Mutex
	app      *handlers.App // built on first request
	appErr   error
	closed   bool
	closeErr error
}

// New opens (creating if needed) the store under cfg.RootDir and builds the
// registry. It starts no goroutines (the distribution app is built on the
// first request); the registry's own upload purger is off: call PurgeUploads
// periodically instead.
func New(ctx context.Context, cfg Config) (*Registry, error) {
	if cfg.RootDir == "" {
		return nil, errclass.Invalid("RootDir", "registry: RootDir %q is empty", cfg.RootDir)
	}
	if cfg.Authorizer == nil {
		return nil, errclass.Invalid("Authorizer", "registry: Authorizer is nil")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	root, err := filepath.Abs(cfg.RootDir)
	if err != nil {
		return nil, errclass.Wrap(errclass.InvalidArgument, err, "registry: RootDir %q", cfg.RootDir)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("registry: create RootDir %q: %w", root, err)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("registry: upload secret: %w", err)
	}
	routeLogs(cfg.Logger)

	conf := &configuration.Configuration{}
	conf.HTTP.Secret = base64.RawStdEncoding.EncodeToString(secret)
	conf.Storage = configuration.Storage{
		"filesystem": configuration.Parameters{"rootdirectory": root},
		"delete":     configuration.Parameters{"enabled": true},
		"redirect":   configuration.Parameters{"disable": true},
		"cache":      configuration.Parameters{"blobdescriptor": "inmemory"},
		"maintenance": configuration.Parameters{
			"uploadpurging": map[any]any{"enabled": false},
		},
	}
	conf.Catalog.MaxEntries = 1000
	conf.Tags.MaxTags = 1000
	return &Registry{
		ctx:    context.WithoutCancel(ctx),
		conf:   conf,
		root:   root,
		authz:  cfg.Authorizer,
		log:    cfg.Logger,
		driver: filesystem.New(filesystem.DriverParameters{RootDirectory: root, MaxThreads: 100}),
	}, nil
}

// newApp calls handlers.NewApp, which reports bad configuration by panicking.
func newApp(ctx context.Context, conf *configuration.Configuration) (app *handlers.App, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%v", p)
		}
	}()
	return handlers.NewApp(ctx, conf), nil
}

// handler returns the distribution app, building it on first use: it starts
// a goroutine (its notification broadcaster), which New must not.
func (g *Registry) handler() (*handlers.App, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, errclass.New(errclass.Unavailable, "", "registry is closed")
	}
	if g.app == nil && g.appErr == nil {
		g.app, g.appErr = newApp(g.ctx, g.conf)
		if g.appErr != nil {
			g.appErr = fmt.Errorf("registry: start distribution over %q: %w", g.root, g.appErr)
		}
	}
	return g.app, g.appErr
}

// Close releases the registry; requests after it get 503. It is safe to call
// more than once. (distribution leaves one idle goroutine of its notification
// broadcaster behind per registry that served a request: it has no way to stop
// it.)
func (g *Registry) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return g.closeErr
	}
	g.closed = true
	if g.app != nil {
		g.closeErr = g.app.Shutdown()
	}
	return g.closeErr
}

// PurgeUploads deletes blob uploads started more than olderThan ago that were
// never finished, and returns how many it deleted.
func (g *Registry) PurgeUploads(ctx context.Context, olderThan time.Duration) (int, error) {
	if _, err := os.Stat(filepath.Join(g.root, "docker", "registry", "v2", "repositories")); errors.Is(err, fs.ErrNotExist) {
		return 0, nil // nothing was ever pushed
	}
	deleted, errs := storage.PurgeUploads(ctx, g.driver, time.Now().Add(-olderThan), true)
	if len(errs) > 0 {
		return len(deleted), fmt.Errorf("registry: purge uploads: %w", errors.Join(errs...))
	}
	return len(deleted), nil
}

// Token returns the credential a registry client sent: the token of an
// "Authorization: Bearer <token>" header, or the password of Basic auth (any
// username), which is what docker, crane and containerd send. It returns ""
// when there is none.
func Token(r *http.Request) string {
	h := r.Header.Get("Authorization")
	scheme, rest, ok := strings.Cut(h, " ")
	if !ok {
		return ""
	}
	rest = strings.TrimSpace(rest)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return rest
	case strings.EqualFold(scheme, "Basic"):
		if _, pw, ok := r.BasicAuth(); ok {
			return pw
		}
	}
	return ""
}

// ServeHTTP authorizes the request and hands it to the registry.
func (g *Registry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	rt := parseRoute(r.Method, r.URL.Path)
	ctx := r.Context()
	switch rt.kind {
	case routeBase, routeUnknown:
		if Token(r) == "" {
			g.deny(w, r, errclass.New(errclass.Unauthenticated, "Authorization", "authentication required"), "")
			return
		}
		if err := g.authz.AuthorizeRegistry(ctx, r, "", false); err != nil {
			switch errclass.ClassOf(err) {
			case errclass.PermissionDenied, errclass.NotFound:
				// Authenticated but not an administrator: enough for these.
			default:
				g.deny(w, r, err, "")
				return
			}
		}
		if rt.kind == routeUnknown {
			writeError(w, r, http.StatusNotFound, errorBody{Code: "UNSUPPORTED", Message: "no such registry endpoint", Detail: map[string]string{"path": r.URL.Path}})
			return
		}
	case routeCatalog:
		if err := g.authz.AuthorizeRegistry(ctx, r, "", false); err != nil {
			g.deny(w, r, err, "")
			return
		}
	case routeReferrers:
		if err := g.authz.AuthorizeRegistry(ctx, r, rt.repo, isPush(r.Method)); err != nil {
			g.deny(w, r, err, rt.repo)
			return
		}
		g.serveReferrers(w, r, rt.repo)
		return
	default: // a repository route
		push := isPush(r.Method)
		if err := g.authz.AuthorizeRegistry(ctx, r, rt.repo, push); err != nil {
			g.deny(w, r, err, rt.repo)
			return
		}
		switch {
		case rt.kind == routeBlobUpload && r.Method == http.MethodPost:
			g.authorizeMount(r)
		case rt.kind == routeManifest:
			w = g.trackManifest(w, r, rt.repo)
		}
	}
	app, err := g.handler()
	if err != nil {
		if errclass.Is(err, errclass.Unavailable) {
			writeError(w, r, http.StatusServiceUnavailable, errorBody{Code: "UNAVAILABLE", Message: err.Error()})
			return
		}
		g.log.ErrorContext(ctx, "registry: unavailable", "err", err)
		writeError(w, r, http.StatusInternalServerError, errorBody{Code: "UNKNOWN", Message: "registry failed to start"})
		return
	}
	app.ServeHTTP(w, r)
}

// authorizeMount checks a cross-repository blob mount (?mount=<digest>&from=<repo>)
// against the source repository. When the caller may not read it, the mount
// parameters are dropped, so that the registry starts an ordinary upload (what
// the distribution spec says a registry does when it cannot mount) and the
// caller learns nothing about the other repository.
func (g *Registry) authorizeMount(r *http.Request) {
	// Same lookup as the registry's: FormValue, which parses r.Form once.
	from := r.FormValue("from")
	if from == "" {
		return
	}
	if err := g.authz.AuthorizeRegistry(r.Context(), r, from, false); err == nil {
		return
	}
	r.Form.Del("from")
	r.Form.Del("mount")
	q := r.URL.Query()
	q.Del("from")
	q.Del("mount")
	r.URL.RawQuery = q.Encode()
}

// isPush tells whether method changes a repository.
func isPush(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// deny answers a request the authorizer refused.
func (g *Registry) deny(w http.ResponseWriter, r *http.Request, err error, repo string) {
	switch errclass.ClassOf(err) {
	case errclass.Unauthenticated:
		w.Header().Set("WWW-Authenticate", `Basic realm="mlfleet"`)
		writeError(w, r, http.StatusUnauthorized, errorBody{Code: "UNAUTHORIZED", Message: err.Error()})
	case errclass.PermissionDenied:
		writeError(w, r, http.StatusForbidden, errorBody{Code: "DENIED", Message: err.Error(), Detail: repoDetail(repo)})
	case errclass.NotFound:
		writeError(w, r, http.StatusNotFound, errorBody{Code: "NAME_UNKNOWN", Message: "repository name not known to registry", Detail: repoDetail(repo)})
	case errclass.Unavailable:
		g.log.WarnContext(r.Context(), "registry: authorizer unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, r, http.StatusServiceUnavailable, errorBody{Code: "UNAVAILABLE", Message: "authorization is unavailable, try again later"})
	default:
		g.log.ErrorContext(r.Context(), "registry: authorizer failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, r, http.StatusInternalServerError, errorBody{Code: "UNKNOWN", Message: "internal error while authorizing"})
	}
}

func repoDetail(repo string) any {
	if repo == "" {
		return nil
	}
	return map[string]string{"name": repo}
}
