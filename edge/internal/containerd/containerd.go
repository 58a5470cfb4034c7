// Package containerd is the edge daemon's container runtime: it implements
// edge.Runtime on a containerd daemon (1.6 or newer, runc shim), pulling
// images pinned by digest and running each service instance as one
// container in the daemon's own containerd namespace.
//
// What it relies on, and why:
//
//   - Pulls go through the client's own fetcher (client.Pull), not
//     containerd's Transfer service, which containerd 1.6 lacks. Every pull
//     holds an explicit lease that is deleted synchronously when the pull
//     fails or is cancelled, so no partial content or snapshot outlives it.
//   - A container's stdout/stderr go straight from the shim to a log file
//     (cio.LogFile): nothing in this process copies output, so containers keep
//     running (and logging) while the daemon is down, and a new Runtime finds
//     them again by ID (List, Stop, Restart attach to the existing task).
//   - After a reboot or a containerd restart the containers remain but their
//     tasks are gone (InstanceNoTask): Restart creates a new task from the
//     stored container and its snapshot.
//
// Containers carry labels (mlfleet.service, mlfleet.image, mlfleet.port,
// mlfleet.log, mlfleet.started) from which List rebuilds edge.Instance.
//
// # Log rotation
//
// A log file is rotated when it is larger than Config.LogMaxBytes at Start or
// Restart (no writer yet: it is renamed) or when RotateLogs is called (the
// shim may be writing: it is copied, then truncated; the shim opens it for
// appending, so its next write lands at the new start of the file). Two old
// files are kept: <log>.1 (newest) and <log>.2.
package containerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/pkg/identifiers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"golang.org/x/sys/unix"

	"github.com/mlfleet/mlfleet/edge"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// Defaults for Config.
const (
	DefaultNamespace      = "mlfleet"
	DefaultSnapshotter    = "overlayfs"
	DefaultPullTimeout    = 10 * time.Minute
	DefaultConnectTimeout = 10 * time.Second
	DefaultLogMaxBytes    = 10 << 20
)

// Config configures a Runtime.
type Config struct {
	// Address is containerd's socket, e.g. /run/containerd/containerd.sock.
	Address string
	// Namespace is the containerd namespace holding this daemon's images and
	// containers (default "mlfleet").
	Namespace string
	// StateDir is the daemon's directory: logs of instances whose spec names
	// no LogPath go to StateDir/logs/<id>.log. Required.
	StateDir string
	// Root is containerd's root directory, where images are stored; FreeBytes
	// measures it (or StateDir if Root is empty).
	Root string
	// PullTimeout bounds every pull (default 10 minutes).
	PullTimeout time.Duration
	// ConnectTimeout bounds New's first exchange with containerd (default 10s).
	ConnectTimeout time.Duration
	// Snapshotter unpacks images and holds root filesystems (default overlayfs).
	Snapshotter string
	// MinFreeBytes: a pull is refused while FreeBytes is below it (0: no check).
	MinFreeBytes uint64
	// LogMaxBytes is the size past which a log is rotated (default 10 MiB).
	LogMaxBytes int64
}

// Runtime runs service instances on containerd. It is safe for concurrent use.
type Runtime struct {
	cfg    Config
	client *containerd.Client
}

var _ edge.Runtime = (*Runtime)(nil)

// New connects to containerd at cfg.Address and checks that it answers
// within cfg.ConnectTimeout. It starts no goroutines of its own.
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	if cfg.Address == "" {
		return nil, errclass.Invalid("address", "address is empty: the containerd socket is required")
	}
	if cfg.StateDir == "" {
		return nil, errclass.Invalid("stateDir", "stateDir is empty: a directory for logs is required")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = DefaultNamespace
	}
	if err := identifiers.Validate(cfg.Namespace); err != nil {
		return nil, errclass.Invalid("namespace", "namespace %q is not valid: %v", cfg.Namespace, err)
	}
	if cfg.Snapshotter == "" {
		cfg.Snapshotter = DefaultSnapshotter
	}
	if cfg.PullTimeout < 0 {
		return nil, errclass.Invalid("pullTimeout", "pullTimeout %s is negative", cfg.PullTimeout)
	}
	if cfg.PullTimeout == 0 {
		cfg.PullTimeout = DefaultPullTimeout
	}
	if cfg.ConnectTimeout < 0 {
		return nil, errclass.Invalid("connectTimeout", "connectTimeout %s is negative", cfg.ConnectTimeout)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.LogMaxBytes < 0 {
		return nil, errclass.Invalid("logMaxBytes", "logMaxBytes %d is negative", cfg.LogMaxBytes)
	}
	if cfg.LogMaxBytes == 0 {
		cfg.LogMaxBytes = DefaultLogMaxBytes
	}
	client, err := containerd.New(cfg.Address,
		containerd.WithDefaultNamespace(cfg.Namespace),
		containerd.WithTimeout(cfg.ConnectTimeout))
	if err != nil {
		return nil, errclass.Wrap(errclass.Unavailable, err, "connect to containerd at %s", cfg.Address)
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	if _, err := client.Version(cctx); err != nil {
		client.Close()
		return nil, errclass.Wrap(errclass.Unavailable, err, "containerd at %s does not answer", cfg.Address)
	}
	return &Runtime{cfg: cfg, client: client}, nil
}

// Close closes the connection to containerd. Containers keep running.
func (r *Runtime) Close() error {
	if err := r.client.Close(); err != nil {
		return fmt.Errorf("close containerd client: %w", err)
	}
	return nil
}

// ctx puts the runtime's namespace on ctx.
func (r *Runtime) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, r.cfg.Namespace)
}

