package containerd

// Integration tests against a real containerd. The socket comes from
// MLFLEET_CONTAINERD_SOCKET; if it is unset, TestMain starts a private
// containerd with scripts/containerd-test.sh (and stops it at the end). With
// CI=true a containerd that cannot be had fails the tests instead of
// skipping them.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/snapshots"
	clog "github.com/containerd/log"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/mlfleet/mlfleet/edge"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// healthWait bounds waits for a container to come up or exit: generous,
// since a loaded 2-core machine can be slow; passing tests never wait it out.
const healthWait = time.Minute

const (
	regUser = "puller"
	regPass = "s3cret"
)

var (
	socket   string // containerd's socket
	setupErr error  // why there is no containerd
)

func TestMain(m *testing.M) {
	_ = clog.SetLevel("warn") // the client logs every failed registry request
	socket = os.Getenv("MLFLEET_CONTAINERD_SOCKET")
	started := false
	if socket == "" {
		socket, started, setupErr = startContainerd()
	}
	code := m.Run()
	if started {
		if out, err := exec.Command("bash", scriptPath(), "stop").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "containerd-test.sh stop: %v\n%s", err, out)
		}
	}
	fx.close()
	os.Exit(code)
}

func scriptPath() string { return filepath.Join("..", "..", "..", "scripts", "containerd-test.sh") }

// startContainerd starts containerd with the script, unless it already runs
// (then it is left running at the end).
func startContainerd() (sock string, started bool, err error) {
	if os.Geteuid() != 0 {
		return "", false, errors.New("not root: containerd tests need root")
	}
	for _, bin := range []string{"containerd", "runc", "ctr"} {
		if _, err := exec.LookPath(bin); err != nil {
			return "", false, fmt.Errorf("%s not installed (apt-get install -y containerd runc): %w", bin, err)
		}
	}
	running := exec.Command("bash", scriptPath(), "status").Run() == nil
	out, err := exec.Command("bash", scriptPath(), "start").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", false, fmt.Errorf("containerd-test.sh start: %w: %s", err, ee.Stderr)
		}
		return "", false, fmt.Errorf("containerd-test.sh start: %w", err)
	}
	lines := strings.Fields(string(out))
	if len(lines) == 0 {
		return "", false, errors.New("containerd-test.sh start printed no socket")
	}
	return lines[len(lines)-1], !running, nil
}

// needContainerd skips (or, in CI, fails) a test when there is no containerd.
func needContainerd(t testing.TB) {
	t.Helper()
	if setupErr == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("containerd is required in CI: %v", setupErr)
	}
	t.Skipf("no containerd: %v", setupErr)
}

// fixture is what all tests share: the test program, images built from it
// and the registries serving them.
type fixture struct {
	once      sync.Once
	err       error
	closeOnce sync.Once

	dir string // holds the test program
	bin string

	registryHandler  http.Handler
	open, auth, hang *httptest.Server // the same registry: open, behind basic auth, stalling on blobs
	hangReleased     chan struct{}

	openHost, authHost, hangHost string
	plain, user, other           string // image digests
	plainRef, authRef            string
	userRef, otherRef            string
	hangRef, missingRef          string
}

var fx fixture

func (f *fixture) close() {
	f.closeOnce.Do(func() {
		if f.hangReleased != nil {
			close(f.hangReleased)
		}
		for _, s := range []*httptest.Server{f.open, f.auth, f.hang} {
			if s != nil {
				s.Close()
			}
		}
		if f.dir != "" {
			os.RemoveAll(f.dir)
		}
	})
}

func getFixture(t testing.TB) *fixture {
	t.Helper()
	needContainerd(t)
	fx.once.Do(func() { fx.err = fx.setup() })
	if fx.err != nil {
		t.Fatalf("fixture: %v", fx.err)
	}
	return &fx
}

