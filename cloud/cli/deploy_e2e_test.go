package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/client"
	"github.com/mlfleet/mlfleet/shared/twin"
)

var (
	scorersOnce sync.Once
	scorersDir  string
	scorersErr  error
)

// buildScorers cross-compiles the real scorer into a temp dir laid out as
// the cloud's scorer directory, once per test binary.
func buildScorers(t *testing.T) string {
	t.Helper()
	scorersOnce.Do(func() {
		scorersDir, scorersErr = os.MkdirTemp("", "mlfleet-cli-scorers")
		if scorersErr != nil {
			return
		}
		for _, p := range []struct{ dir, arch, arm string }{{"linux-amd64", "amd64", ""}, {"linux-arm64", "arm64", ""}, {"linux-arm-v7", "arm", "7"}} {
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(scorersDir, p.dir, "mlfleet-scorer"),
				"github.com/mlfleet/mlfleet/cmd/mlfleet-scorer")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+p.arch, "GOARM="+p.arm)
			if out, err := cmd.CombinedOutput(); err != nil {
				scorersErr = fmt.Errorf("build scorer for %s: %v\n%s", p.dir, err, out)
				return
			}
		}
	})
	if scorersErr != nil {
		t.Fatal(scorersErr)
	}
	return scorersDir
}