// maxImageLen bounds an image reference (it is stored in a label).
const maxImageLen = 1024

// parseImage checks that image is a reference pinned by digest and returns
// its normalized name, the name containerd stores it under.
func parseImage(field, image string) (string, error) {
	if image == "" {
		return "", errclass.Invalid(field, "%s is empty", field)
	}
	if len(image) > maxImageLen {
		return "", errclass.Invalid(field, "%s is %d bytes long (max %d)", field, len(image), maxImageLen)
	}
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return "", errclass.Invalid(field, "%s %q is not an image reference: %v", field, image, err)
	}
	if _, ok := named.(reference.Canonical); !ok {
		return "", errclass.Invalid(field, "%s %q is not pinned by digest (want <repo>@sha256:<hex>)", field, image)
	}
	return named.String(), nil
}

// Pull fetches and unpacks image for the host's platform. Registries on
// loopback addresses are reached over plain HTTP, all others over HTTPS.
func (r *Runtime) Pull(ctx context.Context, image string, auth *twin.PullAuth) error {
	name, err := parseImage("image", image)
	if err != nil {
		return err
	}
	ctx = r.ctx(ctx)
	if ok, err := r.HasImage(ctx, name); err != nil {
		return err
	} else if ok {
		return nil
	}
	if r.cfg.MinFreeBytes > 0 {
		free, err := r.FreeBytes(ctx)
		if err != nil {
			return err
		}
		if free < r.cfg.MinFreeBytes {
			return errclass.New(errclass.FailedPrecondition, "", "pull %s: %d bytes free under %s, below minFreeBytes %d",
				name, free, r.diskPath(), r.cfg.MinFreeBytes)
		}
	}

	pctx, cancel := context.WithTimeout(ctx, r.cfg.PullTimeout)
	defer cancel()
	lm := r.client.LeasesService()
	lease, err := lm.Create(pctx, leases.WithRandomID(), leases.WithExpiration(r.cfg.PullTimeout+time.Hour),
		leases.WithLabel("mlfleet.pull", name))
	if err != nil {
		return classify(err, "pull %s: create lease", name)
	}
	pctx = leases.WithLease(pctx, lease.ID)

	_, perr := r.client.Pull(pctx, name,
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(r.cfg.Snapshotter),
		containerd.WithPlatformMatcher(platforms.Default()),
		containerd.WithResolver(resolver(auth)))

	// The image record, once written, holds its content and snapshots: the
	// lease is dropped either way. After a failure it is deleted
	// synchronously, so that containerd collects the partial pull at once.
	dctx, dcancel := cleanupCtx(ctx)
	defer dcancel()
	var dopts []leases.DeleteOpt
	if perr != nil {
		dopts = append(dopts, leases.SynchronousDelete)
	}
	derr := lm.Delete(dctx, lease, dopts...)
	switch {
	case perr != nil && errors.Is(pctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		return errclass.Wrap(errclass.Unavailable, errors.Join(perr, derr), "pull %s: not done within pullTimeout %s", name, r.cfg.PullTimeout)
	case perr != nil && classOf(perr) == errclass.Unauthenticated:
		who := "no credentials given"
		if auth != nil {
			who = fmt.Sprintf("pull.username %q", auth.Username)
		}
		return errclass.Wrap(errclass.Unauthenticated, errors.Join(perr, derr), "pull %s: registry refused the credentials (%s)", name, who)
	case perr != nil:
		return errclass.Wrap(classOf(perr), errors.Join(perr, derr), "pull %s", name)
	case derr != nil:
		return classify(derr, "pull %s: delete lease %s", name, lease.ID)
	}
	return nil
}

// resolver makes a registry resolver with auth's credentials (for every
// host: the credentials are scoped to the one image being pulled). It
// speaks plain HTTP to localhost, and to every host when auth says the
// registry does (the image's own; a pull by digest never leaves it).
func resolver(auth *twin.PullAuth) remotes.Resolver {
	var opts []docker.AuthorizerOpt
	if auth != nil && (auth.Username != "" || auth.Password != "") {
		user, pass := auth.Username, auth.Password
		opts = append(opts, docker.WithAuthCreds(func(string) (string, string, error) { return user, pass, nil }))
	}
	return docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(
			docker.WithAuthorizer(docker.NewDockerAuthorizer(opts...)),
			docker.WithPlainHTTP(plainHTTP(auth)),
		),
	})
}

