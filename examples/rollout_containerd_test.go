package examples

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/edge"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// TestRolloutRevertOnContainerd: two real devices on containerd serve v1; a
// rollout to a v2 whose container crashes at start trips the error
// threshold on the canary, the canary is reverted, and every device serves
// v1 again.
func TestRolloutRevertOnContainerd(t *testing.T) {
	c := startCloud(t)
	c.image("iris", "testdata/iris_logreg.onnx")
	// v2: its schema cannot feed the model, so the scorer exits at start.
	model, err := os.ReadFile("testdata/iris_logreg.onnx")
	if err != nil {
		t.Fatal(err)
	}
	var m cloud.Model
	c.call("POST", acctPath+"/models/irisbad/versions", "application/octet-stream", model, 201, &m)
	c.json("POST", acctPath+"/manifests", fmt.Sprintf(`{"apiVersion":"mlfleet.io/v1","name":"irisbad","runtime":"onnx","models":[{"name":"irisbad","version":%d}],"schema":{"inputs":[{"name":"text","type":"string"}]}}`, m.Version), 201, nil)
	var op cloud.Operation
	c.json("POST", acctPath+"/images", `{"name":"irisbad","manifest":"irisbad:1"}`, 202, &op)
	for !op.Done {
		time.Sleep(100 * time.Millisecond)
		c.json("GET", acctPath+"/operations/"+op.ID, "", 200, &op)
	}
	if op.Status != cloud.OpSucceeded {
		t.Fatalf("build: %+v", op.Error)
	}

	d1, gw1 := startEdge(t, c)
	d2, gw2 := startEdge(t, c)
	c.json("POST", acctPath+"/environments", `{"name":"lab","selector":{"site":"lab"}}`, 201, nil)
	var created struct {
		Rollout cloud.Rollout `json:"rollout"`
	}
	c.json("POST", acctPath+"/services", `{"name":"iris","environment":"lab","image":"iris:1"}`, 201, &created)
	t.Cleanup(func() { c.json("DELETE", acctPath+"/services/iris", "", 204, nil) }) // runs before the devices stop
	var ro cloud.Rollout
	eventually(t, 3*time.Minute, "v1 rolled out to both devices", func() bool {
		c.json("GET", acctPath+"/services/iris/rollouts/"+created.Rollout.ID, "", 200, &ro)
		return ro.State == cloud.RolloutSucceeded
	})
	for _, gw := range []string{gw1, gw2} {
		if st, labels, err := score(gw); st != 200 || labels[0] != 0 {
			t.Fatalf("v1 on %s: %d %v %v", gw, st, labels, err)
		}
	}

	c.json("POST", acctPath+"/services/iris/rollouts", `{"image":"irisbad:1","batches":[{"count":1}]}`, 201, &ro)
	eventually(t, 3*time.Minute, "the crashing canary trips the error threshold", func() bool {
		c.json("GET", acctPath+"/services/iris/rollouts/"+ro.ID, "", 200, &ro)
		if ro.State == cloud.RolloutSucceeded {
			t.Fatalf("a crashing rollout succeeded: %+v", ro)
		}
		return ro.State == cloud.RolloutReverted
	})
	t.Logf("rollout %s: %s; devices %v", ro.ID, ro.Message, ro.Devices)
	reasons := 0
	for _, o := range ro.Devices {
		if o.Reason != "" {
			reasons++
		}
	}
	if reasons == 0 || ro.Counts[cloud.DevicePending] != 1 {
		t.Errorf("want the canary failed with its reason and the other device never touched: %+v", ro.Devices)
	}
	for _, d := range []string{d1.DeviceID(), d2.DeviceID()} {
		eventually(t, time.Minute, d+" serves v1 with nothing pending", func() bool {
			dev := c.device(d)
			s := serviceStatus(dev, "iris")
			return s.Phase == twin.Running && s.Image == created.Rollout.ToRef && dev.Reported.ObservedVersion == dev.Desired.Version
		})
	}
	for _, gw := range []string{gw1, gw2} {
		if st, labels, err := score(gw); st != 200 || labels[0] != 0 {
			t.Fatalf("after the revert, %s: %d %v %v", gw, st, labels, err)
		}
	}
}

// TestRolloutSLOGateOnContainerd runs an SLO gate on a real device, the
// whole path: the scorer's latency histogram, scraped by mlfleet-edge into
// telemetry (buckets kept), stored by the cloud and read during the soak. A
// gate no real latency meets (p99 at most 0.0001 ms) fails the device, the
// rollout stops and the device serves v1 again.
func TestRolloutSLOGateOnContainerd(t *testing.T) {
	c := startCloud(t)
	v1 := c.image("iris", "testdata/iris_logreg.onnx")
	c.image("iris", "testdata/iris_mlp.onnx")
	d, gw := startEdge(t, c, func(cfg *edge.Config) { cfg.TelemetryWindow = time.Second })
	c.json("POST", acctPath+"/environments", `{"name":"lab","selector":{"site":"lab"}}`, 201, nil)
	var created struct {
		Rollout cloud.Rollout `json:"rollout"`
	}
	c.json("POST", acctPath+"/services", `{"name":"iris","environment":"lab","image":"iris:1"}`, 201, &created)
	t.Cleanup(func() { c.json("DELETE", acctPath+"/services/iris", "", 204, nil) })
	var ro cloud.Rollout
	eventually(t, 3*time.Minute, "v1 rolled out", func() bool {
		c.json("GET", acctPath+"/services/iris/rollouts/"+created.Rollout.ID, "", 200, &ro)
		return ro.State == cloud.RolloutSucceeded
	})

	// Steady scoring traffic for the device to report.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, _, _ = score(gw)
		}
	})
	t.Cleanup(func() { close(stop); wg.Wait() })

	c.json("POST", acctPath+"/services/iris/rollouts", `{"image":"iris:2","soakSeconds":6,"slo":{"maxP99Ms":0.0001}}`, 201, &ro)
	eventually(t, 3*time.Minute, "the SLO gate stops the rollout", func() bool {
		c.json("GET", acctPath+"/services/iris/rollouts/"+ro.ID, "", 200, &ro)
		if ro.State == cloud.RolloutSucceeded {
			t.Fatalf("a rollout past an impossible SLO gate succeeded: %+v", ro)
		}
		return ro.State == cloud.RolloutReverted
	})
	t.Logf("rollout %s: %s; devices %v", ro.ID, ro.Message, ro.Devices)
	o, ok := ro.Devices[d.DeviceID()]
	if !ok || !strings.Contains(o.Reason, "slo: p99") {
		t.Fatalf("device outcome %+v, want failed by the p99 gate", o)
	}
	eventually(t, time.Minute, "the device serves v1 again", func() bool {
		s := serviceStatus(c.device(d.DeviceID()), "iris")
		return s.Phase == twin.Running && s.Image == v1.Reference
	})
}