// syncBuffer is a bytes.Buffer safe to read while a command writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// poll calls ok until it says yes, failing the test after a deadline.
func poll(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestImageCreateWithoutBuilder(t *testing.T) {
	h := startCloud(t)
	h.login()
	h.must("subscription", "create", "acme")
	h.must("account", "create", "models", "--kind", "modelmanagement", "-s", "acme")
	h.must("config", "set", "subscription", "acme")
	h.must("config", "set", "account", "models")
	runSteps(t, h, []step{
		{[]string{"image", "create", "iris", "--manifest", "iris:1"}, 1, []string{"create image", "no image builder"}},
		{[]string{"image", "create", "iris"}, 2, []string{"--manifest"}},
		{[]string{"image", "create", "iris", "--manifest", "iris"}, 2, []string{"(field: manifest)"}},
		{[]string{"image", "create", "iris", "--manifest", "iris:x"}, 2, []string{"(field: manifest)"}},
		{[]string{"image", "list"}, 0, []string{"NAME", "VERSION", "TAG", "MANIFEST", "PLATFORMS"}},
		{[]string{"image", "show", "iris"}, 1, []string{"no versions"}},
		{[]string{"image", "delete", "iris"}, 2, []string{"(field: version)"}},
		{[]string{"environment", "create", "paris"}, 2, []string{"--device ID or --selector"}},
		{[]string{"environment", "create", "paris", "--device", "d-1", "--selector", "a=b"}, 2, []string{"not both"}},
		{[]string{"environment", "create", "paris", "--selector", "novalue"}, 2, []string{"(field: label)"}},
		{[]string{"environment", "create", "paris", "--device", "d-nope"}, 2, []string{"(field: device)"}},
		{[]string{"service", "create", "iris", "--environment", "paris"}, 2, []string{"--image"}},
		{[]string{"service", "create", "iris", "--environment", "paris", "--image", "iris:1", "--batch", "ten"}, 2, []string{"(field: batch)", "--batch"}},
		{[]string{"service", "create", "iris", "--environment", "paris", "--image", "iris:1", "--batch", "0%"}, 2, []string{"(field: batch)"}},
		{[]string{"service", "create", "iris", "--environment", "paris", "--image", "iris:1", "--success-threshold", "2"}, 2, []string{"(field: success-threshold)"}},
		{[]string{"service", "create", "iris", "--environment", "paris", "--image", "iris:1", "--env", "NOVALUE"}, 2, []string{"(field: env)"}},
		{[]string{"service", "create", "iris", "--environment", "paris", "--image", "iris:1"}, 2, []string{"(field: environment)"}},
		{[]string{"rollout", "start", "iris", "--image", "iris:2", "--batch", "-5"}, 2, []string{"(field: batch)"}},
		{[]string{"rollout", "start", "iris"}, 2, []string{"--image"}},
		{[]string{"rollout", "status"}, 2, []string{"service name"}},
		{[]string{"rollout", "pause", "iris"}, 2, []string{"rollout ID"}},
		{[]string{"rollout", "status", "iris"}, 1, []string{"has no rollouts"}},
	})
}

func TestDeployServices(t *testing.T) {
	h := startCloudWithScorers(t, buildScorers(t))
	h.login()
	h.must("subscription", "create", "acme")
	h.must("account", "create", "models", "--kind", "modelmanagement", "-s", "acme")
	h.must("config", "set", "subscription", "acme")
	h.must("config", "set", "account", "models")
	h.must("model", "register", "../../examples/testdata/iris_logreg.onnx", "--name", "iris")
	h.must("manifest", "create", "--name", "iris", "--model", "iris:1")

	// image create follows the build log on stderr, then prints the image.
	for _, name := range []string{"iris", "iris-b"} {
		out, errOut, code := h.run("", "image", "create", name, "--manifest", "iris:1", "--tag", "v1")
		if code != 0 {
			t.Fatalf("image create %s: exit %d\n%s", name, code, errOut)
		}
		if !strings.Contains(out, name) || !strings.Contains(out, "linux/amd64,linux/arm/v7,linux/arm64") {
			t.Errorf("image create %s printed:\n%s", name, out)
		}
		if !strings.Contains(errOut, "Building image "+name) || strings.Count(errOut, "\n") < 3 || !strings.Contains(errOut, "pushed") {
			t.Errorf("image create %s: build log on stderr:\n%s", name, errOut)
		}
	}
	var img cloud.Image
	decodeStrictJSON(t, h.must("image", "show", "iris", "-o", "json"), &img)
	if img.Name != "iris" || img.Version != 1 || img.Tag != "v1" || len(img.Layers) == 0 {
		t.Errorf("image show -o json = %+v", img)
	}
	var op cloud.Operation
	decodeStrictJSON(t, h.must("image", "create", "iris", "--manifest", "iris:1", "--no-wait", "-o", "json"), &op)
	if op.ID == "" || op.Kind != "image.build" {
		t.Errorf("image create --no-wait = %+v", op)
	}

	// Three devices in Paris.
	c, err := client.New(h.url, h.token)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var devs []string
	for i := range 3 {
		tok, err := c.CreateEnrollmentToken(ctx, "acme", "models", client.EnrollmentTokenCreate{Labels: map[string]string{"site": "paris"}})
		if err != nil {
			t.Fatal(err)
		}
		e, err := c.Enroll(ctx, cloud.EnrollRequest{Token: tok.Token, Name: fmt.Sprintf("pi-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		devs = append(devs, e.DeviceID)
	}
	runSteps(t, h, []step{
		{[]string{"environment", "create", "paris", "--selector", "site=paris", "--description", "shops"}, 0, []string{"paris", "site=paris", "shops"}},
		{[]string{"environment", "create", "bench", "--device", devs[0]}, 0, []string{"device " + devs[0]}},
		{[]string{"environment", "list"}, 0, []string{"paris", "bench"}},
		{[]string{"environment", "show", "paris"}, 0, []string{"3 device(s)", devs[0], devs[1], devs[2]}},
		{[]string{"environment", "delete", "bench"}, 0, []string{"Deleted environment bench"}},
		{[]string{"image", "list"}, 0, []string{"iris", "iris-b"}},
		{[]string{"service", "create", "iris", "--environment", "paris", "--image", "iris:1", "--port", "8080", "--env", "LOG=debug", "--batch", "1"}, 0,
			[]string{"NAME", "ENVIRONMENT", "iris", "paris", "8080", "000001", "Running", "1/2", "DEVICE", "BATCH", "STATE", "REASON", "SINCE"}},
		{[]string{"service", "list"}, 0, []string{"iris", "paris", "000001"}},
		{[]string{"service", "show", "iris"}, 0, []string{"Environment: paris", "LOG=debug", "000001 in progress"}},
		{[]string{"image", "delete", "iris:1"}, 1, []string{"delete image"}},
		{[]string{"environment", "delete", "paris"}, 1, []string{"delete environment"}},
	})

	// The devices report healthy (as their MQTT side would): it succeeds.
	reported := map[string]bool{}
	poll(t, "the first rollout to succeed", func() bool {
		ro, err := c.GetRollout(ctx, "acme", "models", "iris", "000001")
		if err != nil {
			t.Fatal(err)
		}
		for dev, o := range ro.Devices {
			if o.State == cloud.DeviceUpdating && !reported[dev] {
				reported[dev] = true
				now := time.Now().UTC()
				raw, err := twin.Encode(&twin.Reported{Protocol: twin.Protocol, Device: dev, ObservedVersion: o.Version, Time: now, Agent: "test",
					Services: []twin.ServiceStatus{{Name: "iris", Phase: twin.Running, Image: ro.ToRef, Healthy: true, Since: now}}})
				if err != nil {
					t.Fatal(err)
				}
				if err := h.srv.Service().HandleDeviceMessage(ctx, twin.Topic(dev, twin.KindReported), raw); err != nil {
					t.Fatal(err)
				}
			}
		}
		return ro.State == cloud.RolloutSucceeded
	})
	out, errOut, code := h.run("", "rollout", "status", "iris", "--watch")
	if code != 0 || !strings.Contains(out, "Succeeded") || !strings.Contains(errOut, "Succeeded, batch 2/2: Pending 0, Updating 0, Healthy 3, Failed 0, Reverted 0") {
		t.Errorf("rollout status --watch of a succeeded rollout: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if strings.Contains(out, "DEVICE") {
		t.Errorf("all devices healthy, yet a device table:\n%s", out)
	}

	// Where the service runs: every device of paris reports iris:1, healthy.
	runSteps(t, h, []step{
		{[]string{"service", "devices", "iris"}, 0, []string{"DEVICE", "VERSION", devs[0], devs[1], devs[2], "iris:1", "Running",
			"3 device(s): 3 run iris:1 (3 healthy)."}},
		{[]string{"service", "devices", "nope"}, 1, []string{`service devices "nope"`, "not found"}},
	})
	var where []ServiceOnDevice
	decodeStrictJSON(t, h.must("service", "devices", "iris", "-o", "json"), &where)
	if len(where) != 3 || where[0].Version != "iris:1" || !where[0].Healthy || where[0].Phase != twin.Running {
		t.Errorf("service devices -o json = %+v", where)
	}

	runSteps(t, h, []step{
		{[]string{"rollout", "rollback", "iris"}, 1, []string{"roll back iris", "no previous image"}},
		{[]string{"rollout", "start", "iris", "--image", "iris-b:1", "--batch", "1", "--soak", "1m", "--device-timeout", "1h"}, 0, []string{"000002", "iris:1", "iris-b:1", "Running"}},
		{[]string{"rollout", "start", "iris", "--image", "iris:1"}, 1, []string{"start rollout", "already has rollout 000002"}},
		{[]string{"rollout", "list", "iris"}, 0, []string{"000001", "000002", "Succeeded"}},
	})
	poll(t, "a device updating", func() bool {
		ro, err := c.GetRollout(ctx, "acme", "models", "iris", "000002")
		return err == nil && ro.Counts[cloud.DeviceUpdating] == 1
	})
	var ro cloud.Rollout
	decodeStrictJSON(t, h.must("rollout", "status", "iris", "-o", "json"), &ro)
	if ro.ID != "000002" || len(ro.Devices) != 3 || ro.Spec.SoakSeconds != 60 || ro.Spec.DeviceTimeoutSeconds != 3600 {
		t.Errorf("rollout status -o json = %+v", ro)
	}
	runSteps(t, h, []step{
		{[]string{"rollout", "status", "iris"}, 0, []string{"000002", "Running", "1/2", "DEVICE", "Updating", "Pending"}},
		{[]string{"rollout", "status", "iris", "000001"}, 0, []string{"000001", "Succeeded"}},
		{[]string{"rollout", "pause", "iris", "000002"}, 0, []string{"Paused"}},
		{[]string{"rollout", "pause", "iris", "000002"}, 1, []string{"cannot pause a rollout that is Paused"}},
		{[]string{"rollout", "resume", "iris", "000002"}, 0, []string{"Running"}},
		{[]string{"rollout", "status", "iris", "000009"}, 1, []string{"not found"}},
	})

	// --watch follows the rollout until another user aborts it.
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var wout, werr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(wctx, []string{"rollout", "status", "iris", "--watch"},
			Env{Stdout: &wout, Stderr: &werr, Getenv: func(k string) string { return h.env[k] }})
	}()
	poll(t, "the watch's first line", func() bool { return strings.Contains(werr.String(), "rollout 000002 of iris to iris-b:1: Running") })
	h.must("rollout", "abort", "iris", "000002")
	if stored, err := c.GetRollout(ctx, "acme", "models", "iris", "000002"); err != nil || stored.State != cloud.RolloutAborted {
		cancel()
		<-done
		// cloud.Service.ActOnRollout returns after revert without storing the rollout.
		t.Fatalf("the aborted rollout is stored as %v (%v), not Aborted", stored.State, err)
	}
	select {
	case code := <-done:
		if code != 1 || !strings.Contains(wout.String(), "Aborted") || !strings.Contains(werr.String(), "Aborted") ||
			!strings.Contains(werr.String(), "ended Aborted") {
			t.Errorf("watch ended with exit %d\nstdout: %s\nstderr: %s", code, wout.String(), werr.String())
		}
	case <-wctx.Done():
		t.Fatalf("watch did not end on abort\nstderr: %s", werr.String())
	}
	runSteps(t, h, []step{
		{[]string{"rollout", "status", "iris"}, 0, []string{"Aborted", "Reverted"}},
		{[]string{"service", "delete", "iris"}, 0, []string{"Deleted service iris"}},
		{[]string{"image", "delete", "iris:1"}, 0, []string{"Deleted image iris:1"}},
		{[]string{"environment", "delete", "paris"}, 0, []string{"Deleted environment paris"}},
	})
}
