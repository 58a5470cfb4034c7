package edge

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/edge/gateway"
	"github.com/mlfleet/mlfleet/edge/internal/boltstore"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// fakeRuntime is a Runtime in memory, for the executor's unit tests only.
type fakeRuntime struct {
	mu        sync.Mutex
	images    map[string]bool
	instances map[string]Instance
	pullErr   map[string]error
	crash     map[string]bool // images whose instances exit at once
	sick      map[string]bool // images whose instances never answer the probe
	events    *[]string
	gcKeep    []string
}

func newFakeRuntime(events *[]string) *fakeRuntime {
	return &fakeRuntime{images: map[string]bool{}, instances: map[string]Instance{}, pullErr: map[string]error{},
		crash: map[string]bool{}, sick: map[string]bool{}, events: events}
}

func (f *fakeRuntime) event(format string, args ...any) {
	*f.events = append(*f.events, fmt.Sprintf(format, args...))
}

func (f *fakeRuntime) Pull(ctx context.Context, image string, auth *twin.PullAuth) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.event("pull %s", image[len(image)-1:])
	if err := f.pullErr[image]; err != nil {
		return err
	}
	f.images[image] = true
	return nil
}

func (f *fakeRuntime) HasImage(ctx context.Context, image string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.images[image], nil
}

func (f *fakeRuntime) Start(ctx context.Context, spec InstanceSpec) (Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.event("start %s", spec.ID)
	if !f.images[spec.Image] {
		return Instance{}, errors.New("image not pulled")
	}
	if _, dup := f.instances[spec.ID]; dup {
		return Instance{}, errors.New("duplicate id " + spec.ID)
	}
	in := Instance{ID: spec.ID, Service: spec.Service, Image: spec.Image, Port: spec.Port, State: InstanceRunning}
	if f.crash[spec.Image] {
		in.State, in.ExitCode = InstanceStopped, 1
	}
	f.instances[spec.ID] = in
	return in, nil
}

func (f *fakeRuntime) Stop(ctx context.Context, id string, grace time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.event("stop %s", id)
	delete(f.instances, id)
	return nil
}

func (f *fakeRuntime) List(ctx context.Context) ([]Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Instance
	for _, in := range f.instances {
		out = append(out, in)
	}
	return out, nil
}

func (f *fakeRuntime) Restart(ctx context.Context, id string) (Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.event("restart %s", id)
	in, ok := f.instances[id]
	if !ok {
		return Instance{}, errors.New("no container " + id)
	}
	in.State = InstanceRunning
	f.instances[id] = in
	return in, nil
}

func (f *fakeRuntime) GC(ctx context.Context, keep []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gcKeep = slices.Clone(keep)
	for im := range f.images {
		if !slices.Contains(keep, im) {
			delete(f.images, im)
		}
	}
	return nil
}

func (f *fakeRuntime) FreeBytes(ctx context.Context) (uint64, error) { return 1 << 40, nil }
func (f *fakeRuntime) Close() error                                  { return nil }

// probe answers healthy for running instances of images not marked sick.
func (f *fakeRuntime) probe(ctx context.Context, u string, timeout time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, in := range f.instances {
		if strings.Contains(u, fmt.Sprintf(":%d/", in.Port)) && in.State == InstanceRunning && !f.sick[in.Image] {
			return nil
		}
	}
	return errors.New("connection refused")
}

type recRouter struct {
	events *[]string
	routes []gateway.Route
}

func (r *recRouter) SetRoutes(routes []gateway.Route) {
	r.routes = routes
	var parts []string
	for _, rt := range routes {
		parts = append(parts, rt.Service+"="+rt.Backend.Port())
	}
	*r.events = append(*r.events, "routes "+strings.Join(parts, ","))
}

type harness struct {
	rt     *fakeRuntime
	router *recRouter
	store  *boltstore.Store
	ex     *Executor
	events []string
	now    time.Time
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{now: t0}
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "state.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h.store = store
	h.rt = newFakeRuntime(&h.events)
	h.router = &recRouter{events: &h.events}
	port := 5000
	h.ex = &Executor{
		Runtime: h.rt, Store: store, Router: h.router, LogDir: t.TempDir(),
		Now: func() time.Time { return h.now }, Probe: h.rt.probe, ProbeInterval: time.Millisecond,
		FreePort: func() (int, error) { port++; return port, nil },
	}
	return h
}

// reconcile plans from the store and the fake runtime, and executes.
func (h *harness) reconcile(t *testing.T, d twin.Desired) error {
	t.Helper()
	sts, err := h.store.Services()
	if err != nil {
		t.Fatal(err)
	}
	insts, _ := h.rt.List(context.Background())
	h.events = nil
	return h.ex.Execute(context.Background(), Plan(d, Observed{Now: h.now, Services: sts, Instances: insts}))
}

