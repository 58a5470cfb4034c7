package examples

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/server"
	"github.com/mlfleet/mlfleet/edge"
	"github.com/mlfleet/mlfleet/edge/daemon"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// The end-to-end tests run the real cloud (embedded broker and registry) and
// the real edge daemon on the real containerd, in one test process.

// containerdSocket returns the socket of the private containerd .ci/run
// starts, or starts one with scripts/containerd-test.sh.
func containerdSocket(t *testing.T) string {
	t.Helper()
	if s := os.Getenv("MLFLEET_CONTAINERD_SOCKET"); s != "" {
		return s
	}
	dir := "/tmp/mlfleet-e2e-containerd"
	cmd := exec.Command("bash", filepath.Join("..", "scripts", "containerd-test.sh"), "start")
	cmd.Env = append(os.Environ(), "MLFLEET_CONTAINERD_DIR="+dir)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("start containerd (apt-get install containerd runc; run as root): %v", err)
	}
	return strings.TrimSpace(string(out))
}

var (
	scorersOnce sync.Once
	scorersDir  string
	scorersErr  error
)

// scorers cross-compiles the real scorer for the image platforms.
func scorers(t testing.TB) string {
	t.Helper()
	scorersOnce.Do(func() {
		scorersDir, scorersErr = os.MkdirTemp("", "mlfleet-e2e-scorers")
		for _, p := range []struct{ dir, arch, arm string }{{"linux-amd64", "amd64", ""}, {"linux-arm64", "arm64", ""}, {"linux-arm-v7", "arm", "7"}} {
			if scorersErr != nil {
				return
			}
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(scorersDir, p.dir, "mlfleet-scorer"), "github.com/mlfleet/mlfleet/cmd/mlfleet-scorer")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+p.arch, "GOARM="+p.arm)
			if out, err := cmd.CombinedOutput(); err != nil {
				scorersErr = fmt.Errorf("build scorer %s: %v\n%s", p.dir, err, out)
			}
		}
	})
	if scorersErr != nil {
		t.Fatal(scorersErr)
	}
	return scorersDir
}

type cloudAPI struct {
	t     *testing.T
	url   string
	token string
}

const acctPath = "/api/v1/subscriptions/demo/accounts/models"

func (c *cloudAPI) call(method, path, ctype string, body []byte, want int, out any) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.url+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", ctype)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s = %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatal(err)
		}
	}
}

func (c *cloudAPI) json(method, path, body string, want int, out any) {
	c.t.Helper()
	c.call(method, path, "application/json", []byte(body), want, out)
}

func startCloud(t *testing.T) *cloudAPI {
	t.Helper()
	return startCloudWith(t, func(*server.Config) {})
}

