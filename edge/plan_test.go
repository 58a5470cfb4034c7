package edge

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/edge/internal/boltstore"
	"github.com/mlfleet/mlfleet/shared/twin"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func img(c byte) string { return "reg.local/models/iris@sha256:" + strings.Repeat(string(c), 64) }

func spec(name string, c byte) twin.ServiceSpec {
	return twin.ServiceSpec{Name: name, Image: img(c)}
}

func desired(version uint64, specs ...twin.ServiceSpec) twin.Desired {
	return twin.Desired{Protocol: 1, Device: "d-1", Version: version, Services: specs}
}

// running is a persisted state of a service serving image c from instance id.
func running(name string, c byte, id string) boltstore.ServiceState {
	return boltstore.ServiceState{Name: name, Spec: spec(name, c).WithDefaults(), Image: img(c), Instance: id, Port: 4000, Phase: twin.Running, Since: t0}
}

func inst(id, service string, state InstanceState) Instance {
	return Instance{ID: id, Service: service, State: state}
}

func states(sts ...boltstore.ServiceState) map[string]boltstore.ServiceState {
	m := map[string]boltstore.ServiceState{}
	for _, s := range sts {
		m[s.Name] = s
	}
	return m
}

func with(st boltstore.ServiceState, f func(*boltstore.ServiceState)) boltstore.ServiceState {
	f(&st)
	return st
}