func (h *harness) state(t *testing.T, name string) boltstore.ServiceState {
	t.Helper()
	st, err := h.store.Service(name)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func quick(name string, c byte) twin.ServiceSpec {
	s := spec(name, c)
	s.Health.StartTimeoutMs = 30
	return s
}

func TestExecutorBlueGreen(t *testing.T) {
	h := newHarness(t)
	if err := h.reconcile(t, desired(1, quick("iris", 'a'))); err != nil {
		t.Fatal(err)
	}
	st := h.state(t, "iris")
	if st.Phase != twin.Running || st.Image != img('a') || st.Port != 5001 || st.Instance != InstanceID("iris", img('a'), 1) {
		t.Fatalf("after install: %+v", st)
	}
	if got := h.router.routes; len(got) != 1 || got[0].Backend.Port() != "5001" || got[0].Model != "iris" {
		t.Fatalf("routes after install: %+v", got)
	}

	if err := h.reconcile(t, desired(2, quick("iris", 'b'))); err != nil {
		t.Fatal(err)
	}
	oldID, newID := st.Instance, InstanceID("iris", img('b'), 2)
	want := []string{"pull b", "start " + newID, "routes iris=5002", "stop " + oldID}
	if got := onlyRuntimeAndRoutes(h.events); !slices.Equal(got, want) {
		t.Fatalf("update events = %q, want %q (route switched before the old stops)", got, want)
	}
	st = h.state(t, "iris")
	if st.Image != img('b') || st.Previous != img('a') || st.Phase != twin.Running || st.Wanted != "" {
		t.Fatalf("after update: %+v", st)
	}
	if !slices.Equal(h.rt.gcKeep, []string{img('a'), img('b')}) {
		t.Fatalf("GC kept %q, want current and previous", h.rt.gcKeep)
	}

	if err := h.reconcile(t, desired(3, quick("iris", 'c'))); err != nil {
		t.Fatal(err)
	}
	if st = h.state(t, "iris"); st.Previous != img('b') || !slices.Equal(h.rt.gcKeep, []string{img('b'), img('c')}) {
		t.Fatalf("after second update: previous %q, GC kept %q", st.Previous, h.rt.gcKeep)
	}
	if err := h.reconcile(t, desired(3, quick("iris", 'c'))); err != nil || len(h.events) != 0 {
		t.Fatalf("steady state did something: %q, %v", h.events, err)
	}
}

func onlyRuntimeAndRoutes(events []string) []string {
	var out []string
	for i, e := range events {
		// Keep only the last routes event before a stop, and runtime events.
		if strings.HasPrefix(e, "routes") && i+1 < len(events) && strings.HasPrefix(events[i+1], "routes") {
			continue
		}
		out = append(out, e)
	}
	return out
}

func TestExecutorFailures(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(h *harness)
		wantPhase  twin.Phase
		wantReason string
	}{
		{"pull error", func(h *harness) { h.rt.pullErr[img('b')] = errors.New("registry unreachable") }, twin.RolledBack, "registry unreachable"},
		{"crash on start", func(h *harness) { h.rt.crash[img('b')] = true }, twin.RolledBack, "exited (code 1)"},
		{"probe timeout", func(h *harness) { h.rt.sick[img('b')] = true }, twin.RolledBack, "not healthy at /healthz within startTimeoutMs 30"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			if err := h.reconcile(t, desired(1, quick("iris", 'a'))); err != nil {
				t.Fatal(err)
			}
			before := h.state(t, "iris")
			tc.setup(h)
			err := h.reconcile(t, desired(2, quick("iris", 'b')))
			if err == nil || !strings.Contains(err.Error(), tc.wantReason) {
				t.Fatalf("Execute err = %v, want one containing %q", err, tc.wantReason)
			}
			st := h.state(t, "iris")
			if st.Phase != tc.wantPhase || !strings.Contains(st.Reason, tc.wantReason) || st.Wanted != img('b') || st.Attempts != 1 {
				t.Fatalf("state = %+v", st)
			}
			if st.Instance != before.Instance || st.Image != img('a') || st.Port != before.Port {
				t.Fatalf("old version no longer serves: %+v", st)
			}
			insts, _ := h.rt.List(context.Background())
			if len(insts) != 1 || insts[0].ID != before.Instance {
				t.Fatalf("instances = %+v, want only the old one", insts)
			}
			if r := h.router.routes; len(r) != 1 || r[0].Backend.Port() != fmt.Sprint(before.Port) {
				t.Fatalf("routes = %+v, want the old backend", r)
			}
			// The retry waits for the backoff, then runs.
			if err := h.reconcile(t, desired(2, quick("iris", 'b'))); err != nil || len(h.events) != 0 {
				t.Fatalf("retried too early: %q %v", h.events, err)
			}
			h.now = h.now.Add(RetryBase)
			h.rt.pullErr, h.rt.crash, h.rt.sick = map[string]error{}, map[string]bool{}, map[string]bool{}
			if err := h.reconcile(t, desired(2, quick("iris", 'b'))); err != nil {
				t.Fatal(err)
			}
			if st := h.state(t, "iris"); st.Phase != twin.Running || st.Image != img('b') || st.Attempts != 0 || st.Reason != "" {
				t.Fatalf("after retry: %+v", st)
			}
		})
	}
}

