package examples

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/shared/twin"
)

// The edge fault tests: the real cloud (embedded broker and registry), the
// real mlfleet-edge binary as a child process, the real containerd, images
// built by the cloud. Each proves one promise of DESIGN.md "Bad input and
// faults": the edge keeps serving the last good version through cloud,
// broker and registry outages and daemon restarts, and a failed update rolls
// back on the device.

const irisService = "iris"

// deployIris enrolls and starts a device, deploys spec and waits until it
// answers through the gateway.
func deployIris(t *testing.T, c *edgeCloud, sock string, spec twin.ServiceSpec) *edgeProc {
	t.Helper()
	p := enrollEdge(t, c, sock)
	p.start()
	c.setDesired(p.id, spec)
	waitFor(t, 3*time.Minute, "iris serving through the gateway", func() bool { return scoreURL(p.gw+"/services/iris/score") == nil })
	return p
}

// TestEdgeFaultKillDuringPull: kill -9 of the daemon mid-pull; the restarted
// daemon completes the deploy and leaves no lease, partial download or
// stray snapshot in containerd.
func TestEdgeFaultKillDuringPull(t *testing.T) {
	c := newEdgeCloud(t)
	v1 := c.build("iris", paddedModel(t, 4<<20), "") // a layer no other test pulled
	sock := socketFor(t)
	cl := ctrClient(t, sock)
	px := newProxy(t, c.addr)
	px.rate.Store(256 << 10) // 256 KiB/s: the image takes several seconds

	p := enrollEdge(t, c, sock)
	p.start()
	c.setDesired(p.id, twin.ServiceSpec{Name: irisService, Image: viaProxy(v1.Reference, c.addr, px.addr), Pull: c.adminPull()})
	waitFor(t, time.Minute, "a pull in progress", func() bool {
		return px.down.Load() > 512<<10 && len(inspectNamespace(t, cl, p.ns).Leases) > 0
	})
	p.kill9()
	before := inspectNamespace(t, cl, p.ns)
	t.Logf("after kill -9 mid-pull (%d KiB through): %d leases, %d partial downloads, %d stray snapshots",
		px.down.Load()>>10, len(before.Leases), len(before.Ingests), len(before.Snapshots))
	if len(before.Leases) == 0 {
		t.Fatalf("no pull lease after kill -9: the kill did not land mid-pull")
	}

	px.rate.Store(0)
	start := time.Now()
	p.start()
	waitFor(t, 2*time.Minute, "iris serving after restart", func() bool { return scoreURL(p.gw+"/services/iris/score") == nil })
	t.Logf("restarted daemon serving %.1fs after start", time.Since(start).Seconds())
	waitForState(t, 30*time.Second, "no leftovers in containerd", func() (bool, string) {
		after := inspectNamespace(t, cl, p.ns)
		return after.empty(), fmt.Sprintf("%+v", after)
	})
	if n := len(runningInstances(t, cl, p.ns, irisService)); n != 1 {
		t.Fatalf("%d running iris instances, want 1", n)
	}
}

// TestEdgeFaultBrokerRestart: the cloud (and its embedded broker) restarts;
// the device reconnects and resyncs: a desired state published right after
// the restart is applied and reported back within 10 s.
func TestEdgeFaultBrokerRestart(t *testing.T) {
	c := newEdgeCloud(t)
	v1 := c.image("iris", "testdata/iris_logreg.onnx")
	p := deployIris(t, c, socketFor(t), twin.ServiceSpec{Name: irisService, Image: v1.Reference})
	spec := twin.ServiceSpec{Name: irisService, Image: v1.Reference}
	waitFor(t, time.Minute, "iris reported Running", func() bool {
		s := c.status(p.id, irisService)
		return s.Phase == twin.Running && s.Healthy
	})

	c.Stop()
	if err := scoreURL(p.gw + "/services/iris/score"); err != nil {
		t.Fatalf("not serving with the broker down: %v", err)
	}
	c.Restart()
	restarted := time.Now()
	version := c.setDesired(p.id, spec) // published while the device is still away
	waitFor(t, 10*time.Second, "device resynced (online, reports the new desired version)", func() bool {
		d := c.device(p.id)
		return d.Online && d.Reported != nil && d.Reported.ObservedVersion == version
	})
	t.Logf("resynced %.2fs after the cloud and broker restarted", time.Since(restarted).Seconds())
	if s := c.status(p.id, irisService); s.Phase != twin.Running || s.Image != v1.Reference {
		t.Fatalf("after resync iris is %+v", s)
	}
}