// summary renders actions as "kind:service/instance(reason)".
func summary(as []Action) string {
	var parts []string
	for _, a := range as {
		s := string(a.Kind)
		if a.Service != "" {
			s += ":" + a.Service
		}
		if a.Instance != "" {
			s += "/" + a.Instance
		}
		if a.Reason != "" && a.Kind != ActGC {
			s += "(" + a.Reason + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func TestPlan(t *testing.T) {
	failedAt := t0.Add(-5 * time.Second)
	failed := func(st boltstore.ServiceState, wanted byte, attempts int, phase twin.Phase) boltstore.ServiceState {
		return with(st, func(s *boltstore.ServiceState) {
			s.Phase, s.Wanted, s.Attempts, s.FailedAt, s.Reason = phase, img(wanted), attempts, failedAt, "probe timeout"
		})
	}
	envSpec := spec("iris", 'a')
	envSpec.Env = map[string]string{"LOG": "debug"}
	pulled := spec("iris", 'a')
	pulled.Pull = &twin.PullAuth{Username: "u", Password: "rotated"}

	tests := []struct {
		name      string
		desired   twin.Desired
		services  map[string]boltstore.ServiceState
		instances []Instance
		unhealthy map[string]bool
		now       time.Time
		want      string
	}{
		{name: "nothing to do", desired: desired(1), want: ""},
		{name: "fresh install", desired: desired(1, spec("iris", 'a')),
			want: "deploy:iris(install) gc"},
		{name: "two installs sorted", desired: desired(1, spec("b", 'a'), spec("a", 'b')),
			want: "deploy:b(install) deploy:a(install) gc"},
		{name: "steady state", desired: desired(2, spec("iris", 'a')),
			services: states(running("iris", 'a', "i1")), instances: []Instance{inst("i1", "iris", InstanceRunning)},
			want: ""},
		{name: "new image is blue/green update", desired: desired(2, spec("iris", 'b')),
			services: states(running("iris", 'a', "i1")), instances: []Instance{inst("i1", "iris", InstanceRunning)},
			want: "deploy:iris(update) gc"},
		{name: "env change is update", desired: desired(2, envSpec),
			services: states(running("iris", 'a', "i1")), instances: []Instance{inst("i1", "iris", InstanceRunning)},
			want: "deploy:iris(update) gc"},
		{name: "rotated pull credentials are not a change", desired: desired(2, pulled),
			services: states(running("iris", 'a', "i1")), instances: []Instance{inst("i1", "iris", InstanceRunning)},
			want: ""},
		{name: "removed service", desired: desired(3),
			services: states(running("iris", 'a', "i1")), instances: []Instance{inst("i1", "iris", InstanceRunning)},
			want: "remove:iris/i1(not desired) gc"},
		{name: "no desired yet keeps local services", desired: twin.Desired{},
			services: states(running("iris", 'a', "i1")), instances: []Instance{inst("i1", "iris", InstanceRunning)},
			want: ""},
		{name: "no desired yet restarts after reboot", desired: twin.Desired{},
			services: states(running("iris", 'a', "i1")), instances: []Instance{inst("i1", "iris", InstanceNoTask)},
			want: "restart:iris/i1(no task)"},
		{name: "re-attach after daemon restart: nothing", desired: desired(4, spec("iris", 'a')),
			services: states(running("iris", 'a', "i1")), instances: []Instance{inst("i1", "iris", InstanceRunning)},
			want: ""},
		{name: "reboot: no task is restarted", desired: desired(4, spec("iris", 'a')),
			services: states(running("iris", 'a', "i1")), instances: []Instance{inst("i1", "iris", InstanceNoTask)},
			want: "restart:iris/i1(no task)"},
		{name: "crash: exited is restarted", desired: desired(4, spec("iris", 'a')),
			services: states(running("iris", 'a', "i1")), instances: []Instance{inst("i1", "iris", InstanceStopped)},
			want: "restart:iris/i1(exited)"},
		{name: "crash loop waits", desired: desired(4, spec("iris", 'a')),
			services:  states(with(running("iris", 'a', "i1"), func(s *boltstore.ServiceState) { s.Restarts, s.RestartedAt = 3, t0.Add(-time.Second) })),
			instances: []Instance{inst("i1", "iris", InstanceStopped)},
			want:      ""},
		{name: "crash loop backoff elapsed", desired: desired(4, spec("iris", 'a')),
			services:  states(with(running("iris", 'a', "i1"), func(s *boltstore.ServiceState) { s.Restarts, s.RestartedAt = 3, t0.Add(-4*time.Second) })),
			instances: []Instance{inst("i1", "iris", InstanceStopped)},
			want:      "restart:iris/i1(exited)"},
		{name: "old restarts forgotten", desired: desired(4, spec("iris", 'a')),
			services:  states(with(running("iris", 'a', "i1"), func(s *boltstore.ServiceState) { s.Restarts, s.RestartedAt = 20, t0.Add(-RestartReset) })),
			instances: []Instance{inst("i1", "iris", InstanceStopped)},
			want:      "restart:iris/i1(exited)"},
		{name: "instance vanished is redeployed", desired: desired(4, spec("iris", 'a')),
			services: states(running("iris", 'a', "i1")),
			want:     "deploy:iris(instance missing) gc"},
		{name: "unhealthy is replaced", desired: desired(4, spec("iris", 'a')),
			services: states(running("iris", 'a', "i1")), instances: []Instance{inst("i1", "iris", InstanceRunning)},
			unhealthy: map[string]bool{"i1": true},
			want:      "deploy:iris(unhealthy) gc"},
		{name: "orphans are stopped", desired: desired(4, spec("iris", 'a')),
			services:  states(running("iris", 'a', "i1")),
			instances: []Instance{inst("i1", "iris", InstanceRunning), inst("i2", "iris", InstanceRunning), inst("x9", "", InstanceNoTask)},
			want:      "stop-orphan:iris/i2(no service state refers to it) stop-orphan/x9(no service state refers to it)"},
		{name: "failed update waits for retry", desired: desired(5, spec("iris", 'b')),
			services:  states(failed(running("iris", 'a', "i1"), 'b', 1, twin.RolledBack)),
			instances: []Instance{inst("i1", "iris", InstanceRunning)},
			want:      ""},
		{name: "failed update retried after backoff", desired: desired(5, spec("iris", 'b')),
			services:  states(failed(running("iris", 'a', "i1"), 'b', 1, twin.RolledBack)),
			instances: []Instance{inst("i1", "iris", InstanceRunning)},
			now:       failedAt.Add(RetryBase),
			want:      "deploy:iris(update) gc"},
		{name: "retry backoff doubles", desired: desired(5, spec("iris", 'b')),
			services:  states(failed(running("iris", 'a', "i1"), 'b', 3, twin.RolledBack)),
			instances: []Instance{inst("i1", "iris", InstanceRunning)},
			now:       failedAt.Add(4*RetryBase - time.Millisecond),
			want:      ""},
		{name: "retry backoff capped", desired: desired(5, spec("iris", 'b')),
			services:  states(failed(running("iris", 'a', "i1"), 'b', 40, twin.RolledBack)),
			instances: []Instance{inst("i1", "iris", InstanceRunning)},
			now:       failedAt.Add(RetryMax),
			want:      "deploy:iris(update) gc"},
		{name: "a different new image is tried at once", desired: desired(6, spec("iris", 'c')),
			services:  states(failed(running("iris", 'a', "i1"), 'b', 5, twin.RolledBack)),
			instances: []Instance{inst("i1", "iris", InstanceRunning)},
			want:      "deploy:iris(update) gc"},
		{name: "cloud reverts to what serves: settle", desired: desired(6, spec("iris", 'a')),
			services:  states(failed(running("iris", 'a', "i1"), 'b', 5, twin.RolledBack)),
			instances: []Instance{inst("i1", "iris", InstanceRunning)},
			want:      "settle:iris(serving desired spec)"},
		{name: "failed install waits", desired: desired(1, spec("iris", 'a')),
			services: states(boltstore.ServiceState{Name: "iris", Phase: twin.Failed, Wanted: img('a'), Attempts: 1, FailedAt: failedAt}),
			want:     ""},
		{name: "failed install retried", desired: desired(1, spec("iris", 'a')),
			services: states(boltstore.ServiceState{Name: "iris", Phase: twin.Failed, Wanted: img('a'), Attempts: 1, FailedAt: failedAt}),
			now:      t0.Add(time.Hour),
			want:     "deploy:iris(install) gc"},
		{name: "interrupted deploy resumes at once", desired: desired(2, spec("iris", 'b')),
			services:  states(with(running("iris", 'a', "i1"), func(s *boltstore.ServiceState) { s.Phase, s.Wanted = twin.Starting, img('b') })),
			instances: []Instance{inst("i1", "iris", InstanceRunning), inst("iris-bbbb-2", "iris", InstanceRunning)},
			want:      "stop-orphan:iris/iris-bbbb-2(no service state refers to it) deploy:iris(update) gc"},
		{name: "everything at once", desired: desired(9, spec("new", 'c'), spec("upd", 'b'), spec("boot", 'a')),
			services:  states(running("gone", 'a', "g1"), running("upd", 'a', "u1"), running("boot", 'a', "b1")),
			instances: []Instance{inst("g1", "gone", InstanceRunning), inst("u1", "upd", InstanceRunning), inst("b1", "boot", InstanceNoTask), inst("zz", "", InstanceStopped)},
			want:      "remove:gone/g1(not desired) stop-orphan/zz(no service state refers to it) restart:boot/b1(no task) deploy:new(install) deploy:upd(update) gc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			if now.IsZero() {
				now = t0
			}
			got := Plan(tc.desired, Observed{Now: now, Services: tc.services, Instances: tc.instances, Unhealthy: tc.unhealthy})
			if s := summary(got); s != tc.want {
				t.Fatalf("Plan =\n  %s\nwant\n  %s", s, tc.want)
			}
			for _, a := range got {
				if a.Kind == ActDeploy && (a.Spec.Health.Path == "" || a.Spec.Port == 0 || a.Spec.Model == "") {
					t.Fatalf("deploy spec without defaults: %+v", a.Spec)
				}
			}
		})
	}
}

// TestPlanDeterministic checks Plan gives the same answer for the same input
// (map iteration order must not leak).
func TestPlanDeterministic(t *testing.T) {
	var specs []twin.ServiceSpec
	sts := map[string]boltstore.ServiceState{}
	var insts []Instance
	for i := range 20 {
		name := fmt.Sprintf("s%02d", i)
		specs = append(specs, spec(name, 'b'))
		sts[name] = running(name, 'a', "i"+name)
		insts = append(insts, inst("i"+name, name, InstanceRunning), inst("o"+name, name, InstanceRunning))
	}
	first := summary(Plan(desired(1, specs...), Observed{Now: t0, Services: sts, Instances: insts}))
	for range 20 {
		if got := summary(Plan(desired(1, specs...), Observed{Now: t0, Services: sts, Instances: insts})); got != first {
			t.Fatalf("Plan not deterministic:\n%s\n%s", got, first)
		}
	}
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{{0, RetryBase}, {1, 2 * RetryBase}, {3, 8 * RetryBase}, {100, RetryMax}} {
		if got := backoff(RetryBase, RetryMax, tc.n); got != tc.want {
			t.Errorf("backoff(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}