func TestExecutorFailedInstall(t *testing.T) {
	h := newHarness(t)
	h.rt.crash[img('a')] = true
	if err := h.reconcile(t, desired(1, quick("iris", 'a'))); err == nil {
		t.Fatal("no error")
	}
	st := h.state(t, "iris")
	if st.Phase != twin.Failed || st.Instance != "" || len(h.router.routes) != 0 {
		t.Fatalf("state = %+v, routes %+v", st, h.router.routes)
	}
}

func TestExecutorRemove(t *testing.T) {
	h := newHarness(t)
	if err := h.reconcile(t, desired(1, quick("iris", 'a'), quick("digits", 'b'))); err != nil {
		t.Fatal(err)
	}
	id := h.state(t, "iris").Instance
	if err := h.reconcile(t, desired(2, quick("digits", 'b'))); err != nil {
		t.Fatal(err)
	}
	want := []string{"routes digits=5002", "stop " + id}
	if !slices.Equal(h.events[:2], want) {
		t.Fatalf("events = %q, want route removed before stop %q", h.events, want)
	}
	if _, err := h.store.Service("iris"); err == nil {
		t.Fatal("state of removed service kept")
	}
	if !slices.Equal(h.rt.gcKeep, []string{img('b')}) {
		t.Fatalf("GC kept %q", h.rt.gcKeep)
	}
}

// TestExecutorDaemonRestart: a new executor over the same store and runtime
// re-attaches without restarting anything; after a reboot (no tasks) it
// restarts the instances from local state with no desired document at all.
func TestExecutorDaemonRestart(t *testing.T) {
	h := newHarness(t)
	if err := h.reconcile(t, desired(1, quick("iris", 'a'))); err != nil {
		t.Fatal(err)
	}
	id := h.state(t, "iris").Instance
	h.router.routes = nil
	if err := h.reconcile(t, desired(1, quick("iris", 'a'))); err != nil || len(h.events) != 0 {
		t.Fatalf("re-attach did %q, %v", h.events, err)
	}
	if err := h.ex.SyncRoutes(); err != nil || len(h.router.routes) != 1 {
		t.Fatalf("routes after re-attach: %+v %v", h.router.routes, err)
	}

	h.rt.mu.Lock()
	in := h.rt.instances[id]
	in.State = InstanceNoTask
	h.rt.instances[id] = in
	h.rt.mu.Unlock()
	if err := h.reconcile(t, twin.Desired{}); err != nil {
		t.Fatal(err)
	}
	if h.events[0] != "restart "+id {
		t.Fatalf("after reboot events = %q", h.events)
	}
	if st := h.state(t, "iris"); st.Phase != twin.Running || st.Restarts != 1 {
		t.Fatalf("after restart: %+v", st)
	}
}

func TestExecutorCancelledDeployIsNotAFailure(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	h.ex.Probe = func(ctx context.Context, u string, timeout time.Duration) error {
		cancel()
		return errors.New("not yet")
	}
	err := h.ex.Execute(ctx, Plan(desired(1, spec("iris", 'a')), Observed{Now: h.now}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if st := h.state(t, "iris"); st.Attempts != 0 || st.Phase == twin.Failed {
		t.Fatalf("cancelled deploy counted as failure: %+v", st)
	}
}

func TestInstanceID(t *testing.T) {
	long := strings.Repeat("s", 63)
	for _, tc := range []struct{ service, image string }{{"iris", img('a')}, {long, img('f')}} {
		id := InstanceID(tc.service, tc.image, 123456)
		if len(id) > 76 || strings.Trim(id, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			t.Fatalf("InstanceID(%q) = %q", tc.service, id)
		}
	}
}
