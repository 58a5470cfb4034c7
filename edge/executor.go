package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mlfleet/mlfleet/edge/gateway"
	"github.com/mlfleet/mlfleet/edge/internal/boltstore"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// Router receives the route table (the gateway).
type Router interface {
	SetRoutes([]gateway.Route)
}

// Executor carries out a Plan through the Runtime, persisting every step in
// the store so that a daemon restart picks up where it stopped.
type Executor struct {
	Runtime Runtime
	Store   *boltstore.Store
	Router  Router
	// LogDir holds the instances' log files.
	LogDir string
	// HandoffDir, when set, holds a directory per instance for its handoff
	// socket (see InstanceSpec.HandoffDir); the gateway then hands client
	// connections to the scorers instead of proxying every request.
	HandoffDir string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Probe checks one health URL once (default: HTTP GET, 2xx is healthy).
	Probe func(ctx context.Context, url string, timeout time.Duration) error
	// ProbeInterval is the pause between start probes (default 250 ms).
	ProbeInterval time.Duration
	// Grace is how long a stopped instance gets to drain (default 10 s).
	Grace time.Duration
	// FreePort picks a host port for a new instance (default: ask the kernel).
	FreePort func() (int, error)
	// OnChange is called after every persisted state change.
	OnChange func()
	Log      *slog.Logger
}

func (e *Executor) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Executor) log() *slog.Logger {
	if e.Log != nil {
		return e.Log
	}
	return slog.New(slog.DiscardHandler)
}

func (e *Executor) changed() {
	if e.OnChange != nil {
		e.OnChange()
	}
}

// Execute runs the actions in order. A failed action does not stop the
// others; their errors are joined.
func (e *Executor) Execute(ctx context.Context, actions []Action) error {
	var errs []error
	for _, a := range actions {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		var err error
		switch a.Kind {
		case ActRemove:
			err = e.remove(ctx, a)
		case ActStopOrphan:
			err = e.Runtime.Stop(ctx, a.Instance, e.grace())
		case ActRestart:
			err = e.restart(ctx, a)
		case ActDeploy:
			err = e.deploy(ctx, a)
		case ActSettle:
			err = e.settle(a)
		case ActGC:
			err = e.gc(ctx)
		default:
			err = errclass.Invalid("kind", "unknown action kind %q", a.Kind)
		}
		if err != nil {
			e.log().Warn("action failed", "kind", a.Kind, "service", a.Service, "instance", a.Instance, "err", err)
			errs = append(errs, fmt.Errorf("%s %s%s: %w", a.Kind, a.Service, a.Instance, err))
		} else {
			e.log().Info("action done", "kind", a.Kind, "service", a.Service, "instance", a.Instance, "reason", a.Reason)
		}
	}
	return errors.Join(errs...)
}

func (e *Executor) grace() time.Duration {
	if e.Grace > 0 {
		return e.Grace
	}
	return 10 * time.Second
}

// SyncRoutes sends the route table derived from the store to the router.
func (e *Executor) SyncRoutes() error {
	states, err := e.Store.Services()
	if err != nil {
		return err
	}
	if e.Router != nil {
		e.Router.SetRoutes(Routes(states, e.HandoffDir))
	}
	return nil
}

// Routes derives the gateway's route table from service states; handoffDir
// is the Executor's HandoffDir.
func Routes(states map[string]boltstore.ServiceState, handoffDir string) []gateway.Route {
	var out []gateway.Route
	for _, st := range states {
		if st.Instance == "" || st.Port == 0 || st.Phase == twin.Removing {
			continue
		}
		model := st.Spec.Model
		if model == "" {
			model = st.Name
		}
		out = append(out, gateway.Route{
			Service: st.Name, Model: model,
			Backend: &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(st.Port))},
			Handoff: handoffSocket(handoffDir, st.Instance),
		})
	}
	slices.SortFunc(out, func(a, b gateway.Route) int { return strings.Compare(a.Service, b.Service) })
	return out
}

// maxSocketPath is the longest unix socket path the kernel takes (108 bytes
// with the terminating NUL).
const maxSocketPath = 107

// handoffDir is instance id's handoff directory, or "" for none (no
// HandoffDir, or a socket path too long for the kernel).
func handoffDir(dir, id string) string {
	if dir == "" || len(filepath.Join(dir, id, HandoffSocket)) > maxSocketPath {
		return ""
	}
	return filepath.Join(dir, id)
}

// handoffSocket is the path of instance id's handoff socket, or "".
func handoffSocket(dir, id string) string {
	if d := handoffDir(dir, id); d != "" {
		return filepath.Join(d, HandoffSocket)
	}
	return ""
}

func (e *Executor) put(st boltstore.ServiceState) error {
	if err := e.Store.PutService(st); err != nil {
		return err
	}
	e.changed()
	return nil
}

