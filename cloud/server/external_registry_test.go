package server

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"

	"github.com/mlfleet/mlfleet/cloud"
)

// startDockerRegistry runs Debian's docker-registry (CNCF distribution 2.8)
// with htpasswd auth on a free port.
func startDockerRegistry(t *testing.T, user, password string) string {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Fatalf("docker-registry not installed (apt-get install docker-registry): %v", err)
	}
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "htpasswd"), []byte(user+":"+string(hash)+"\n"), 0o600)
	addr := strings.TrimPrefix(fmt.Sprintf("127.0.0.1:%d", freePort(t)), "")
	conf := fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s
auth:
  htpasswd:
    realm: mlfleet-test
    path: %s
`, filepath.Join(dir, "data"), addr, filepath.Join(dir, "htpasswd"))
	os.WriteFile(filepath.Join(dir, "config.yml"), []byte(conf), 0o600)
	cmd := exec.Command(bin, "serve", filepath.Join(dir, "config.yml"))
	logf, _ := os.Create(filepath.Join(dir, "registry.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	eventually(t, "docker-registry answers", func() bool {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusUnauthorized
	})
	return addr
}

// TestExternalRegistry pushes images to Debian's docker-registry with
// htpasswd auth: the password is never shown, a wrong one fails the build
// with that reason and leaves nothing, the right one pushes a pullable image.
func TestExternalRegistry(t *testing.T) {
	addr := startDockerRegistry(t, "ci", "s3cret")
	c := startBuildServer(t)
	c.upload("iris", testdata+"iris_logreg.onnx")
	c.call("POST", acct+"/manifests", `{"apiVersion":"mlfleet.io/v1","name":"iris","runtime":"onnx","models":[{"name":"iris","version":1}]}`, 201, nil)

	var reg cloud.ExternalRegistry
	c.call("POST", acct+"/registries", fmt.Sprintf(`{"name":"lab","host":%q,"prefix":"mlfleet","username":"ci","password":"wrong","insecure":true}`, addr), 201, &reg)
	if reg.Password != "" || !reg.HasPassword {
		t.Fatalf("registry answer shows its password or lost it: %+v", reg)
	}
	var again cloud.ExternalRegistry
	c.call("GET", acct+"/registries/lab", "", 200, &again)
	if again.Password != "" {
		t.Fatal("GET shows the password")
	}

	var op cloud.Operation
	c.call("POST", acct+"/images", `{"name":"iris","manifest":"iris:1","registry":"lab","tag":"v1"}`, 202, &op)
	op = c.waitOp(op)
	if op.Status != cloud.OpFailed || op.Error == nil || op.Error.Code != "unauthenticated" {
		t.Fatalf("build with a wrong password = %+v", op)
	}
	var images cloud.Page[cloud.Image]
	c.call("GET", acct+"/images", "", 200, &images)
	if len(images.Items) != 0 {
		t.Fatalf("a failed build left image records: %+v", images.Items)
	}

	c.call("DELETE", acct+"/registries/lab", "", 204, nil)
	c.call("POST", acct+"/registries", fmt.Sprintf(`{"name":"lab","host":%q,"prefix":"mlfleet","username":"ci","password":"s3cret","insecure":true}`, addr), 201, nil)
	c.call("POST", acct+"/images", `{"name":"iris","manifest":"iris:1","registry":"lab","tag":"v1"}`, 202, &op)
	op = c.waitOp(op)
	if op.Status != cloud.OpSucceeded {
		t.Fatalf("build to docker-registry: %+v", op.Error)
	}
	var img cloud.Image
	c.call("GET", "/api/v1"+op.Result, "", 200, &img)
	if !strings.HasPrefix(img.Reference, addr+"/mlfleet/iris@sha256:") {
		t.Errorf("reference %s, want %s/mlfleet/iris@...", img.Reference, addr)
	}
	ref, _ := name.ParseReference(addr+"/mlfleet/iris:v1", name.Insecure)
	idx, err := remote.Index(ref, remote.WithAuth(&authn.Basic{Username: "ci", Password: "s3cret"}))
	if err != nil {
		t.Fatalf("pull from docker-registry: %v", err)
	}
	if d, _ := idx.Digest(); d.String() != img.Digest {
		t.Errorf("tag v1 is %s, want %s", d, img.Digest)
	}
	c.call("POST", acct+"/images", `{"name":"iris","manifest":"iris:1","registry":"ghost"}`, 400, nil)
}

func (c *cloudUnderTest) waitOp(op cloud.Operation) cloud.Operation {
	c.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !op.Done {
		if time.Now().After(deadline) {
			c.t.Fatalf("operation did not finish: %+v", op)
		}
		time.Sleep(50 * time.Millisecond)
		c.call("GET", acct+"/operations/"+op.ID, "", 200, &op)
	}
	return op
}