// TestEdgeFaultOfflineDaemonRestart: with the cloud and broker down, the
// daemon is killed and restarted: the service never stops answering (the
// container outlives the daemon) and the restarted gateway serves from the
// first request, from local state.
func TestEdgeFaultOfflineDaemonRestart(t *testing.T) {
	c := newEdgeCloud(t)
	v1 := c.image("iris", "testdata/iris_logreg.onnx")
	sock := socketFor(t)
	cl := ctrClient(t, sock)
	p := deployIris(t, c, sock, twin.ServiceSpec{Name: irisService, Image: v1.Reference})
	insts := runningInstances(t, cl, p.ns, irisService)
	if len(insts) != 1 {
		t.Fatalf("%d running iris instances, want 1", len(insts))
	}
	direct := "http://127.0.0.1:" + strconv.Itoa(insts[0].port) + "/score"

	c.Stop()
	l := startLoad(2, func() string { return direct })
	p.kill9()
	p.start()
	if err := scoreURL(p.gw + "/services/iris/score"); err != nil {
		t.Errorf("first request through the restarted gateway: %v", err)
	}
	p.stop()
	p.start()
	for range 50 {
		if err := scoreURL(p.gw + "/services/iris/score"); err != nil {
			t.Fatalf("through the gateway after restarts: %v", err)
		}
	}
	ok, failed, last := l.end()
	t.Logf("scoring the container through kill -9, restart, SIGTERM, restart (cloud down): %d ok, %d failed", ok, failed)
	if failed != 0 || ok == 0 {
		t.Errorf("direct scoring during daemon restarts: %d ok, %d failed (last: %v)", ok, failed, last)
	}
	if now := runningInstances(t, cl, p.ns, irisService); len(now) != 1 || now[0].id != insts[0].id {
		t.Errorf("instances after restarts %v, want the same %v", now, insts)
	}
}

// TestEdgeFaultContainerdRestart: the device reboots with no network: the
// daemon and containerd go down, every task is gone, containerd and the
// daemon come back while the cloud is down, and the service is back from
// local state alone (same container, restarted). Runs on a private
// containerd, never the shared one.
func TestEdgeFaultContainerdRestart(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "mlf-ctd-")
	if err != nil {
		t.Fatal(err)
	}
	sock := startContainerd(t, dir)
	t.Cleanup(func() {
		stopContainerd(t, dir)
		_ = os.RemoveAll(dir)
	})
	c := newEdgeCloud(t)
	v1 := c.image("iris", "testdata/iris_logreg.onnx")
	p := deployIris(t, c, sock, twin.ServiceSpec{Name: irisService, Image: v1.Reference})
	cl := ctrClient(t, sock)
	before := runningInstances(t, cl, p.ns, irisService)
	if len(before) != 1 {
		t.Fatalf("%d running iris instances, want 1", len(before))
	}

	// Containerd restarts under a running daemon: tasks gone, the daemon
	// notices (health probes, reconcile) and restarts them.
	start := time.Now()
	stopContainerd(t, dir)
	if err := scoreURL(p.gw + "/services/iris/score"); err == nil {
		t.Fatal("still scoring with containerd and its tasks gone")
	}
	startContainerd(t, dir)
	waitFor(t, time.Minute, "iris back after a containerd restart", func() bool { return scoreURL(p.gw+"/services/iris/score") == nil })
	t.Logf("containerd restart under a running daemon: serving again %.1fs after the tasks died", time.Since(start).Seconds())

	// A reboot with no network: everything down, then up with the cloud away.
	c.Stop()
	p.kill9()
	stopContainerd(t, dir)
	start = time.Now()
	startContainerd(t, dir)
	p.start()
	waitFor(t, time.Minute, "iris back after a reboot without network", func() bool { return scoreURL(p.gw+"/services/iris/score") == nil })
	t.Logf("reboot without network: serving %.1fs after containerd started", time.Since(start).Seconds())
	cl = ctrClient(t, sock) // the old connection died with containerd
	after := runningInstances(t, cl, p.ns, irisService)
	if len(after) != 1 || after[0].id != before[0].id {
		t.Errorf("instances after the reboot %v, want the same container %v restarted", after, before)
	}
}

