package cloud

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// Unit tests of the rollout decision logic with a fake clock; the engine
// itself is tested against a real cloud and simulated devices in
// cloud/server and against containerd in examples.

const (
	oldRef = "r/a/m/iris@sha256:1111111111111111111111111111111111111111111111111111111111111111"
	newRef = "r/a/m/iris@sha256:2222222222222222222222222222222222222222222222222222222222222222"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func fleet(n int, online bool) []Device {
	var out []Device
	for i := 0; i < n; i++ {
		out = append(out, Device{ID: fmt.Sprintf("d-%02d", i), Online: online})
	}
	return out
}

func newRollout(spec RolloutSpec, devs []Device) *Rollout {
	if err := spec.normalize(); err != nil {
		panic(err)
	}
	ro := &Rollout{ToRef: newRef, FromRef: oldRef, Spec: spec, State: RolloutRunning, BatchSize: spec.sizes(len(devs)), Devices: map[string]DeviceOutcome{}}
	i := 0
	for b, n := range ro.BatchSize {
		for k := 0; k < n; k++ {
			ro.Devices[devs[i].ID] = DeviceOutcome{Batch: b, State: DevicePending, Since: t0}
			i++
		}
	}
	return ro
}

// report makes devs[i] report the service in phase on image.
func report(d *Device, version uint64, phase twin.Phase, image string, healthy bool, reason string) {
	d.Reported = &twin.Reported{ObservedVersion: version, Services: []twin.ServiceStatus{{Name: "iris", Phase: phase, Image: image, Healthy: healthy, Reason: reason}}}
}

func step(s *Service, ro *Rollout, devs []Device, now time.Time) ([]string, bool) {
	var assign []string
	done := s.decide(ro, &ScoringService{Name: "iris"}, devs, nil, now, &assign)
	for _, id := range assign {
		o := ro.Devices[id]
		o.Version = 10
		ro.Devices[id] = o
	}
	return assign, done
}

func TestBatchSizes(t *testing.T) {
	cases := []struct {
		batches []BatchSpec
		n       int
		want    string
	}{
		{nil, 10, "[10]"},
		{[]BatchSpec{{Percent: 10}}, 10, "[1 9]"},
		{[]BatchSpec{{Count: 1}, {Percent: 50}}, 10, "[1 5 4]"},
		{[]BatchSpec{{Percent: 1}}, 3, "[1 2]"},
		{[]BatchSpec{{Count: 5}, {Count: 5}}, 3, "[3]"},
		{[]BatchSpec{{Percent: 100}}, 7, "[7]"},
		{[]BatchSpec{{Percent: 20}, {Percent: 20}, {Percent: 20}, {Percent: 20}}, 10000, "[2000 2000 2000 2000 2000]"},
	}
	for _, c := range cases {
		r := RolloutSpec{Batches: c.batches}
		if got := fmt.Sprint(r.sizes(c.n)); got != c.want {
			t.Errorf("sizes(%v, %d) = %s, want %s", c.batches, c.n, got, c.want)
		}
	}
}

func TestRolloutSpecValidation(t *testing.T) {
	cases := []struct {
		spec  RolloutSpec
		field string
	}{
		{RolloutSpec{Batches: []BatchSpec{{}}}, "batches[0]"},
		{RolloutSpec{Batches: []BatchSpec{{Count: 1, Percent: 5}}}, "batches[0]"},
		{RolloutSpec{Batches: []BatchSpec{{Percent: 120}}}, "batches[0]"},
		{RolloutSpec{Batches: []BatchSpec{{Count: -2}}}, "batches[0]"},
		{RolloutSpec{SuccessThreshold: 1.5}, "successThreshold"},
		{RolloutSpec{ErrorThreshold: 1}, "errorThreshold"},
		{RolloutSpec{SoakSeconds: -1}, "soakSeconds"},
		{RolloutSpec{MaxUnavailable: -1}, "maxUnavailable"},
		{RolloutSpec{SLO: &SLOGate{}}, "slo"},
		{RolloutSpec{SLO: &SLOGate{MaxErrorRate: ptr(2.0)}}, "slo.maxErrorRate"},
		{RolloutSpec{SLO: &SLOGate{MaxP99Ms: ptr(-1.0)}}, "slo.maxP99Ms"},
		{RolloutSpec{SLO: &SLOGate{MaxErrorRate: ptr(0.05), MaxP99Ms: ptr(100.0)}}, ""},
		{RolloutSpec{Batches: []BatchSpec{{Count: 1}}, SoakSeconds: 30}, ""},
	}
	for _, c := range cases {
		err := c.spec.normalize()
		got := ""
		if err != nil {
			got = errclassField(err)
		}
		if (err == nil) != (c.field == "") || got != c.field {
			t.Errorf("normalize(%+v) = %v (field %q), want field %q", c.spec, err, got, c.field)
		}
	}
}

func TestRolloutBatchesAndSoak(t *testing.T) {
	s := &Service{}
	devs := fleet(4, true)
	ro := newRollout(RolloutSpec{Batches: []BatchSpec{{Count: 1}}, SoakSeconds: 60}, devs)
	assign, done := step(s, ro, devs, t0)
	if fmt.Sprint(assign) != "[d-00]" || done {
		t.Fatalf("first step assigns %v, done=%v; want the canary d-00", assign, done)
	}
	// The canary reports healthy: soak starts, nothing else moves.
	report(&devs[0], 10, twin.Running, newRef, true, "")
	if assign, _ = step(s, ro, devs, t0.Add(time.Second)); len(assign) != 0 || ro.BatchDoneAt == nil {
		t.Fatalf("during soak: assigned %v, batchDoneAt %v", assign, ro.BatchDoneAt)
	}
	if assign, _ = step(s, ro, devs, t0.Add(30*time.Second)); len(assign) != 0 {
		t.Fatalf("mid-soak assigned %v", assign)
	}
	// Soak over: the implicit last batch (3 devices) goes.
	assign, _ = step(s, ro, devs, t0.Add(62*time.Second))
	if fmt.Sprint(assign) != "[d-01 d-02 d-03]" || ro.Batch != 1 {
		t.Fatalf("after soak: assigned %v, batch %d", assign, ro.Batch)
	}
	for i := 1; i < 4; i++ {
		report(&devs[i], 10, twin.Running, newRef, true, "")
	}
	step(s, ro, devs, t0.Add(63*time.Second))
	if _, done = step(s, ro, devs, t0.Add(124*time.Second)); !done {
		t.Fatalf("not done after the last batch soaked: %+v", ro)
	}
}

func TestRolloutErrorThresholdTrips(t *testing.T) {
	cases := []struct {
		name      string
		threshold float64
		fails     int
		tripped   bool
	}{
		{"first failure trips by default", 0, 1, true},
		{"25% allowed, one of eight fails", 0.25, 1, false},
		{"25% allowed, three of eight fail", 0.25, 3, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &Service{}
			devs := fleet(8, true)
			ro := newRollout(RolloutSpec{ErrorThreshold: c.threshold, SuccessThreshold: 0.5}, devs)
			step(s, ro, devs, t0)
			for i := range devs {
				if i < c.fails {
					report(&devs[i], 10, twin.RolledBack, oldRef, true, "container exited with code 1")
				} else {
					report(&devs[i], 10, twin.Running, newRef, true, "")
				}
			}
			step(s, ro, devs, t0.Add(time.Second))
			if tripped := ro.State == RolloutReverted; tripped != c.tripped {
				t.Fatalf("state %s (%s), want tripped=%v", ro.State, ro.Message, c.tripped)
			}
			if c.tripped && !strings.Contains(ro.Message, "failed") {
				t.Errorf("message %q", ro.Message)
			}
			if o := ro.Devices["d-00"]; o.State != DeviceFailed || o.Reason != "container exited with code 1" {
				t.Errorf("d-00 outcome %+v, want Failed with the device's reason", o)
			}
		})
	}
}