// startCloudOnMosquitto runs the cloud against a real mosquitto whose
// password, ACL and config files the cloud writes.
func startCloudOnMosquitto(t *testing.T) *cloudAPI {
	t.Helper()
	dir := t.TempDir()
	mqttAddr := freeAddr(t)
	mosq := filepath.Join(dir, "mosquitto")
	pid := filepath.Join(dir, "mosquitto.pid")
	persist := filepath.Join(dir, "persist") + "/"
	os.MkdirAll(persist, 0o700)
	conf := filepath.Join(dir, "mosquitto.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("user root\npid_file %s\npersistence_location %s\ninclude_dir %s\n", pid, persist, mosq)), 0o600)
	c := startCloudWith(t, func(cfg *server.Config) {
		cfg.MQTTURL, cfg.MQTTUser, cfg.MQTTPassword = "tcp://"+mqttAddr, "mlfleet-cloud", "cloud-secret"
		cfg.MosquittoDir, cfg.MosquittoPIDFile = mosq, pid
	}, func() {
		// The cloud has written mosquitto's files: start it.
		cmd := exec.Command("/usr/sbin/mosquitto", "-c", conf)
		if err := cmd.Start(); err != nil {
			t.Fatalf("mosquitto (apt-get install mosquitto): %v", err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	})
	return c
}

func startCloudWith(t *testing.T, configure func(*server.Config), beforeRun ...func()) *cloudAPI {
	t.Helper()
	dir := t.TempDir()
	tok, err := server.Init(context.Background(), dir, "admin", "", "")
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := server.Config{DataDir: dir, Addr: "127.0.0.1:0", ScorerDir: scorers(t), Logger: quiet}
	configure(&cfg)
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range beforeRun {
		f()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	c := &cloudAPI{t: t, url: srv.URL(), token: tok.Secret}
	c.json("POST", "/api/v1/subscriptions", `{"name":"demo"}`, 201, nil)
	c.json("POST", "/api/v1/subscriptions/demo/accounts", `{"name":"models","kind":"modelmanagement"}`, 201, nil)
	return c
}

// image registers a model file, makes a manifest of it and builds an image.
func (c *cloudAPI) image(name, file string) cloud.Image {
	c.t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		c.t.Fatal(err)
	}
	var m cloud.Model
	c.call("POST", acctPath+"/models/"+name+"/versions", "application/octet-stream", b, 201, &m)
	var mf cloud.Manifest
	c.json("POST", acctPath+"/manifests", fmt.Sprintf(`{"apiVersion":"mlfleet.io/v1","name":%q,"runtime":"onnx","models":[{"name":%q,"version":%d}]}`, name, name, m.Version), 201, &mf)
	var op cloud.Operation
	c.json("POST", acctPath+"/images", fmt.Sprintf(`{"name":%q,"manifest":"%s:%d"}`, name, name, mf.Version), 202, &op)
	deadline := time.Now().Add(5 * time.Minute)
	for !op.Done {
		if time.Now().After(deadline) {
			c.t.Fatalf("image build did not finish: %+v", op)
		}
		time.Sleep(100 * time.Millisecond)
		c.json("GET", acctPath+"/operations/"+op.ID, "", 200, &op)
	}
	if op.Status != cloud.OpSucceeded {
		c.t.Fatalf("image build failed: %+v", op.Error)
	}
	var img cloud.Image
	c.json("GET", "/api/v1"+op.Result, "", 200, &img)
	return img
}

func (c *cloudAPI) device(id string) cloud.Device {
	c.t.Helper()
	var d cloud.Device
	c.json("GET", acctPath+"/devices/"+id, "", 200, &d)
	return d
}

func (c *cloudAPI) setDesired(id string, services ...twin.ServiceSpec) {
	c.t.Helper()
	body, _ := json.Marshal(map[string]any{"services": append([]twin.ServiceSpec{}, services...)})
	c.json("PUT", acctPath+"/devices/"+id+"/desired", string(body), 200, nil)
}

// startEdge enrolls and runs a real mlfleet-edge daemon on containerd.
func startEdge(t *testing.T, c *cloudAPI, opts ...func(*edge.Config)) (*edge.Daemon, string) {
	t.Helper()
	var et cloud.EnrollmentToken
	c.json("POST", acctPath+"/enrollmentTokens", `{"labels":{"site":"lab"}}`, 201, &et)
	dir := t.TempDir()
	ctx := context.Background()
	id, err := edge.Enroll(ctx, edge.EnrollConfig{DataDir: dir, Cloud: c.url, Token: et.Token, Name: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("mlfleet-e2e-%d", time.Now().UnixNano())
	cfg := edge.Config{DataDir: dir, GatewayAddr: "127.0.0.1:0", ContainerdAddress: containerdSocket(t),
		ContainerdNamespace: ns, HealthInterval: 200 * time.Millisecond, ReconcileInterval: time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(&cfg)
	}
	d, err := daemon.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	t.Cleanup(func() {
		// Leave no containers behind: remove the services, then stop.
		c.setDesired(id)
		eventually(t, 2*time.Minute, "services removed", func() bool { return len(d.Routes()) == 0 })
		cancel()
		<-done
	})
	addr, err := d.GatewayAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return d, "http://" + addr.String()
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const irisRow = `{"input_df":[{"X":[5.1,3.5,1.4,0.2]},{"X":[6.7,3.0,5.2,2.3]}]}`

// getJSON decodes the JSON answer of GET u.
func getJSON(u string, out any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// score calls the gateway; it returns the status and the labels.
func score(gw string) (int, []int64, error) {
	resp, err := http.Post(gw+"/services/iris/score", "application/json", strings.NewReader(irisRow))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Result []struct {
			Label int64 `json:"label"`
		} `json:"result"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return resp.StatusCode, nil, fmt.Errorf("%s", b)
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return resp.StatusCode, nil, err
	}
	var labels []int64
	for _, r := range out.Result {
		labels = append(labels, r.Label)
	}
	return resp.StatusCode, labels, nil
}

func serviceStatus(d cloud.Device, name string) twin.ServiceStatus {
	if d.Reported == nil {
		return twin.ServiceStatus{}
	}
	for _, s := range d.Reported.Services {
		if s.Name == name {
			return s
		}
	}
	return twin.ServiceStatus{}
}

// TestEndToEnd: build images in the cloud, enroll a device, deploy through
// MQTT desired state, pull and run on containerd, score through the gateway,
// update blue/green under load with zero failed requests, fail an update
// (missing image) with the old version still serving, roll back, remove.
func TestEndToEnd(t *testing.T) { endToEnd(t, startCloud(t)) }

// TestEndToEndMosquitto runs the same flow with the cloud and the device on
// Debian's mosquitto instead of the embedded broker.
func TestEndToEndMosquitto(t *testing.T) { endToEnd(t, startCloudOnMosquitto(t)) }

func endToEnd(t *testing.T, c *cloudAPI) {
	v1 := c.image("iris", "testdata/iris_logreg.onnx")
	v2 := c.image("iris", "testdata/iris_mlp.onnx")
	d, gw := startEdge(t, c)
	id := d.DeviceID()

	// Deploy v1.
	start := time.Now()
	c.setDesired(id, twin.ServiceSpec{Name: "iris", Image: v1.Reference})
	eventually(t, 3*time.Minute, "v1 serving through the gateway", func() bool {
		st, labels, _ := score(gw)
		return st == 200 && len(labels) == 2
	})
	t.Logf("v1 deployed and answering %.1fs after the desired state was set (cold pull)", time.Since(start).Seconds())
	_, labels, err := score(gw)
	if err != nil || labels[0] != 0 || labels[1] != 2 {
		t.Fatalf("iris labels = %v %v, want [0 2]", labels, err)
	}
	eventually(t, time.Minute, "v1 reported Running", func() bool {
		s := serviceStatus(c.device(id), "iris")
		return s.Phase == twin.Running && s.Healthy && s.Image == v1.Reference
	})

	// Update to v2 under steady load: zero failed requests.
	var ok, failed atomic.Int64
	var lastErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if st, _, err := score(gw); st == 200 {
					ok.Add(1)
				} else {
					failed.Add(1)
					lastErr.Store(fmt.Sprintf("%d %v", st, err))
				}
			}
		}()
	}
	c.setDesired(id, twin.ServiceSpec{Name: "iris", Image: v2.Reference})
	eventually(t, 3*time.Minute, "v2 reported Running", func() bool {
		s := serviceStatus(c.device(id), "iris")
		return s.Phase == twin.Running && s.Image == v2.Reference
	})
	close(stop)
	wg.Wait()
	t.Logf("blue/green update under load: %d requests, %d failed", ok.Load()+failed.Load(), failed.Load())
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Errorf("update under load: %d ok, %d failed (last: %v)", ok.Load(), failed.Load(), lastErr.Load())
	}
	// The load went through connection handoff, and v1 gave its connections
	// back when it drained.
	var health struct {
		Handoff struct{ HandedOff, Returned, Rejected int64 } `json:"handoff"`
	}
	if err := getJSON(gw+"/healthz", &health); err != nil {
		t.Fatal(err)
	}
	t.Logf("gateway handoff: %+v", health.Handoff)
	if health.Handoff.HandedOff == 0 || health.Handoff.Returned == 0 || health.Handoff.Rejected != 0 {
		t.Errorf("gateway handoff counters %+v: want connections handed off and given back, none refused", health.Handoff)
	}

	// An image that does not exist: Failed with the reason; v2 keeps serving.
	missing := v2.Reference[:strings.Index(v2.Reference, "@")] + "@sha256:" + strings.Repeat("0", 64)
	c.setDesired(id, twin.ServiceSpec{Name: "iris", Image: missing})
	eventually(t, 2*time.Minute, "missing image reported", func() bool {
		s := serviceStatus(c.device(id), "iris")
		return (s.Phase == twin.Failed || s.Phase == twin.RolledBack) && s.Reason != "" && s.Image == v2.Reference
	})
	t.Logf("missing image: %+v", serviceStatus(c.device(id), "iris"))
	if st, _, err := score(gw); st != 200 {
		t.Fatalf("v2 stopped serving after a failed update: %d %v", st, err)
	}

	// Roll back to v1.
	c.setDesired(id, twin.ServiceSpec{Name: "iris", Image: v1.Reference})
	eventually(t, 2*time.Minute, "rolled back to v1", func() bool {
		s := serviceStatus(c.device(id), "iris")
		return s.Phase == twin.Running && s.Image == v1.Reference
	})
	if st, labels, err := score(gw); st != 200 || labels[0] != 0 {
		t.Fatalf("after rollback: %d %v %v", st, labels, err)
	}

	// Remove.
	c.setDesired(id)
	eventually(t, time.Minute, "service removed", func() bool {
		st, _, _ := score(gw)
		return st == http.StatusNotFound || st == http.StatusBadGateway || st == http.StatusServiceUnavailable
	})
}