// TestEdgeFaultCrashingUpdate: an update whose container exits at start
// (its manifest's schema does not bind to the model, so the scorer refuses
// to start) is rolled back: the old version serves throughout and the
// device reports RolledBack with the reason.
func TestEdgeFaultCrashingUpdate(t *testing.T) {
	c := newEdgeCloud(t)
	v1 := c.image("iris", "testdata/iris_logreg.onnx")
	model, err := os.ReadFile("testdata/iris_logreg.onnx")
	if err != nil {
		t.Fatal(err)
	}
	bad := c.build("irisbad", model, `,"schema":{"inputs":[{"name":"text","type":"string"}]}`)
	p := deployIris(t, c, socketFor(t), twin.ServiceSpec{Name: irisService, Image: v1.Reference})

	l := startLoad(2, func() string { return p.gw + "/services/iris/score" })
	c.setDesired(p.id, twin.ServiceSpec{Name: irisService, Image: bad.Reference})
	var s twin.ServiceStatus
	waitFor(t, 2*time.Minute, "crashing update rolled back", func() bool {
		s = c.status(p.id, irisService)
		return s.Phase == twin.RolledBack && s.Reason != "" && s.Image == v1.Reference && s.Wanted == bad.Reference
	})
	ok, failed, last := l.end()
	t.Logf("crashing update: %+v; scoring meanwhile: %d ok, %d failed", s, ok, failed)
	if failed != 0 || ok == 0 {
		t.Errorf("scoring during the failed update: %d ok, %d failed (last: %v)", ok, failed, last)
	}
	if !s.Healthy || !strings.Contains(s.Reason, "exited") {
		t.Errorf("status %+v: want healthy, with a reason saying the instance exited", s)
	}
}

// TestEdgeFaultRegistryDown: the registry is unreachable when an update
// arrives: the pull fails, the old version keeps serving, the device
// reports the failure, backs off, and the update succeeds once the
// registry is back.
func TestEdgeFaultRegistryDown(t *testing.T) {
	c := newEdgeCloud(t)
	v1 := c.image("iris", "testdata/iris_logreg.onnx")
	v2 := c.image("iris", "testdata/iris_mlp.onnx")
	px := newProxy(t, c.addr) // the registry as the device reaches it
	p := deployIris(t, c, socketFor(t), twin.ServiceSpec{Name: irisService, Image: viaProxy(v1.Reference, c.addr, px.addr), Pull: c.adminPull()})

	px.Close()
	want := viaProxy(v2.Reference, c.addr, px.addr)
	c.setDesired(p.id, twin.ServiceSpec{Name: irisService, Image: want, Pull: c.adminPull()})
	var s twin.ServiceStatus
	waitFor(t, 2*time.Minute, "failed pull reported", func() bool {
		s = c.status(p.id, irisService)
		return s.Phase == twin.RolledBack && s.Wanted == want && strings.Contains(s.Reason, "pull")
	})
	failedAt := time.Now()
	t.Logf("registry down: %s: %s", s.Phase, s.Reason)
	if err := scoreURL(p.gw + "/services/iris/score"); err != nil {
		t.Fatalf("old version not serving with the registry down: %v", err)
	}

	px.Reopen(t)
	waitFor(t, 2*time.Minute, "update done once the registry is back", func() bool {
		s = c.status(p.id, irisService)
		return s.Phase == twin.Running && s.Image == want
	})
	t.Logf("registry back: update done %.1fs after the failure was reported (retry backoff)", time.Since(failedAt).Seconds())
	if err := scoreURL(p.gw + "/services/iris/score"); err != nil {
		t.Fatalf("v2 not serving: %v", err)
	}
}
