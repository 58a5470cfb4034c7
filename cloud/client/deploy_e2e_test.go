package client_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/client"
	"github.com/mlfleet/mlfleet/cloud/server"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/manifest"
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
		scorersDir, scorersErr = os.MkdirTemp("", "mlfleet-client-scorers")
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

// buildImage builds image name from manifest ref and waits for it.
func buildImage(t *testing.T, c *client.Client, name, ref string) *cloud.Image {
	t.Helper()
	ctx := context.Background()
	op, err := c.CreateImage(ctx, "acme", "mm", cloud.CreateImage{Name: name, Manifest: ref, Tag: "latest"})
	if err != nil {
		t.Fatal(err)
	}
	if op.Done || op.Kind != "image.build" {
		t.Errorf("submitted operation = %+v", op)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	op, err = c.WaitOperation(ctx, "acme", "mm", op.ID, 50*time.Millisecond)
	if err != nil || op.Status != cloud.OpSucceeded || len(op.Log) == 0 {
		t.Fatalf("build %s = %+v, %v", name, op, err)
	}
	v, err := strconv.Atoi(op.Result[strings.LastIndexByte(op.Result, '/')+1:])
	if err != nil {
		t.Fatalf("operation result %q: %v", op.Result, err)
	}
	img, err := c.GetImage(ctx, "acme", "mm", name, v)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// waitRollout polls a rollout until ok says yes.
func waitRollout(t *testing.T, c *client.Client, svc, id string, what string, ok func(*cloud.Rollout) bool) *cloud.Rollout {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ro, err := c.GetRollout(context.Background(), "acme", "mm", svc, id)
		if err != nil {
			t.Fatal(err)
		}
		if ok(ro) {
			return ro
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollout %s of %s: not %s: %+v", id, svc, what, ro)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// succeed plays every device of the rollout: each one moved to the new
// image reports it running and healthy, until the rollout succeeds.
func succeed(t *testing.T, c *client.Client, srv *server.Server, svc, id string) *cloud.Rollout {
	t.Helper()
	reported := map[string]bool{}
	return waitRollout(t, c, svc, id, "Succeeded", func(ro *cloud.Rollout) bool {
		for dev, o := range ro.Devices {
			if o.State == cloud.DeviceUpdating && !reported[dev] {
				reported[dev] = true
				now := time.Now().UTC()
				report(t, srv, twin.Reported{Protocol: twin.Protocol, Device: dev, ObservedVersion: o.Version, Time: now, Agent: "test",
					Services: []twin.ServiceStatus{{Name: svc, Phase: twin.Running, Image: ro.ToRef, Healthy: true, Since: now}}})
			}
		}
		return ro.State == cloud.RolloutSucceeded
	})
}

func TestDeployAgainstCloud(t *testing.T) {
	c, srv := startCloudWithScorers(t, buildScorers(t))
	ctx := context.Background()
	if _, err := c.CreateSubscription(ctx, client.SubscriptionCreate{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAccount(ctx, "acme", client.AccountCreate{Name: "mm", Kind: cloud.ModelManagement}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("../../examples/testdata/iris_logreg.onnx")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.RegisterModel(ctx, "acme", "mm", "iris", client.ModelUpload{Body: f, Size: st.Size()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateManifest(ctx, "acme", "mm", &manifest.Manifest{APIVersion: manifest.APIVersion, Name: "iris", Runtime: manifest.RuntimeONNX,
		Models: []manifest.ModelRef{{Name: "iris", Version: m.Version}}}); err != nil {
		t.Fatal(err)
	}

	// Images: two names from the same manifest (two repositories).
	img := buildImage(t, c, "iris", "iris:1")
	if img.Version != 1 || len(img.Platforms) != 3 || img.Manifest != "iris:1" || img.Tag != "latest" {
		t.Errorf("image = %+v", img)
	}
	imgB := buildImage(t, c, "iris-b", "iris:1")
	if imgB.Reference == img.Reference {
		t.Fatalf("two image names share reference %s", img.Reference)
	}
	all, err := c.ListAllImages(ctx, "acme", "mm", "")
	if err != nil || len(all) != 2 {
		t.Errorf("ListAllImages = %d, %v", len(all), err)
	}
	if vs, err := c.ListAllImageVersions(ctx, "acme", "mm", "iris-b"); err != nil || len(vs) != 1 || vs[0].Name != "iris-b" {
		t.Errorf("ListAllImageVersions(iris-b) = %+v, %v", vs, err)
	}
	if only, err := c.ListAllImages(ctx, "acme", "mm", "iris"); err != nil || len(only) != 1 || only[0].Name != "iris" {
		t.Errorf("ListAllImages(iris) = %+v, %v", only, err)
	}

	// Three devices in Paris, one in Lyon.
	anon, err := client.New(c.BaseURL(), "")
	if err != nil {
		t.Fatal(err)
	}
	var devs []string
	for i, site := range []string{"paris", "paris", "paris", "lyon"} {
		tok, err := c.CreateEnrollmentToken(ctx, "acme", "mm", client.EnrollmentTokenCreate{Labels: map[string]string{"site": site}})
		if err != nil {
			t.Fatal(err)
		}
		e, err := anon.Enroll(ctx, cloud.EnrollRequest{Token: tok.Token, Name: fmt.Sprintf("pi-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		devs = append(devs, e.DeviceID)
	}
	env, err := c.CreateEnvironment(ctx, "acme", "mm", client.EnvironmentCreate{Name: "paris", Selector: map[string]string{"site": "paris"}, Description: "shops"})
	if err != nil || env.Selector["site"] != "paris" {
		t.Fatalf("environment = %+v, %v", env, err)
	}
	if _, err := c.CreateEnvironment(ctx, "acme", "mm", client.EnvironmentCreate{Name: "lyon", Device: devs[3]}); err != nil {
		t.Fatal(err)
	}
	if envs, err := c.ListAllEnvironments(ctx, "acme", "mm"); err != nil || len(envs) != 2 {
		t.Errorf("ListAllEnvironments = %+v, %v", envs, err)
	}
	if e, err := c.GetEnvironment(ctx, "acme", "mm", "lyon"); err != nil || e.Device != devs[3] {
		t.Errorf("GetEnvironment = %+v, %v", e, err)
	}

	// A service: the first rollout moves 1 device, then the other 2.
	created, err := c.CreateService(ctx, "acme", "mm", cloud.CreateServiceRequest{Name: "iris", Environment: "paris", Image: "iris:1", Port: 8080,
		Rollout: &cloud.RolloutSpec{Batches: []cloud.BatchSpec{{Count: 1}}}})
	if err != nil {
		t.Fatal(err)
	}
	if created.Service.Name != "iris" || created.Rollout == nil || created.Rollout.State != cloud.RolloutRunning ||
		len(created.Rollout.Devices) != 3 || fmt.Sprint(created.Rollout.BatchSize) != "[1 2]" {
		t.Fatalf("created = %+v", created)
	}
	ro := succeed(t, c, srv, "iris", created.Rollout.ID)
	if ro.Counts[cloud.DeviceHealthy] != 3 {
		t.Errorf("succeeded rollout counts = %v", ro.Counts)
	}
	svc, err := c.GetService(ctx, "acme", "mm", "iris")
	if err != nil || svc.Image != "iris:1" || svc.Rollout != "" {
		t.Fatalf("service after first rollout = %+v, %v", svc, err)
	}
	// A second image, then back.
	ro2, err := c.StartRollout(ctx, "acme", "mm", "iris", cloud.RolloutRequest{Image: "iris-b:1"})
	if err != nil || ro2.From != "iris:1" || ro2.To != "iris-b:1" {
		t.Fatalf("start rollout = %+v, %v", ro2, err)
	}
	succeed(t, c, srv, "iris", ro2.ID)
	back, err := c.RollbackService(ctx, "acme", "mm", "iris")
	if err != nil || back.To != "iris:1" || back.From != "iris-b:1" {
		t.Fatalf("rollback = %+v, %v", back, err)
	}
	// The rollback rollout is active: pause, resume, abort.
	waitRollout(t, c, "iris", back.ID, "updating", func(r *cloud.Rollout) bool { return r.Counts[cloud.DeviceUpdating] > 0 })
	if r, err := c.PauseRollout(ctx, "acme", "mm", "iris", back.ID); err != nil || r.State != cloud.RolloutPaused {
		t.Errorf("pause = %+v, %v", r, err)
	}
	if r, err := c.ResumeRollout(ctx, "acme", "mm", "iris", back.ID); err != nil || r.State != cloud.RolloutRunning {
		t.Errorf("resume = %+v, %v", r, err)
	}
	aborted, err := c.AbortRollout(ctx, "acme", "mm", "iris", back.ID)
	if err != nil || aborted.State != cloud.RolloutAborted || aborted.Counts[cloud.DeviceReverted] == 0 {
		t.Errorf("abort = %+v, %v", aborted, err)
	}
	if ros, err := c.ListAllRollouts(ctx, "acme", "mm", "iris"); err != nil || len(ros) != 3 {
		t.Errorf("ListAllRollouts = %d, %v", len(ros), err)
	}

	active, err := c.StartRollout(ctx, "acme", "mm", "iris", cloud.RolloutRequest{Image: "iris:1"})
	if err != nil {
		t.Fatal(err)
	}
	errs := []struct {
		name      string
		call      func() error
		wantClass errclass.Class
		wantField string
	}{
		{"second active rollout", func() error {
			_, err := c.StartRollout(ctx, "acme", "mm", "iris", cloud.RolloutRequest{Image: "iris-b:1"})
			return err
		}, errclass.Conflict, ""},
		{"resume a running rollout", func() error {
			_, err := c.ResumeRollout(ctx, "acme", "mm", "iris", active.ID)
			return err
		}, errclass.FailedPrecondition, "state"},
		{"unknown rollout", func() error { _, err := c.GetRollout(ctx, "acme", "mm", "iris", "999999"); return err }, errclass.NotFound, ""},
		{"unknown image", func() error {
			_, err := c.StartRollout(ctx, "acme", "mm", "iris", cloud.RolloutRequest{Image: "ghost:1"})
			return err
		}, errclass.InvalidArgument, "image"},
		{"bad batch", func() error {
			_, err := c.CreateService(ctx, "acme", "mm", cloud.CreateServiceRequest{Name: "x", Environment: "paris", Image: "iris:1",
				Rollout: &cloud.RolloutSpec{Batches: []cloud.BatchSpec{{Count: 1, Percent: 5}}}})
			return err
		}, errclass.InvalidArgument, "batches[0]"},
		{"unknown environment", func() error {
			_, err := c.CreateService(ctx, "acme", "mm", cloud.CreateServiceRequest{Name: "x", Environment: "nowhere", Image: "iris:1"})
			return err
		}, errclass.InvalidArgument, "environment"},
		{"environment of both kinds", func() error {
			_, err := c.CreateEnvironment(ctx, "acme", "mm", client.EnvironmentCreate{Name: "x", Device: devs[0], Selector: map[string]string{"a": "b"}})
			return err
		}, errclass.InvalidArgument, "selector"},
		{"environment in use", func() error { return c.DeleteEnvironment(ctx, "acme", "mm", "paris") }, "", ""},
		{"image in use", func() error { return c.DeleteImage(ctx, "acme", "mm", "iris", 1) }, errclass.Conflict, ""},
		{"bad manifest ref", func() error {
			_, err := c.CreateImage(ctx, "acme", "mm", cloud.CreateImage{Name: "x", Manifest: "iris"})
			return err
		}, errclass.InvalidArgument, "manifest"},
	}
	t.Run("abort is stored", func(t *testing.T) {
		stored, err := c.GetRollout(ctx, "acme", "mm", "iris", back.ID)
		if err != nil {
			t.Fatal(err)
		}
		if stored.State != cloud.RolloutAborted {
			// cloud.Service.ActOnRollout returns after revert without storing the rollout.
			t.Fatalf("the aborted rollout is stored as %s, not Aborted", stored.State)
		}
		if _, err := c.AbortRollout(ctx, "acme", "mm", "iris", back.ID); errclass.ClassOf(err) != errclass.FailedPrecondition || errclass.FieldOf(err) != "state" {
			t.Errorf("abort of an aborted rollout: %v", err)
		}
	})
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil {
				t.Fatal("no error")
			}
			if tt.wantClass != "" && errclass.ClassOf(err) != tt.wantClass {
				t.Errorf("class = %s (%v), want %s", errclass.ClassOf(err), err, tt.wantClass)
			}
			if tt.wantField != "" && errclass.FieldOf(err) != tt.wantField {
				t.Errorf("field = %q (%v), want %q", errclass.FieldOf(err), err, tt.wantField)
			}
		})
	}

	if svcs, err := c.ListAllServices(ctx, "acme", "mm"); err != nil || len(svcs) != 1 {
		t.Errorf("ListAllServices = %+v, %v", svcs, err)
	}
	if err := c.DeleteService(ctx, "acme", "mm", "iris"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteImage(ctx, "acme", "mm", "iris", 1); err != nil {
		t.Errorf("delete image no longer used: %v", err)
	}
	if _, err := c.GetImage(ctx, "acme", "mm", "iris", 1); errclass.ClassOf(err) != errclass.NotFound {
		t.Errorf("deleted image: %v", err)
	}
	if err := c.DeleteEnvironment(ctx, "acme", "mm", "paris"); err != nil {
		t.Errorf("delete environment no longer used: %v", err)
	}
}

// TestCreateImageWithoutBuilder: a cloud without scorer binaries refuses builds.
func TestCreateImageWithoutBuilder(t *testing.T) {
	c := startCloud(t)
	ctx := context.Background()
	if _, err := c.CreateSubscription(ctx, client.SubscriptionCreate{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAccount(ctx, "acme", client.AccountCreate{Name: "mm", Kind: cloud.ModelManagement}); err != nil {
		t.Fatal(err)
	}
	_, err := c.CreateImage(ctx, "acme", "mm", cloud.CreateImage{Name: "iris", Manifest: "iris:1"})
	if ae, ok := err.(*client.Error); !ok || ae.Status != 503 || errclass.ClassOf(err) != errclass.Unavailable || !strings.Contains(err.Error(), "no image builder") {
		t.Errorf("CreateImage without builder: %v", err)
	}
}