func (f *fixture) setup() error {
	dir, err := os.MkdirTemp("", "mlfleet-ctrd-test-")
	if err != nil {
		return err
	}
	f.dir = dir
	f.bin = filepath.Join(dir, "scorer")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", f.bin, "./testdata/scorer")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build test program: %w\n%s", err, out)
	}

	f.registryHandler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	f.open = httptest.NewServer(f.registryHandler)
	f.auth = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != regUser || p != regPass {
			w.Header().Set("WWW-Authenticate", `Basic realm="mlfleet-test"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		f.registryHandler.ServeHTTP(w, r)
	}))
	f.hangReleased = make(chan struct{})
	f.hang = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			// A registry that stalls on every blob: the pull must give up.
			select {
			case <-r.Context().Done():
			case <-f.hangReleased:
			}
			return
		}
		f.registryHandler.ServeHTTP(w, r)
	}))
	host := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	f.openHost, f.authHost, f.hangHost = host(f.open), host(f.auth), host(f.hang)

	layer, err := scorerLayer(f.bin)
	if err != nil {
		return err
	}
	push := func(tag string, cfg v1.Config) (string, error) {
		img, err := buildImage(layer, cfg)
		if err != nil {
			return "", err
		}
		ref, err := name.ParseReference(f.openHost+"/test/scorer:"+tag, name.Insecure)
		if err != nil {
			return "", err
		}
		if err := remote.Write(ref, img); err != nil {
			return "", fmt.Errorf("push %s: %w", ref, err)
		}
		d, err := img.Digest()
		if err != nil {
			return "", err
		}
		return d.String(), nil
	}
	base := v1.Config{Entrypoint: []string{"/scorer"}, Env: []string{"PATH=/", "IMAGE_ENV=from-image"}}
	if f.plain, err = push("plain", base); err != nil {
		return err
	}
	userCfg := base
	userCfg.User = "4321"
	if f.user, err = push("user", userCfg); err != nil {
		return err
	}
	otherCfg := base
	otherCfg.Env = []string{"PATH=/", "IMAGE_ENV=other"}
	if f.other, err = push("other", otherCfg); err != nil {
		return err
	}
	f.plainRef = f.openHost + "/test/scorer@" + f.plain
	f.authRef = f.authHost + "/test/scorer@" + f.plain
	f.userRef = f.openHost + "/test/scorer@" + f.user
	f.otherRef = f.openHost + "/test/scorer@" + f.other
	f.hangRef = f.hangHost + "/test/scorer@" + f.other
	f.missingRef = fmt.Sprintf("%s/test/scorer@sha256:%x", f.openHost, sha256.Sum256([]byte("missing")))
	return nil
}

// scorerLayer makes a layer holding the test program as /scorer.
func scorerLayer(bin string) (v1.Layer, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "scorer", Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}

func buildImage(layer v1.Layer, cfg v1.Config) (v1.Image, error) {
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config = cfg
	return mutate.ConfigFile(img, cf)
}

// newRuntime makes a Runtime on its own namespace (named after the test),
// removing what the test left there at the end.
func newRuntime(t testing.TB, mod func(*Config)) *Runtime {
	t.Helper()
	getFixture(t)
	ns := "t-" + strings.NewReplacer("/", "-", "_", "-").Replace(strings.ToLower(t.Name()))
	cfg := Config{Address: socket, Namespace: ns, StateDir: t.TempDir(), PullTimeout: 30 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { cleanNamespace(t, cfg) })
	t.Cleanup(func() { r.Close() })
	return r
}

// cleanNamespace removes every container, image and the namespace itself.
func cleanNamespace(t testing.TB, cfg Config) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := New(ctx, cfg)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer r.Close()
	cctx := r.ctx(ctx)
	cs, _ := r.client.Containers(cctx)
	for _, c := range cs {
		if err := r.Stop(ctx, c.ID(), 0); err != nil {
			t.Errorf("cleanup: stop %s: %v", c.ID(), err)
		}
	}
	if err := r.GC(ctx, nil); err != nil {
		t.Errorf("cleanup: gc: %v", err)
	}
	_ = r.client.NamespaceService().Delete(cctx, cfg.Namespace)
	// runc leaves the namespace's (empty) parent cgroups behind.
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + cfg.Namespace)
	for _, d := range append(dirs, "/sys/fs/cgroup/"+cfg.Namespace) {
		_ = os.Remove(d)
	}
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// poll calls f every 50ms until it returns true or the deadline passes.
func poll(t testing.TB, what string, within time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		<-tick.C
	}
}

func waitHealthy(t testing.TB, spec edge.InstanceSpec) {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	healthy := func() bool {
		resp, err := c.Get("http://" + addr(spec.Port) + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	deadline := time.Now().Add(healthWait)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !healthy() {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(spec.LogPath)
			t.Fatalf("%s not healthy on port %d within %s; its log:\n%s", spec.ID, spec.Port, healthWait, log)
		}
		<-tick.C
	}
}

type info struct {
	UID          int               `json:"uid"`
	GID          int               `json:"gid"`
	Env          map[string]string `json:"env"`
	RootWritable bool              `json:"rootWritable"`
	TmpWritable  bool              `json:"tmpWritable"`
	MemLimit     string            `json:"memLimit"`
	CPUMax       string            `json:"cpuMax"`
}

func getInfo(t testing.TB, port int) info {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr(port) + "/info")
	if err != nil {
		t.Fatalf("GET /info: %v", err)
	}
	defer resp.Body.Close()
	var in info
	if err := json.NewDecoder(resp.Body).Decode(&in); err != nil {
		t.Fatalf("decode /info: %v", err)
	}
	return in
}

// cgroupValue reads, from the host, the first word of a cgroup file of id's
// task: v1file under the ctrl hierarchy (cgroup v1) or v2file (cgroup v2).
func cgroupValue(t testing.TB, r *Runtime, id, ctrl, v1file, v2file string) string {
	t.Helper()
	ctx := r.ctx(testCtx(t))
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", task.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	var path string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == ctrl {
				path = filepath.Join("/sys/fs/cgroup", parts[1], parts[2], v1file)
			}
		}
		if parts[0] == "0" && path == "" {
			path = filepath.Join("/sys/fs/cgroup", parts[2], v2file)
		}
	}
	v, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s cgroup of %s: %v", ctrl, id, err)
	}
	return strings.Fields(string(v) + " ")[0]
}

func mustPull(t testing.TB, r *Runtime, ref string) {
	t.Helper()
	if err := r.Pull(testCtx(t), ref, nil); err != nil {
		t.Fatalf("Pull %s: %v", ref, err)
	}
}

func instanceSpec(t testing.TB, id, image string, env map[string]string) edge.InstanceSpec {
	return edge.InstanceSpec{
		ID: id, Service: "svc", Image: image, Port: freePort(t), Env: env,
		LogPath: filepath.Join(t.TempDir(), "logs", id+".log"),
	}
}

func findInstance(t testing.TB, r *Runtime, id string) (edge.Instance, bool) {
	t.Helper()
	list, err := r.List(testCtx(t))
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for _, in := range list {
		if in.ID == id {
			return in, true
		}
	}
	return edge.Instance{}, false
}

func readLog(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read log: %v", err)
	}
	return string(b)
}

func TestPull(t *testing.T) {
	f := getFixture(t)
	r := newRuntime(t, nil)
	good := &twin.PullAuth{Username: regUser, Password: regPass}
	bad := &twin.PullAuth{Username: regUser, Password: "wrong"}
	tests := []struct {
		name      string
		ref       string
		auth      *twin.PullAuth
		wantClass errclass.Class // "" for success
	}{
		{"open registry", f.plainRef, nil, ""},
		{"again is cheap", f.plainRef, nil, ""},
		{"with auth", f.authRef, good, ""},
		{"bad auth", f.authHost + "/test/scorer@" + f.user, bad, errclass.Unauthenticated},
		{"no auth", f.authHost + "/test/scorer@" + f.other, nil, errclass.Unauthenticated},
		{"missing digest", f.missingRef, nil, errclass.NotFound},
		{"tag not digest", f.openHost + "/test/scorer:plain", nil, errclass.InvalidArgument},
		{"garbage", "Not A Ref", nil, errclass.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := r.Pull(testCtx(t), tt.ref, tt.auth)
			if tt.wantClass == "" {
				if err != nil {
					t.Fatalf("Pull: %v", err)
				}
				if ok, err := r.HasImage(testCtx(t), tt.ref); err != nil || !ok {
					t.Fatalf("HasImage after pull = %v, %v", ok, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Pull succeeded, want %s", tt.wantClass)
			}
			if tt.wantClass == errclass.Unauthenticated && !strings.Contains(err.Error(), "refused the credentials") {
				t.Errorf("auth error does not say so: %v", err)
			}
			if got := errclass.ClassOf(err); got != tt.wantClass {
				t.Fatalf("Pull error class %s, want %s: %v", got, tt.wantClass, err)
			}
			t.Logf("error: %v", err)
		})
	}
	assertNoLeases(t, r)
}

func assertNoLeases(t testing.TB, r *Runtime) {
	t.Helper()
	ls, err := r.client.LeasesService().List(r.ctx(testCtx(t)))
	if err != nil {
		t.Fatalf("list leases: %v", err)
	}
	if len(ls) != 0 {
		t.Fatalf("%d leases left: %+v", len(ls), ls)
	}
}

func TestPullDeadline(t *testing.T) {
	f := getFixture(t)
	r := newRuntime(t, func(c *Config) { c.PullTimeout = 2 * time.Second })
	start := time.Now()
	err := r.Pull(testCtx(t), f.hangRef, nil)
	took := time.Since(start)
	if err == nil {
		t.Fatal("pull from a stalled registry succeeded")
	}
	if errclass.ClassOf(err) != errclass.Unavailable || !strings.Contains(err.Error(), "pullTimeout") {
		t.Fatalf("error = %v (class %s), want Unavailable naming pullTimeout", err, errclass.ClassOf(err))
	}
	if took > 30*time.Second {
		t.Fatalf("pull took %s with a 2s pullTimeout", took)
	}
	ctx := r.ctx(testCtx(t))
	assertNoLeases(t, r)
	var snaps int
	if err := r.client.SnapshotService(DefaultSnapshotter).Walk(ctx, func(context.Context, snapshots.Info) error { snaps++; return nil }); err != nil {
		t.Fatal(err)
	}
	var blobs int
	if err := r.client.ContentStore().Walk(ctx, func(content.Info) error { blobs++; return nil }); err != nil {
		t.Fatal(err)
	}
	ingests, err := r.client.ContentStore().ListStatuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snaps != 0 || blobs != 0 || len(ingests) != 0 {
		t.Fatalf("after a failed pull: %d snapshots, %d blobs, %d ingests left", snaps, blobs, len(ingests))
	}
	if ok, err := r.HasImage(testCtx(t), f.hangRef); err != nil || ok {
		t.Fatalf("HasImage after failed pull = %v, %v", ok, err)
	}
	// A cancelled caller's context is honoured the same way.
	cctx, cancel := context.WithCancel(testCtx(t))
	cancel()
	if err := r.Pull(cctx, f.hangRef, nil); err == nil {
		t.Fatal("pull with a cancelled context succeeded")
	}
	assertNoLeases(t, r)
}

func TestPullDiskCheck(t *testing.T) {
	f := getFixture(t)
	r := newRuntime(t, func(c *Config) { c.MinFreeBytes = 1 << 62 })
	err := r.Pull(testCtx(t), f.plainRef, nil)
	if errclass.ClassOf(err) != errclass.FailedPrecondition || !strings.Contains(err.Error(), "minFreeBytes") {
		t.Fatalf("Pull with too little space: %v, want FailedPrecondition naming minFreeBytes", err)
	}
	free, err := r.FreeBytes(testCtx(t))
	if err != nil || free == 0 {
		t.Fatalf("FreeBytes = %d, %v", free, err)
	}
}

func TestStartServesAndStopsGracefully(t *testing.T) {
	f := getFixture(t)
	r := newRuntime(t, func(c *Config) { c.LogMaxBytes = 1 })
	mustPull(t, r, f.plainRef)
	spec := instanceSpec(t, "graceful-1", f.plainRef, map[string]string{"FOO": "bar baz", "IMAGE_ENV": "overridden"})
	spec.Resources = twin.Resources{MemoryBytes: 64 << 20, CPUMillis: 500}
	inst, err := r.Start(testCtx(t), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if inst.State != edge.InstanceRunning || inst.Port != spec.Port || inst.Service != "svc" {
		t.Fatalf("Start returned %+v", inst)
	}
	waitHealthy(t, spec)
	in := getInfo(t, spec.Port)
	t.Logf("container reports %+v", in)
	checks := []struct {
		what      string
		got, want any
	}{
		{"uid", in.UID, nonRootUID},
		{"gid", in.GID, nonRootUID},
		{"env FOO", in.Env["FOO"], "bar baz"},
		{"env IMAGE_ENV", in.Env["IMAGE_ENV"], "overridden"},
		{"env PATH from image", in.Env["PATH"], "/"},
		{"env MLFLEET_ADDR", in.Env["MLFLEET_ADDR"], addr(spec.Port)},
		{"root writable", in.RootWritable, false},
		{"tmp writable", in.TmpWritable, true},
		{"memory limit in cgroup", cgroupValue(t, r, spec.ID, "memory", "memory.limit_in_bytes", "memory.max"), strconv.Itoa(64 << 20)},
		{"cpu quota in cgroup", cgroupValue(t, r, spec.ID, "cpu", "cpu.cfs_quota_us", "cpu.max"), "50000"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	got, ok := findInstance(t, r, spec.ID)
	if !ok || got.State != edge.InstanceRunning || got.Image != f.plainRef || got.Port != spec.Port {
		t.Fatalf("List has %+v (found %v)", got, ok)
	}

	// Rotation while the shim writes: copy, truncate, and new output
	// lands at the start of the file.
	if err := r.RotateLogs(testCtx(t)); err != nil {
		t.Fatalf("RotateLogs: %v", err)
	}
	if old := readLog(t, spec.LogPath+".1"); !strings.Contains(old, "scorer starting") {
		t.Fatalf("rotated log holds %q", old)
	}
	start := time.Now()
	if err := r.Stop(testCtx(t), spec.ID, 30*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("graceful stop took %s", took)
	}
	if log := readLog(t, spec.LogPath); !strings.HasPrefix(log, "graceful exit") {
		t.Errorf("log after rotation and graceful stop = %q, want it to start with \"graceful exit\"", log)
	}
	if _, ok := findInstance(t, r, spec.ID); ok {
		t.Fatal("instance still listed after Stop")
	}
	if err := r.Stop(testCtx(t), spec.ID, time.Second); err != nil {
		t.Fatalf("Stop of a missing instance: %v", err)
	}
	var snaps int
	_ = r.client.SnapshotService(DefaultSnapshotter).Walk(r.ctx(testCtx(t)), func(_ context.Context, i snapshots.Info) error {
		if i.Name == spec.ID {
			snaps++
		}
		return nil
	})
	if snaps != 0 {
		t.Fatal("container snapshot left after Stop")
	}
}

func TestStopKillsAfterGrace(t *testing.T) {
	f := getFixture(t)
	r := newRuntime(t, nil)
	mustPull(t, r, f.plainRef)
	spec := instanceSpec(t, "stubborn-1", f.plainRef, map[string]string{"TEST_IGNORE_TERM": "1"})
	if _, err := r.Start(testCtx(t), spec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitHealthy(t, spec)
	const grace = time.Second
	start := time.Now()
	if err := r.Stop(testCtx(t), spec.ID, grace); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	took := time.Since(start)
	if took < grace || took > grace+30*time.Second {
		t.Errorf("Stop took %s with grace %s", took, grace)
	}
	if strings.Contains(readLog(t, spec.LogPath), "graceful exit") {
		t.Error("program ignoring SIGTERM exited gracefully")
	}
	if _, ok := findInstance(t, r, spec.ID); ok {
		t.Fatal("instance still listed after Stop")
	}
}

func TestImageUser(t *testing.T) {
	f := getFixture(t)
	r := newRuntime(t, nil)
	mustPull(t, r, f.userRef)
	spec := instanceSpec(t, "user-1", f.userRef, nil)
	if _, err := r.Start(testCtx(t), spec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitHealthy(t, spec)
	if in := getInfo(t, spec.Port); in.UID != 4321 {
		t.Fatalf("uid = %d, want the image's user 4321", in.UID)
	}
}

func TestReattachAfterClientRestart(t *testing.T) {
	f := getFixture(t)
	r1 := newRuntime(t, nil)
	mustPull(t, r1, f.plainRef)
	spec := instanceSpec(t, "reattach-1", f.plainRef, nil)
	if _, err := r1.Start(testCtx(t), spec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitHealthy(t, spec)
	cfg := r1.cfg
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}
	waitHealthy(t, spec) // still serving with no client

	r2, err := New(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	got, ok := findInstance(t, r2, spec.ID)
	if !ok || got.State != edge.InstanceRunning || got.Service != "svc" || got.Port != spec.Port || got.StartedAt.IsZero() {
		t.Fatalf("new runtime lists %+v (found %v)", got, ok)
	}
	if err := r2.Stop(testCtx(t), spec.ID, 30*time.Second); err != nil {
		t.Fatalf("Stop from the new runtime: %v", err)
	}
	if !strings.Contains(readLog(t, spec.LogPath), "graceful exit") {
		t.Error("re-attached Stop was not graceful")
	}
}

func TestRestartAfterTaskGone(t *testing.T) {
	f := getFixture(t)
	r := newRuntime(t, nil)
	mustPull(t, r, f.plainRef)
	spec := instanceSpec(t, "restart-1", f.plainRef, nil)
	first, err := r.Start(testCtx(t), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitHealthy(t, spec)
	if _, err := r.Restart(testCtx(t), spec.ID); errclass.ClassOf(err) != errclass.Conflict {
		t.Fatalf("Restart of a running instance: %v, want Conflict", err)
	}

	// What a reboot leaves: the container without its task.
	ctx := r.ctx(testCtx(t))
	c, err := r.client.LoadContainer(ctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	task, err := c.Task(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	exited, err := task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	if _, err := task.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	got, ok := findInstance(t, r, spec.ID)
	if !ok || got.State != edge.InstanceNoTask {
		t.Fatalf("after task deletion List has %+v (found %v), want no-task", got, ok)
	}

	inst, err := r.Restart(testCtx(t), spec.ID)
	if err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if inst.State != edge.InstanceRunning || inst.Port != spec.Port || !inst.StartedAt.After(first.StartedAt) {
		t.Fatalf("Restart returned %+v (first start %s)", inst, first.StartedAt)
	}
	waitHealthy(t, spec)
	if got, _ := findInstance(t, r, spec.ID); got.State != edge.InstanceRunning || !got.StartedAt.Equal(inst.StartedAt) {
		t.Fatalf("after Restart List has %+v", got)
	}
	if _, err := r.Restart(testCtx(t), "no-such-instance"); errclass.ClassOf(err) != errclass.NotFound {
		t.Fatalf("Restart of a missing instance: %v, want NotFound", err)
	}
}

func TestCrashAtStartIsStopped(t *testing.T) {
	f := getFixture(t)
	r := newRuntime(t, nil)
	mustPull(t, r, f.plainRef)
	spec := instanceSpec(t, "crash-1", f.plainRef, map[string]string{"TEST_CRASH": "3"})
	if _, err := r.Start(testCtx(t), spec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	stoppedWith3 := func() bool {
		got, ok := findInstance(t, r, spec.ID)
		return ok && got.State == edge.InstanceStopped && got.ExitCode == 3
	}
	poll(t, "crashed instance listed as stopped with exit code 3", healthWait, stoppedWith3)
	if !strings.Contains(readLog(t, spec.LogPath), "crashing as asked") {
		t.Error("crash output not in the log")
	}
	// Restart replaces the stopped task; it crashes again.
	if _, err := r.Restart(testCtx(t), spec.ID); err != nil {
		t.Fatalf("Restart of a stopped instance: %v", err)
	}
	poll(t, "restarted instance crashes again", healthWait, stoppedWith3)
	if n := strings.Count(readLog(t, spec.LogPath), "crashing as asked"); n != 2 {
		t.Errorf("log has %d crashes, want 2", n)
	}
}

func TestGC(t *testing.T) {
	f := getFixture(t)
	r := newRuntime(t, nil)
	for _, ref := range []string{f.plainRef, f.userRef, f.otherRef} {
		mustPull(t, r, ref)
	}
	spec := instanceSpec(t, "gc-user-1", f.userRef, nil)
	if _, err := r.Start(testCtx(t), spec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := r.GC(testCtx(t), []string{f.plainRef}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	for _, c := range []struct {
		ref  string
		want bool
	}{{f.plainRef, true}, {f.userRef, true}, {f.otherRef, false}} {
		if ok, err := r.HasImage(testCtx(t), c.ref); err != nil || ok != c.want {
			t.Errorf("HasImage(%s) after GC = %v, %v; want %v", c.ref, ok, err, c.want)
		}
	}
	if err := r.GC(testCtx(t), []string{"not pinned"}); errclass.ClassOf(err) != errclass.InvalidArgument || errclass.FieldOf(err) != "keep[0]" {
		t.Fatalf("GC with a bad keep: %v, want InvalidArgument on keep[0]", err)
	}
}

func TestStartErrors(t *testing.T) {
	f := getFixture(t)
	r := newRuntime(t, nil)
	mustPull(t, r, f.plainRef)
	ok := instanceSpec(t, "dup-1", f.plainRef, nil)
	if _, err := r.Start(testCtx(t), ok); err != nil {
		t.Fatalf("Start: %v", err)
	}
	mod := func(m func(*edge.InstanceSpec)) edge.InstanceSpec {
		s := instanceSpec(t, "bad-1", f.plainRef, nil)
		m(&s)
		return s
	}
	tests := []struct {
		name      string
		spec      edge.InstanceSpec
		wantClass errclass.Class
		wantField string
	}{
		{"duplicate id", ok, errclass.Conflict, ""},
		{"bad id", mod(func(s *edge.InstanceSpec) { s.ID = "Bad_ID" }), errclass.InvalidArgument, "id"},
		{"port zero", mod(func(s *edge.InstanceSpec) { s.Port = 0 }), errclass.InvalidArgument, "port"},
		{"no service", mod(func(s *edge.InstanceSpec) { s.Service = "" }), errclass.InvalidArgument, "service"},
		{"image not pulled", mod(func(s *edge.InstanceSpec) { s.Image = f.otherRef }), errclass.FailedPrecondition, "image"},
		{"image by tag", mod(func(s *edge.InstanceSpec) { s.Image = f.openHost + "/test/scorer:plain" }), errclass.InvalidArgument, "image"},
		{"env overrides addr", mod(func(s *edge.InstanceSpec) { s.Env = map[string]string{"MLFLEET_ADDR": "0.0.0.0:1"} }), errclass.InvalidArgument, "env"},
		{"env bad name", mod(func(s *edge.InstanceSpec) { s.Env = map[string]string{"A=B": "x"} }), errclass.InvalidArgument, "env"},
		{"negative memory", mod(func(s *edge.InstanceSpec) { s.Resources.MemoryBytes = -1 }), errclass.InvalidArgument, "resources.memoryBytes"},
		{"relative log", mod(func(s *edge.InstanceSpec) { s.LogPath = "x.log" }), errclass.InvalidArgument, "logPath"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Start(testCtx(t), tt.spec)
			if errclass.ClassOf(err) != tt.wantClass || errclass.FieldOf(err) != tt.wantField {
				t.Fatalf("Start: %v (class %s, field %q), want class %s field %q",
					err, errclass.ClassOf(err), errclass.FieldOf(err), tt.wantClass, tt.wantField)
			}
		})
	}
	if _, found := findInstance(t, r, "bad-1"); found {
		t.Fatal("a failed Start left a container")
	}
}

func TestNewErrors(t *testing.T) {
	needContainerd(t)
	tests := []struct {
		name      string
		cfg       Config
		wantClass errclass.Class
		wantField string
	}{
		{"no address", Config{StateDir: t.TempDir()}, errclass.InvalidArgument, "address"},
		{"no state dir", Config{Address: socket}, errclass.InvalidArgument, "stateDir"},
		{"bad namespace", Config{Address: socket, StateDir: t.TempDir(), Namespace: "a b"}, errclass.InvalidArgument, "namespace"},
		{"negative timeout", Config{Address: socket, StateDir: t.TempDir(), PullTimeout: -1}, errclass.InvalidArgument, "pullTimeout"},
		{"nobody listening", Config{Address: filepath.Join(t.TempDir(), "none.sock"), StateDir: t.TempDir(), ConnectTimeout: 500 * time.Millisecond}, errclass.Unavailable, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(testCtx(t), tt.cfg)
			if err == nil {
				r.Close()
			}
			if errclass.ClassOf(err) != tt.wantClass || errclass.FieldOf(err) != tt.wantField {
				t.Fatalf("New: %v (class %s, field %q), want class %s field %q",
					err, errclass.ClassOf(err), errclass.FieldOf(err), tt.wantClass, tt.wantField)
			}
		})
	}
}

// BenchmarkList measures what the reconcile loop pays to read the state of
// one running instance.
func BenchmarkList(b *testing.B) {
	f := getFixture(b)
	r := newRuntime(b, nil)
	mustPull(b, r, f.plainRef)
	spec := instanceSpec(b, "bench-1", f.plainRef, nil)
	if _, err := r.Start(testCtx(b), spec); err != nil {
		b.Fatal(err)
	}
	ctx := testCtx(b)
	b.ResetTimer()
	for b.Loop() {
		list, err := r.List(ctx)
		if err != nil || len(list) != 1 {
			b.Fatalf("List = %v, %v", list, err)
		}
	}
}

// BenchmarkPullPresent measures Pull of an image already present (the
// reconcile loop's common case).
func BenchmarkPullPresent(b *testing.B) {
	f := getFixture(b)
	r := newRuntime(b, nil)
	mustPull(b, r, f.plainRef)
	ctx := testCtx(b)
	b.ResetTimer()
	for b.Loop() {
		if err := r.Pull(ctx, f.plainRef, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRestartAfterReboot runs a second, private containerd, kills it with
// its shims and containers (what a power cut leaves: containers without
// tasks, snapshots unmounted), starts it again, and checks that List sees
// the instance without a task and Restart brings it back.
func TestRestartAfterReboot(t *testing.T) {
	f := getFixture(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to run its own containerd")
	}
	dir := t.TempDir() // short enough for the socket path (108 bytes)
	script := func(arg string) string {
		cmd := exec.Command("bash", scriptPath(), arg)
		cmd.Env = append(os.Environ(), "MLFLEET_CONTAINERD_DIR="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("containerd-test.sh %s: %v\n%s", arg, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	sock := script("start")
	t.Cleanup(func() { script("stop") })
	cfg := Config{Address: sock, Namespace: "t-reboot", StateDir: t.TempDir()}
	t.Cleanup(func() { cleanNamespace(t, cfg) })
	r, err := New(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustPull(t, r, f.plainRef)
	spec := instanceSpec(t, "reboot-1", f.plainRef, nil)
	if _, err := r.Start(testCtx(t), spec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	waitHealthy(t, spec)
	r.Close()

	script("stop") // the power cut
	poll(t, "container's port closed", healthWait, func() bool {
		c, err := net.DialTimeout("tcp", addr(spec.Port), 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	script("start")

	r, err = New(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got, ok := findInstance(t, r, spec.ID)
	if !ok || (got.State != edge.InstanceNoTask && got.State != edge.InstanceStopped) {
		t.Fatalf("after the reboot List has %+v (found %v), want no-task", got, ok)
	}
	t.Logf("after reboot: %+v", got)
	if _, err := r.Restart(testCtx(t), spec.ID); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	waitHealthy(t, spec)
	if err := r.Stop(testCtx(t), spec.ID, 30*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}