func TestRolloutDeviceTimeoutAndOffline(t *testing.T) {
	s := &Service{}
	devs := fleet(2, true)
	devs[1].Online = false
	ro := newRollout(RolloutSpec{DeviceTimeoutSeconds: 60, ErrorThreshold: 0.9}, devs)
	step(s, ro, devs, t0)
	report(&devs[0], 10, twin.Running, newRef, true, "")
	// The offline device waits...
	step(s, ro, devs, t0.Add(59*time.Second))
	if o := ro.Devices["d-01"]; o.State != DeviceUpdating {
		t.Fatalf("offline device before timeout: %+v", o)
	}
	// ... then counts as failed, with the reason.
	step(s, ro, devs, t0.Add(61*time.Second))
	if o := ro.Devices["d-01"]; o.State != DeviceFailed || !strings.Contains(o.Reason, "offline") {
		t.Fatalf("offline device after timeout: %+v", o)
	}
}

func TestRolloutSuccessThresholdAndLateJoiners(t *testing.T) {
	s := &Service{}
	devs := fleet(4, true)
	ro := newRollout(RolloutSpec{SuccessThreshold: 0.75, ErrorThreshold: 0.5, Batches: []BatchSpec{{Percent: 50}}}, devs)
	step(s, ro, devs, t0)
	report(&devs[0], 10, twin.Running, newRef, true, "")
	report(&devs[1], 10, twin.Failed, oldRef, false, "probe failed")
	step(s, ro, devs, t0.Add(time.Second))
	if ro.State != RolloutReverted || !strings.Contains(ro.Message, "success threshold") {
		t.Fatalf("1 of 2 healthy with threshold 75%%: state %s %q", ro.State, ro.Message)
	}

	// A device enrolled mid-rollout joins the last batch.
	devs = fleet(2, true)
	ro = newRollout(RolloutSpec{Batches: []BatchSpec{{Count: 1}}}, devs)
	step(s, ro, devs, t0)
	devs = append(devs, Device{ID: "d-99", Online: true})
	step(s, ro, devs, t0.Add(time.Second))
	if o, ok := ro.Devices["d-99"]; !ok || o.Batch != 1 {
		t.Fatalf("late joiner = %+v %v, want in the last batch", o, ok)
	}
}