func (e *Executor) state(name string) (boltstore.ServiceState, error) {
	st, err := e.Store.Service(name)
	if errclass.Is(err, errclass.NotFound) {
		return boltstore.ServiceState{Name: name}, nil
	}
	return st, err
}

// InstanceID names instance gen of a service running image.
func InstanceID(service, image string, gen uint64) string {
	digest := image
	if _, d, ok := strings.Cut(image, "@sha256:"); ok {
		digest = d
	}
	if len(digest) > 12 {
		digest = digest[:12]
	}
	if len(service) > 50 { // containerd ids are at most 76 characters
		service = service[:50]
	}
	return fmt.Sprintf("%s-%s-%d", service, digest, gen)
}

func (e *Executor) deploy(ctx context.Context, a Action) error {
	spec := a.Spec.WithDefaults()
	st, err := e.state(spec.Name)
	if err != nil {
		return err
	}
	setPhase(&st, twin.Pulling, e.now())
	st.Wanted, st.Reason = spec.Image, ""
	if err := e.put(st); err != nil {
		return err
	}
	if err := e.Runtime.Pull(ctx, spec.Image, spec.Pull); err != nil {
		return e.fail(ctx, st, spec, "", err) // the runtime names the image in its errors
	}
	port, err := e.freePort()
	if err != nil {
		return e.fail(ctx, st, spec, "", fmt.Errorf("pick a port: %w", err))
	}
	st.Generation++
	id := InstanceID(spec.Name, spec.Image, st.Generation)
	setPhase(&st, twin.Starting, e.now())
	if err := e.put(st); err != nil {
		return err
	}
	_, err = e.Runtime.Start(ctx, InstanceSpec{
		ID: id, Service: spec.Name, Image: spec.Image, Port: port,
		Env: spec.Env, Resources: spec.Resources, LogPath: filepath.Join(e.LogDir, id+".log"),
		HandoffDir: handoffDir(e.HandoffDir, id),
	})
	if err != nil {
		return e.fail(ctx, st, spec, id, fmt.Errorf("start instance %s: %w", id, err))
	}
	if err := e.waitHealthy(ctx, id, port, spec.Health); err != nil {
		return e.fail(ctx, st, spec, id, err)
	}

	// Healthy: persist, switch the route, then stop the old instance.
	old, oldImage := st.Instance, st.Image
	saved := spec
	saved.Pull = nil
	st.Spec, st.Image, st.Instance, st.Port = saved, spec.Image, id, port
	if oldImage != "" && oldImage != spec.Image {
		st.Previous = oldImage
	}
	setPhase(&st, twin.Running, e.now())
	st.Reason, st.Wanted, st.Attempts, st.FailedAt, st.Restarts, st.RestartedAt = "", "", 0, time.Time{}, 0, time.Time{}
	if err := e.put(st); err != nil {
		// Not recorded: the new instance becomes an orphan and is stopped.
		return err
	}
	if err := e.SyncRoutes(); err != nil {
		return err
	}
	if old != "" && old != id {
		if err := e.Runtime.Stop(ctx, old, e.grace()); err != nil {
			// The old instance is now an orphan; the next plan stops it.
			e.log().Warn("stop old instance", "instance", old, "err", err)
		}
	}
	return nil
}

// fail stops the new instance (if any) and records why the deploy failed.
// The phase is RolledBack when an earlier instance still serves.
func (e *Executor) fail(ctx context.Context, st boltstore.ServiceState, spec twin.ServiceSpec, id string, cause error) error {
	if ctx.Err() != nil {
		// Shutting down, not a failure of the image: the new instance (if
		// any) is an orphan the next plan stops, and the deploy is retried.
		return cause
	}
	if id != "" {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.grace()+5*time.Second)
		if err := e.Runtime.Stop(sctx, id, e.grace()); err != nil {
			e.log().Warn("stop failed instance", "instance", id, "err", err)
		}
		cancel()
	}
	serving := false
	if st.Instance != "" {
		if insts, err := e.Runtime.List(context.WithoutCancel(ctx)); err == nil {
			for _, in := range insts {
				serving = serving || (in.ID == st.Instance && in.State == InstanceRunning)
			}
		}
	}
	phase := twin.Failed
	if serving {
		phase = twin.RolledBack
	} else if st.Image != "" {
		// Nothing serves: keep the image for rollback, forget the instance.
		if st.Image != spec.Image {
			st.Previous = st.Image
		}
		st.Image, st.Instance, st.Port = "", "", 0
	}
	setPhase(&st, phase, e.now())
	st.Reason = truncate(cause.Error(), 2000)
	st.Wanted, st.FailedAt = spec.Image, e.now()
	st.Attempts++
	if err := e.put(st); err != nil {
		return errors.Join(cause, err)
	}
	if err := e.SyncRoutes(); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func setPhase(st *boltstore.ServiceState, p twin.Phase, now time.Time) {
	if st.Phase != p || st.Since.IsZero() {
		st.Phase, st.Since = p, now
	}
}

