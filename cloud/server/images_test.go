package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/internal/imagebuild"
)

var (
	scorersOnce sync.Once
	scorersDir  string
	scorersErr  error
)

// BuildScorers cross-compiles the real scorer for every image platform into
// a temp dir laid out as a scorer directory (once per test binary).
func buildScorers(t testing.TB) string {
	t.Helper()
	scorersOnce.Do(func() {
		scorersDir, scorersErr = os.MkdirTemp("", "mlfleet-scorers")
		if scorersErr != nil {
			return
		}
		for _, p := range platforms {
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", ScorerPath(scorersDir, p), "github.com/mlfleet/mlfleet/cmd/mlfleet-scorer")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Arch)
			if p.Variant != "" {
				cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				scorersErr = fmt.Errorf("build scorer for %v: %v\n%s", p, err, out)
				return
			}
		}
	})
	if scorersErr != nil {
		t.Fatal(scorersErr)
	}
	return scorersDir
}

func startBuildServer(t *testing.T) *cloudUnderTest {
	t.Helper()
	return startBuildServerWith(t, func(*Config) {})
}

// startBuildServerWith is startBuildServer with set changing the config.
func startBuildServerWith(t *testing.T, set func(*Config)) *cloudUnderTest {
	t.Helper()
	dir := t.TempDir()
	tok, err := Init(context.Background(), dir, "admin", "", "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{DataDir: dir, Addr: "127.0.0.1:0", ScorerDir: buildScorers(t)}
	set(&cfg)
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	c := &cloudUnderTest{srv: srv, token: tok.Secret, t: t}
	c.call("POST", "/api/v1/subscriptions", `{"name":"s"}`, 201, nil)
	c.call("POST", "/api/v1/subscriptions/s/accounts", `{"name":"mm","kind":"modelmanagement"}`, 201, nil)
	return c
}

func (c *cloudUnderTest) upload(name, file string) cloud.Model {
	c.t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		c.t.Fatal(err)
	}
	var m cloud.Model
	c.callBytes("POST", acct+"/models/"+name+"/versions", b, 201, &m)
	return m
}

func (c *cloudUnderTest) callBytes(method, path string, body []byte, want int, out any) {
	c.t.Helper()
	c.callRaw(method, path, "application/octet-stream", bytes.NewReader(body), want, out)
}

// buildImage asks for an image build and waits for its operation.
func (c *cloudUnderTest) buildImage(image, manifest string) (cloud.Operation, *cloud.Image) {
	c.t.Helper()
	var op cloud.Operation
	c.call("POST", acct+"/images", fmt.Sprintf(`{"name":%q,"manifest":%q,"tag":"latest"}`, image, manifest), 202, &op)
	deadline := time.Now().Add(3 * time.Minute)
	for !op.Done {
		if time.Now().After(deadline) {
			c.t.Fatalf("build of %s did not finish: %+v", image, op)
		}
		time.Sleep(50 * time.Millisecond)
		c.call("GET", acct+"/operations/"+op.ID, "", 200, &op)
	}
	if op.Status != cloud.OpSucceeded {
		return op, nil
	}
	var img cloud.Image
	c.call("GET", "/api/v1"+op.Result, "", 200, &img)
	return op, &img
}

const testdata = "../../examples/testdata/"