// plainHTTP says which registry hosts a pull with auth talks HTTP to.
func plainHTTP(auth *twin.PullAuth) func(host string) (bool, error) {
	if auth != nil && auth.PlainHTTP {
		return docker.MatchAllHosts
	}
	return docker.MatchLocalhost
}

// HasImage reports whether image is stored and unpacked for the snapshotter.
func (r *Runtime) HasImage(ctx context.Context, image string) (bool, error) {
	name, err := parseImage("image", image)
	if err != nil {
		return false, err
	}
	ctx = r.ctx(ctx)
	img, err := r.client.GetImage(ctx, name)
	if err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, classify(err, "look up image %s", name)
	}
	ok, err := img.IsUnpacked(ctx, r.cfg.Snapshotter)
	if err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, classify(err, "check image %s is unpacked", name)
	}
	return ok, nil
}

// GC deletes the images not in keep and not used by any container of the
// namespace (Restart needs them), then lets containerd collect their content
// and snapshots.
func (r *Runtime) GC(ctx context.Context, keep []string) error {
	ctx = r.ctx(ctx)
	kept := make(map[string]bool, len(keep))
	for i, k := range keep {
		name, err := parseImage(fmt.Sprintf("keep[%d]", i), k)
		if err != nil {
			return err
		}
		kept[name] = true
	}
	cs, err := r.client.Containers(ctx)
	if err != nil {
		return classify(err, "gc: list containers")
	}
	for _, c := range cs {
		info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
		if err != nil {
			return classify(err, "gc: read container %s", c.ID())
		}
		kept[info.Image] = true
	}
	is := r.client.ImageService()
	imgs, err := is.List(ctx)
	if err != nil {
		return classify(err, "gc: list images")
	}
	var drop []string
	for _, img := range imgs {
		if !kept[img.Name] {
			drop = append(drop, img.Name)
		}
	}
	for i, name := range drop {
		var opts []images.DeleteOpt
		if i == len(drop)-1 {
			opts = append(opts, images.SynchronousDelete())
		}
		if err := is.Delete(ctx, name, opts...); err != nil && !isNotFound(err) {
			return classify(err, "gc: delete image %s", name)
		}
	}
	return nil
}

func (r *Runtime) diskPath() string {
	if r.cfg.Root != "" {
		return r.cfg.Root
	}
	return r.cfg.StateDir
}

// FreeBytes reports the space available to unprivileged users on the file
// system of Config.Root (or Config.StateDir).
func (r *Runtime) FreeBytes(ctx context.Context) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, errclass.Wrap(errclass.Unavailable, err, "free bytes")
	}
	p := r.diskPath()
	var st unix.Statfs_t
	for {
		err := unix.Statfs(p, &st)
		if err == nil {
			break
		}
		// The directory may not exist yet: measure its nearest parent.
		if errors.Is(err, unix.ENOENT) && filepath.Dir(p) != p {
			p = filepath.Dir(p)
			continue
		}
		return 0, errclass.Wrap(errclass.Unavailable, err, "statfs %s", p)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

var idRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func validID(field, id string) error {
	if !idRE.MatchString(id) {
		return errclass.Invalid(field, "%s %q must be 1-63 of [a-z0-9-], starting with a letter or digit", field, id)
	}
	return nil
}

func ensureDir(path string) error {
	if err := os.MkdirAll(path, 0o750); err != nil {
		return errclass.Wrap(errclass.Unavailable, err, "create directory %s", path)
	}
	return nil
}

// DropStaleLeases deletes the pull leases left in the namespace by a daemon
// that died mid-pull (kill -9, power loss): a pull deletes its own lease when
// it ends, so any pull lease found before this daemon pulls anything is
// stale. Deleting them synchronously lets containerd collect the partial
// content and snapshots they held. It returns how many it deleted. Call it
// once at start, before any Pull.
func (r *Runtime) DropStaleLeases(ctx context.Context) (int, error) {
	ctx = r.ctx(ctx)
	lm := r.client.LeasesService()
	ls, err := lm.List(ctx, `labels."mlfleet.pull"`)
	if err != nil {
		return 0, classify(err, "list pull leases")
	}
	n := 0
	for _, l := range ls {
		if err := lm.Delete(ctx, l, leases.SynchronousDelete); err != nil && !isNotFound(err) {
			return n, classify(err, "delete stale pull lease %s", l.ID)
		}
		n++
	}
	return n, nil
}
