package examples

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/server"
	"github.com/mlfleet/mlfleet/edge/sim"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// Rollout semantics against the real cloud (embedded broker, real images)
// and a simulated fleet speaking the real MQTT protocol.

// restartableCloud is a cloud that can be stopped and started again on the
// same data dir and ports (devices and image references keep working).
type restartableCloud struct {
	*cloudAPI
	dir, addr, mqtt string
	stop            func()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func newRestartableCloud(t *testing.T) *restartableCloud {
	t.Helper()
	rc := &restartableCloud{dir: t.TempDir(), addr: freeAddr(t), mqtt: freeAddr(t)}
	tok, err := server.Init(context.Background(), rc.dir, "admin", "", "")
	if err != nil {
		t.Fatal(err)
	}
	rc.cloudAPI = &cloudAPI{t: t, url: "http://" + rc.addr, token: tok.Secret}
	rc.start(t)
	t.Cleanup(func() { rc.stop() })
	rc.json("POST", "/api/v1/subscriptions", `{"name":"demo"}`, 201, nil)
	rc.json("POST", "/api/v1/subscriptions/demo/accounts", `{"name":"models","kind":"modelmanagement"}`, 201, nil)
	return rc
}

func (rc *restartableCloud) start(t *testing.T) {
	t.Helper()
	srv, err := server.New(server.Config{DataDir: rc.dir, Addr: rc.addr, MQTTAddr: rc.mqtt, ScorerDir: scorers(t),
		RolloutTick: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	stopped := false
	rc.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
}

// fleet enrolls n simulated devices with labels and runs them.
func (c *cloudAPI) fleet(t *testing.T, n int, labels map[string]string, failImages map[string]string) (*sim.Fleet, []sim.Identity) {
	t.Helper()
	return c.fleetWith(t, n, labels, func(cfg *sim.Config) { cfg.FailImages = failImages })
}

// fleetWith is fleet with the simulator's settings edited.
func (c *cloudAPI) fleetWith(t *testing.T, n int, labels map[string]string, edit func(*sim.Config)) (*sim.Fleet, []sim.Identity) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tokens, err := sim.CloudTokens(c.url, c.token, "demo", "models", labels)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := sim.Enroll(ctx, c.url, tokens, n, 4)
	if err != nil {
		t.Fatal(err)
	}
	cfg := sim.Config{MQTTURL: ids[0].MQTTURL, Devices: ids, PullTime: 20 * time.Millisecond, StartTime: 20 * time.Millisecond,
		Seed: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	edit(&cfg)
	f, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, 30*time.Second, "simulated devices online", func() bool { return f.Stats().Online == n })
	return f, ids
}

func (c *cloudAPI) rollout(service, id string) cloud.Rollout {
	c.t.Helper()
	var ro cloud.Rollout
	c.json("GET", acctPath+"/services/"+service+"/rollouts/"+id, "", 200, &ro)
	return ro
}

func (c *cloudAPI) waitRollout(service, id, state string) cloud.Rollout {
	c.t.Helper()
	var ro cloud.Rollout
	defer func() {
		if c.t.Failed() {
			c.t.Logf("rollout %s last seen: state %s batch %d counts %v message %q", id, ro.State, ro.Batch, ro.Counts, ro.Message)
		}
	}()
	last := time.Now()
	eventually(c.t, time.Minute, "rollout "+id+" "+state, func() bool {
		ro = c.rollout(service, id)
		if time.Since(last) > 5*time.Second {
			last = time.Now()
			c.t.Logf("rollout %s: state %s batch %d counts %v message %q", id, ro.State, ro.Batch, ro.Counts, ro.Message)
		}
		if ro.State != cloud.RolloutRunning && ro.State != cloud.RolloutPaused && ro.State != state {
			c.t.Fatalf("rollout ended %s, want %s: %s %v", ro.State, state, ro.Message, ro.Counts)
		}
		return ro.State == state
	})
	return ro
}

// running counts the fleet's devices that report service iris Running on image.
func (c *cloudAPI) running(image string) int {
	c.t.Helper()
	var page cloud.Page[cloud.Device]
	c.json("GET", acctPath+"/devices?limit=1000", "", 200, &page)
	n := 0
	for _, d := range page.Items {
		if s := serviceStatus(d, "iris"); s.Phase == twin.Running && s.Image == image {
			n++
		}
	}
	return n
}

func (c *cloudAPI) startRollout(body string) cloud.Rollout {
	c.t.Helper()
	var ro cloud.Rollout
	c.json("POST", acctPath+"/services/iris/rollouts", body, 201, &ro)
	return ro
}

// TestRolloutSemantics walks one fleet through the rollout engine's cases.
func TestRolloutSemantics(t *testing.T) {
	c := newRestartableCloud(t)
	v1 := c.image("iris", "testdata/iris_logreg.onnx")
	v2 := c.image("iris", "testdata/iris_mlp.onnx")
	bad := c.image("iris", "testdata/iris_svc.onnx") // the simulated devices crash on this one
	const n = 10
	f, ids := c.fleet(t, n, map[string]string{"fleet": "sim"}, map[string]string{bad.Reference: "container exited with code 2 at start"})
	parent := t

	c.json("POST", acctPath+"/environments", `{"name":"sim","selector":{"fleet":"sim"}}`, 201, nil)
	var created struct {
		Rollout cloud.Rollout `json:"rollout"`
	}
	c.json("POST", acctPath+"/services", `{"name":"iris","environment":"sim","image":"iris:1"}`, 201, &created)
	c.waitRollout("iris", created.Rollout.ID, cloud.RolloutSucceeded)
	if got := c.running(v1.Reference); got != n {
		t.Fatalf("after the first rollout %d of %d devices run v1", got, n)
	}

	t.Run("bad input", func(t *testing.T) {
		c.json("POST", acctPath+"/services/iris/rollouts", `{"image":"ghost:1"}`, 400, nil)
		c.json("POST", acctPath+"/services/iris/rollouts", `{"image":"otheracct/iris@sha256:`+strings.Repeat("0", 64)+`"}`, 400, nil)
		c.json("POST", acctPath+"/services/iris/rollouts", `{"image":"iris:2","batches":[{"count":1,"percent":5}]}`, 400, nil)
		c.json("POST", acctPath+"/services/iris/rollouts", `{"image":"iris:2","batches":[{"percent":150}]}`, 400, nil)
		c.json("POST", acctPath+"/services/iris/rollouts", `{"image":"iris:1"}`, 409, nil) // already there
		c.json("POST", acctPath+"/environments", `{"name":"empty","selector":{"fleet":"none"}}`, 201, nil)
		c.json("POST", acctPath+"/services", `{"name":"lonely","environment":"empty","image":"iris:1"}`, 409, nil)
		c.json("DELETE", acctPath+"/images/iris/versions/1", "", 409, nil) // the service uses it
		c.json("DELETE", acctPath+"/environments/sim", "", 409, nil)       // likewise
	})

	t.Run("batches and soak, then a second rollout at once is refused", func(t *testing.T) {
		ro := c.startRollout(`{"image":"iris:2","batches":[{"count":2},{"percent":30}],"soakSeconds":1}`)
		if fmt.Sprint(ro.BatchSize) != "[2 3 5]" {
			t.Fatalf("batch sizes %v, want [2 3 5]", ro.BatchSize)
		}
		c.json("POST", acctPath+"/services/iris/rollouts", `{"image":"iris:2"}`, 409, nil)
		sawCanaryOnly := false
		eventually(t, time.Minute, "rollout to v2 done", func() bool {
			ro = c.rollout("iris", ro.ID)
			if ro.Batch == 0 && ro.Counts[cloud.DeviceHealthy] == 2 && ro.Counts[cloud.DevicePending] == n-2 {
				sawCanaryOnly = true // the canary batch soaks while the others wait
			}
			return ro.State == cloud.RolloutSucceeded
		})
		if !sawCanaryOnly {
			t.Error("never saw the canary batch healthy with the rest pending")
		}
		if got := c.running(v2.Reference); got != n {
			t.Errorf("%d of %d devices run v2", got, n)
		}
	})

	t.Run("error threshold trips and reverts updated devices", func(t *testing.T) {
		ro := c.startRollout(`{"image":"iris:3","batches":[{"count":2},{"count":3}]}`)
		ro = c.waitRollout("iris", ro.ID, cloud.RolloutReverted)
		if !strings.Contains(ro.Message, "failed") {
			t.Errorf("message %q", ro.Message)
		}
		failed := 0
		for _, o := range ro.Devices {
			if o.Reason == "container exited with code 2 at start" {
				failed++
			}
			if o.State == cloud.DeviceHealthy || o.State == cloud.DeviceUpdating {
				t.Errorf("device left %s after the revert", o.State)
			}
		}
		if failed == 0 {
			t.Errorf("no device outcome carries the device's failure reason: %+v", ro.Devices)
		}
		eventually(t, 30*time.Second, "every device serves v2 again", func() bool { return c.running(v2.Reference) == n })
		var svc cloud.ScoringService
		c.json("GET", acctPath+"/services/iris", "", 200, &svc)
		if svc.Image != "iris:2" || svc.Rollout != "" {
			t.Errorf("service after revert = %s rollout %q", svc.Image, svc.Rollout)
		}
	})

	t.Run("pause, resume, abort", func(t *testing.T) {
		ro := c.startRollout(`{"image":"iris:1","batches":[{"count":1}],"soakSeconds":30}`)
		c.waitRollout("iris", ro.ID, cloud.RolloutRunning)
		var paused cloud.Rollout
		c.json("POST", acctPath+"/services/iris/rollouts/"+ro.ID+"/pause", "", 200, &paused)
		if paused.State != cloud.RolloutPaused {
			t.Fatalf("pause -> %s", paused.State)
		}
		c.json("POST", acctPath+"/services/iris/rollouts/"+ro.ID+"/pause", "", 409, nil)
		c.json("POST", acctPath+"/services/iris/rollouts/"+ro.ID+"/resume", "", 200, nil)
		eventually(t, 30*time.Second, "canary healthy", func() bool { return c.rollout("iris", ro.ID).Counts[cloud.DeviceHealthy] == 1 })
		var aborted cloud.Rollout
		c.json("POST", acctPath+"/services/iris/rollouts/"+ro.ID+"/abort", "", 200, &aborted)
		if aborted.State != cloud.RolloutAborted || aborted.Counts[cloud.DeviceReverted] != 1 {
			t.Fatalf("abort -> %s %v", aborted.State, aborted.Counts)
		}
		eventually(t, 30*time.Second, "canary back on v2", func() bool { return c.running(v2.Reference) == n })
	})

	t.Run("device offline mid-rollout times out; device enrolled mid-rollout joins", func(t *testing.T) {
		ro := c.startRollout(`{"image":"iris:1","batches":[{"count":2}],"soakSeconds":2,"deviceTimeoutSeconds":2,"errorThreshold":0.5,"successThreshold":0.5}`)
		// The last device (highest id) is in the last batch: take it offline.
		last := ids[0].ID
		for _, id := range ids {
			if id.ID > last {
				last = id.ID
			}
		}
		if err := f.SetOnline(last, false); err != nil {
			t.Fatal(err)
		}
		_, lateIDs := c.fleet(parent, 1, map[string]string{"fleet": "sim"}, nil) // lives as long as the whole test
		ro = c.waitRollout("iris", ro.ID, cloud.RolloutSucceeded)
		if o := ro.Devices[last]; o.State != cloud.DeviceFailed || !strings.Contains(o.Reason, "offline") {
			t.Errorf("offline device outcome %+v, want Failed (offline)", o)
		}
		if o, ok := ro.Devices[lateIDs[0].ID]; !ok || o.State != cloud.DeviceHealthy {
			t.Errorf("late device outcome %+v (%v), want Healthy", o, ok)
		}
		if err := f.SetOnline(last, true); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "the offline device catches up when back", func() bool { return c.running(v1.Reference) == n+1 })
	})

	t.Run("cloud restart mid-rollout resumes", func(t *testing.T) {
		ro := c.startRollout(`{"image":"iris:2","batches":[{"count":1}],"soakSeconds":2}`)
		eventually(t, 30*time.Second, "canary healthy", func() bool { return c.rollout("iris", ro.ID).Counts[cloud.DeviceHealthy] >= 1 })
		c.stop()
		c.start(t)
		c.waitRollout("iris", ro.ID, cloud.RolloutSucceeded)
		eventually(t, 30*time.Second, "all on v2 after the restart", func() bool { return c.running(v2.Reference) == n+1 })
	})

	t.Run("manual rollback", func(t *testing.T) {
		var ro cloud.Rollout
		c.json("POST", acctPath+"/services/iris/rollback", "", 201, &ro)
		if ro.To != "iris:1" {
			t.Fatalf("rollback goes to %s, want iris:1", ro.To)
		}
		c.waitRollout("iris", ro.ID, cloud.RolloutSucceeded)
	})
}

// TestRolloutSLOGate rolls versions out to simulated devices that send
// telemetry like the daemon: a version answering 30% of its requests with
// 5xx, and a slow one, fail their devices in soak on the SLO gate, the
// error threshold trips and the updated devices go back to v1; a version
// within the gate goes through.
func TestRolloutSLOGate(t *testing.T) {
	c := newRestartableCloud(t)
	v1 := c.image("iris", "testdata/iris_logreg.onnx")
	v2 := c.image("iris", "testdata/iris_mlp.onnx")
	v3 := c.image("iris", "testdata/iris_svc.onnx")
	const n = 4
	f, _ := c.fleetWith(t, n, map[string]string{"fleet": "slo"}, func(cfg *sim.Config) {
		cfg.TelemetryInterval, cfg.Requests = 100*time.Millisecond, 50
		cfg.Traffic = map[string]sim.Traffic{
			v1.Reference: {ErrorRate: 0.01, Latency: 20 * time.Millisecond},
			v2.Reference: {ErrorRate: 0.3, Latency: 20 * time.Millisecond}, // serves with 30% errors
			v3.Reference: {Latency: 300 * time.Millisecond},                // serves, slowly
		}
	})
	c.json("POST", acctPath+"/environments", `{"name":"slo","selector":{"fleet":"slo"}}`, 201, nil)
	var created struct {
		Rollout cloud.Rollout `json:"rollout"`
	}
	c.json("POST", acctPath+"/services", `{"name":"iris","environment":"slo","image":"iris:1"}`, 201, &created)
	c.waitRollout("iris", created.Rollout.ID, cloud.RolloutSucceeded)
	eventually(t, 30*time.Second, "telemetry flowing and acknowledged", func() bool { return f.Stats().TelemetryAcked >= 2*n })

	// The threshold lets the soak go on until every device has been judged,
	// so that each one's outcome says why it failed.
	const spec = `"soakSeconds":3,"successThreshold":0.25,"errorThreshold":0.75`
	cases := []struct {
		name, body, reason string
	}{
		{"error rate", `{"image":"iris:2",` + spec + `,"slo":{"maxErrorRate":0.05,"maxP99Ms":100}}`, "slo: error rate 0.3 over 0.05 ("},
		{"p99 latency", `{"image":"iris:3",` + spec + `,"slo":{"maxP99Ms":100}}`, "slo: p99 500 ms over 100 ms"},
	}
	for _, tc := range cases {
		t.Run(tc.name+" over the gate reverts", func(t *testing.T) {
			ro := c.startRollout(tc.body)
			if ro.Spec.SLO == nil {
				t.Fatalf("the rollout lost its SLO gate: %+v", ro.Spec)
			}
			ro = c.waitRollout("iris", ro.ID, cloud.RolloutReverted)
			if !strings.Contains(ro.Message, fmt.Sprintf("%d of %d devices failed", n, n)) {
				t.Errorf("message %q", ro.Message)
			}
			for id, o := range ro.Devices {
				if o.State != cloud.DeviceReverted || !strings.HasPrefix(o.Reason, tc.reason) {
					t.Errorf("device %s: %s %q, want Reverted with %q", id, o.State, o.Reason, tc.reason)
				}
				if o.SLO == nil || o.SLO.Requests <= 0 {
					t.Errorf("device %s: the gate measured nothing: %+v", id, o.SLO)
				}
			}
			eventually(t, 30*time.Second, "every device serves v1 again", func() bool { return c.running(v1.Reference) == n })
			var svc cloud.ScoringService
			c.json("GET", acctPath+"/services/iris", "", 200, &svc)
			if svc.Image != "iris:1" || svc.Rollout != "" {
				t.Errorf("service after revert = %s rollout %q", svc.Image, svc.Rollout)
			}
		})
	}

	t.Run("within the gate succeeds", func(t *testing.T) {
		ro := c.startRollout(`{"image":"iris:3","soakSeconds":2,"slo":{"maxErrorRate":0.05}}`)
		ro = c.waitRollout("iris", ro.ID, cloud.RolloutSucceeded)
		for id, o := range ro.Devices {
			if o.State != cloud.DeviceHealthy || o.Reason != "" || o.SLO == nil || o.SLO.Requests <= 0 || o.SLO.Errors != 0 {
				t.Errorf("device %s: %s %q, measured %+v; want Healthy with requests and no errors", id, o.State, o.Reason, o.SLO)
			}
		}
		eventually(t, 30*time.Second, "every device serves v3", func() bool { return c.running(v3.Reference) == n })
	})
}