func TestImageBuildPushAndIncrementalVersion(t *testing.T) {
	c := startBuildServer(t)
	c.upload("iris", testdata+"iris_logreg.onnx")
	c.call("POST", acct+"/manifests", `{"apiVersion":"mlfleet.io/v1","name":"iris","runtime":"onnx","models":[{"name":"iris","version":1}]}`, 201, nil)
	op, img := c.buildImage("iris", "iris:1")
	if img == nil {
		t.Fatalf("build failed: %+v", op)
	}
	if len(img.Platforms) != 3 || !strings.HasPrefix(img.Reference, strings.TrimPrefix(c.srv.URL(), "http://")+"/s/mm/iris@sha256:") {
		t.Errorf("image = %+v", img)
	}
	if len(op.Log) == 0 {
		t.Error("build log is empty")
	}
	// The pushed index validates and is pullable with a reader's credentials.
	ref, err := name.ParseReference(img.Reference, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(ref, remote.WithAuth(&authn.Basic{Username: "x", Password: c.token}))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Errorf("validate index: %v", err)
	}
	// And with the crane CLI itself.
	if out, err := craneValidate(t, img.Reference, c.token); err != nil {
		t.Errorf("crane validate: %v\n%s", err, out)
	}
	sizes := map[string]int64{}
	for _, l := range img.Layers {
		sizes[l.Kind] = l.Size
	}
	t.Logf("iris image %s: compressed layers %v; %d bytes uploaded", img.Digest, sizes, img.BytesUploaded)
	if sizes["scorer"] == 0 || sizes["scorer"] > 10<<20 {
		t.Errorf("scorer layer %d bytes, want (0, 10 MB]", sizes["scorer"])
	}

	// Same inputs, same digest.
	_, again := c.buildImage("iris", "iris:1")
	if again == nil || again.Digest != img.Digest || again.Version != 2 {
		t.Errorf("rebuild = %+v, want version 2 with digest %s", again, img.Digest)
	}
	if again.BytesUploaded > 20<<10 {
		t.Errorf("rebuild uploaded %d bytes; everything was already there", again.BytesUploaded)
	}

	// A new model version uploads only its model and manifest layers (+ small metadata).
	c.upload("iris", testdata+"iris_mlp.onnx")
	c.call("POST", acct+"/manifests", `{"apiVersion":"mlfleet.io/v1","name":"iris","runtime":"onnx","models":[{"name":"iris","version":2}]}`, 201, nil)
	_, v2 := c.buildImage("iris", "iris:2")
	if v2 == nil {
		t.Fatal("v2 build failed")
	}
	var model, mf int64
	for _, l := range v2.Layers {
		if l.Platform == "linux/amd64" && l.Kind == "model" {
			model = l.Size
		}
		if l.Platform == "linux/amd64" && l.Kind == "manifest" {
			mf = l.Size
		}
	}
	meta := v2.BytesUploaded - model - mf
	t.Logf("new model version: %d bytes uploaded = model layer %d + manifest layer %d + %d metadata", v2.BytesUploaded, model, mf, meta)
	if meta < 0 || meta > 20<<10 {
		t.Errorf("new version uploaded %d bytes: model %d + manifest %d + %d of metadata, want metadata under 20 KB", v2.BytesUploaded, model, mf, meta)
	}

	// Bad input: an unknown manifest, and an image in use cannot go... (services come later).
	c.call("POST", acct+"/images", `{"name":"iris","manifest":"ghost:1"}`, 400, nil)
	c.call("POST", acct+"/images", `{"name":"Iris","manifest":"iris:1"}`, 400, nil)
}

// TestImageBuildRegistryDown makes the push fail, then succeed on retry, with
// nothing half stored in between.
func TestImageBuildRegistryDown(t *testing.T) {
	c := startBuildServer(t)
	c.upload("iris", testdata+"iris_logreg.onnx")
	c.call("POST", acct+"/manifests", `{"apiVersion":"mlfleet.io/v1","name":"iris","runtime":"onnx","models":[{"name":"iris","version":1}]}`, 201, nil)
	b := &builder{scorers: mustScorers(t), tmpDir: t.TempDir()}
	c.srv.Service().SetImageBuilder(b, cloud.RegistryTarget{Host: "127.0.0.1:1", Insecure: true})
	op, img := c.buildImage("iris", "iris:1")
	if img != nil || op.Status != cloud.OpFailed || op.Error == nil || op.Error.Code != "unavailable" {
		t.Fatalf("build against a dead registry = %+v", op)
	}
	var images cloud.Page[cloud.Image]
	c.call("GET", acct+"/images", "", 200, &images)
	if len(images.Items) != 0 {
		t.Fatalf("failed build left records: %+v", images.Items)
	}
	c.srv.Service().SetImageBuilder(b, cloud.RegistryTarget{Host: c.srv.Addr(), Insecure: true})
	if op, img = c.buildImage("iris", "iris:1"); img == nil {
		t.Fatalf("retry failed: %+v", op)
	}
	raw, _ := json.Marshal(op.Log)
	t.Logf("retry log: %s", raw)
}

func mustScorers(t *testing.T) map[imagebuild.Platform]string {
	t.Helper()
	s, err := findScorers(buildScorers(t))
	if err != nil || len(s) != 3 {
		t.Fatalf("scorers: %v %v", s, err)
	}
	return s
}

var (
	craneOnce sync.Once
	cranePath string
	craneErr  error
)

// craneValidate runs `crane validate --remote` (go-containerregistry's CLI at
// v0.22.1, installed once from the module proxy) with the given token.
func craneValidate(t *testing.T, ref, token string) ([]byte, error) {
	t.Helper()
	craneOnce.Do(func() {
		if p, err := exec.LookPath("crane"); err == nil {
			cranePath = p
			return
		}
		dir, err := os.MkdirTemp("", "mlfleet-crane")
		if err != nil {
			craneErr = err
			return
		}
		cmd := exec.Command("go", "install", "github.com/google/go-containerregistry/cmd/crane@v0.22.1")
		cmd.Env = append(os.Environ(), "GOBIN="+dir, "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			craneErr = fmt.Errorf("go install crane: %v\n%s", err, out)
			return
		}
		cranePath = dir + "/crane"
	})
	if craneErr != nil {
		t.Fatal(craneErr)
	}
	cfg := t.TempDir()
	host := ref[:strings.Index(ref, "/")]
	auth := base64.StdEncoding.EncodeToString([]byte("x:" + token))
	if err := os.WriteFile(cfg+"/config.json", []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cranePath, "validate", "--insecure", "--remote", ref)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+cfg)
	return cmd.CombinedOutput()
}