func (e *Executor) freePort() (int, error) {
	if e.FreePort != nil {
		return e.FreePort()
	}
	return FreePort()
}

// FreePort asks the kernel for a free TCP port on 127.0.0.1.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitHealthy probes the instance until it answers, it exits, or the start
// timeout passes.
func (e *Executor) waitHealthy(ctx context.Context, id string, port int, p twin.Probe) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(p.StartTimeoutMs)*time.Millisecond)
	defer cancel()
	probeURL := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + p.Path
	interval := e.ProbeInterval
	if interval <= 0 {
		interval = 250 * time.Millisecond
	}
	var last error
	for {
		last = e.probe(ctx, probeURL, time.Duration(p.TimeoutMs)*time.Millisecond)
		if last == nil {
			return nil
		}
		if insts, err := e.Runtime.List(ctx); err == nil {
			for _, in := range insts {
				if in.ID == id && in.State != InstanceRunning {
					return errclass.New(errclass.FailedPrecondition, "", "instance %s exited (code %d) before it was healthy", id, in.ExitCode)
				}
			}
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return errclass.Wrap(errclass.Unavailable, last, "instance %s not healthy at %s within startTimeoutMs %d", id, p.Path, p.StartTimeoutMs)
		case <-t.C:
		}
	}
}

func (e *Executor) probe(ctx context.Context, u string, timeout time.Duration) error {
	if e.Probe != nil {
		return e.Probe(ctx, u, timeout)
	}
	return HTTPProbe(ctx, u, timeout)
}

var probeClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}

// HTTPProbe GETs u once; a 2xx answer is healthy.
func HTTPProbe(ctx context.Context, u string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("probe %s answered %d", u, resp.StatusCode)
	}
	return nil
}

func (e *Executor) restart(ctx context.Context, a Action) error {
	st, err := e.Store.Service(a.Service)
	if err != nil {
		return err
	}
	if e.now().Sub(st.RestartedAt) >= RestartReset {
		st.Restarts = 0
	}
	st.Restarts++
	st.RestartedAt = e.now()
	setPhase(&st, twin.Starting, e.now())
	if err := e.put(st); err != nil {
		return err
	}
	if _, err := e.Runtime.Restart(ctx, a.Instance); err != nil {
		setPhase(&st, twin.Failed, e.now())
		st.Reason = truncate(fmt.Sprintf("restart instance %s: %v", a.Instance, err), 2000)
		return errors.Join(fmt.Errorf("restart instance %s: %w", a.Instance, err), e.put(st))
	}
	if err := e.waitHealthy(ctx, a.Instance, st.Port, st.Spec.WithDefaults().Health); err != nil {
		setPhase(&st, twin.Failed, e.now())
		st.Reason = truncate(err.Error(), 2000)
		return errors.Join(err, e.put(st))
	}
	setPhase(&st, twin.Running, e.now())
	st.Reason = ""
	if err := e.put(st); err != nil {
		return err
	}
	return e.SyncRoutes()
}

func (e *Executor) remove(ctx context.Context, a Action) error {
	st, err := e.Store.Service(a.Service)
	if err != nil {
		return err
	}
	setPhase(&st, twin.Removing, e.now())
	if err := e.put(st); err != nil {
		return err
	}
	if err := e.SyncRoutes(); err != nil { // no more traffic first
		return err
	}
	if st.Instance != "" {
		if err := e.Runtime.Stop(ctx, st.Instance, e.grace()); err != nil {
			return fmt.Errorf("stop instance %s: %w", st.Instance, err)
		}
	}
	if err := e.Store.DeleteService(a.Service); err != nil {
		return err
	}
	e.changed()
	return nil
}

func (e *Executor) settle(a Action) error {
	st, err := e.Store.Service(a.Service)
	if err != nil {
		return err
	}
	setPhase(&st, twin.Running, e.now())
	st.Reason, st.Wanted, st.Attempts, st.FailedAt = "", "", 0, time.Time{}
	return e.put(st)
}

func (e *Executor) gc(ctx context.Context) error {
	states, err := e.Store.Services()
	if err != nil {
		return err
	}
	return e.Runtime.GC(ctx, KeepImages(states))
}

// KeepImages lists the images GC must keep: every service's current and
// previous image.
func KeepImages(states map[string]boltstore.ServiceState) []string {
	seen := map[string]bool{}
	for _, st := range states {
		for _, img := range []string{st.Image, st.Previous} {
			if img != "" {
				seen[img] = true
			}
		}
	}
	return slices.Sorted(func(yield func(string) bool) {
		for k := range seen {
			if !yield(k) {
				return
			}
		}
	})
}