func TestRolloutSLOVerdicts(t *testing.T) {
	const why = "slo: error rate 0.31 over 0.05 (155 of 500 requests)"
	cases := []struct {
		name      string
		threshold float64
		slo       map[string]string
		state     string // of the rollout after the step
		d0        string // d-00's state (the step, not decide, reverts)
	}{
		{"a broken gate fails the device and trips the threshold", 0, map[string]string{"d-00": why}, RolloutReverted, DeviceFailed},
		{"under the error threshold the soak goes on", 0.5, map[string]string{"d-00": why}, RolloutRunning, DeviceFailed},
		{"no verdicts: still soaking", 0, nil, RolloutRunning, DeviceHealthy},
		{"a verdict on a device not in the rollout is ignored", 0, map[string]string{"d-99": why}, RolloutRunning, DeviceHealthy},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := &Service{}
			devs := fleet(4, true)
			ro := newRollout(RolloutSpec{ErrorThreshold: c.threshold, SuccessThreshold: 0.5, SoakSeconds: 60,
				SLO: &SLOGate{MaxErrorRate: ptr(0.05)}}, devs)
			step(s, ro, devs, t0)
			for i := range devs {
				report(&devs[i], 10, twin.Running, newRef, true, "")
			}
			step(s, ro, devs, t0.Add(time.Second))
			_, done := stepSLO(s, ro, devs, c.slo, t0.Add(10*time.Second))
			if ro.State != c.state || done {
				t.Fatalf("rollout %s (%s) done=%v, want %s", ro.State, ro.Message, done, c.state)
			}
			if o := ro.Devices["d-00"]; o.State != c.d0 {
				t.Fatalf("d-00 %+v, want %s", o, c.d0)
			}
			if c.d0 != DeviceHealthy && ro.Devices["d-00"].Reason != why {
				t.Errorf("d-00 reason %q, want %q", ro.Devices["d-00"].Reason, why)
			}
			if ro.State == RolloutRunning {
				if _, done = stepSLO(s, ro, devs, nil, t0.Add(62*time.Second)); !done {
					t.Errorf("not done after the soak: %+v", ro.Counts)
				}
			}
		})
	}
}

func TestRolloutMaxUnavailable(t *testing.T) {
	s := &Service{}
	devs := fleet(5, true)
	ro := newRollout(RolloutSpec{MaxUnavailable: 2}, devs)
	if assign, _ := step(s, ro, devs, t0); len(assign) != 2 {
		t.Fatalf("assigned %v, want 2 at a time", assign)
	}
	report(&devs[0], 10, twin.Running, newRef, true, "")
	if assign, _ := step(s, ro, devs, t0.Add(time.Second)); fmt.Sprint(assign) != "[d-02]" {
		t.Fatalf("then assigned %v, want [d-02]", assign)
	}
}

func errclassField(err error) string { return errclass.FieldOf(err) }
