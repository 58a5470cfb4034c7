package examples

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/opencontainers/image-spec/identity"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/server"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// Helpers of the edge fault tests and benchmarks: a cloud that can be
// stopped and restarted on the same ports, the real mlfleet-edge binary run
// as a child process, a throttling TCP proxy, and a look into containerd.
// They take testing.TB so that benchmarks use them too.

// buildScorers cross-compiles the scorer for the image platforms into a
// new directory.
func buildScorers() (string, error) {
	dir, err := os.MkdirTemp("", "mlfleet-e2e-scorers")
	if err != nil {
		return "", err
	}
	for _, p := range []struct{ dir, arch, arm string }{{"linux-amd64", "amd64", ""}, {"linux-arm64", "arm64", ""}, {"linux-arm-v7", "arm", "7"}} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, p.dir, "mlfleet-scorer"), "github.com/mlfleet/mlfleet/cmd/mlfleet-scorer")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+p.arch, "GOARM="+p.arm)
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("build scorer %s: %v\n%s", p.dir, err, out)
		}
	}
	return dir, nil
}

// scorersFor is scorers for any testing.TB (it shares scorers' once).
func scorersFor(tb testing.TB) string {
	tb.Helper()
	scorersOnce.Do(func() { scorersDir, scorersErr = buildScorers() })
	if scorersErr != nil {
		tb.Fatal(scorersErr)
	}
	return scorersDir
}

// socketFor is containerdSocket for any testing.TB.
func socketFor(tb testing.TB) string {
	tb.Helper()
	if s := os.Getenv("MLFLEET_CONTAINERD_SOCKET"); s != "" {
		return s
	}
	return startContainerd(tb, "/tmp/mlfleet-e2e-containerd")
}

// startContainerd starts (or finds running) the private containerd of dir
// with scripts/containerd-test.sh and returns its socket.
func startContainerd(tb testing.TB, dir string) string {
	tb.Helper()
	cmd := exec.Command("bash", filepath.Join("..", "scripts", "containerd-test.sh"), "start")
	cmd.Env = append(os.Environ(), "MLFLEET_CONTAINERD_DIR="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("start containerd in %s (apt-get install containerd runc; run as root): %v\n%s", dir, err, stderr.Bytes())
	}
	return strings.TrimSpace(string(out))
}

// stopContainerd stops the private containerd of dir, its shims and their
// containers: every task is gone, as after a reboot.
func stopContainerd(tb testing.TB, dir string) {
	tb.Helper()
	cmd := exec.Command("bash", filepath.Join("..", "scripts", "containerd-test.sh"), "stop")
	cmd.Env = append(os.Environ(), "MLFLEET_CONTAINERD_DIR="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Errorf("stop containerd in %s: %v\n%s", dir, err, out)
	}
}

// waitFor polls cond every 50 ms until it holds or within passes.
func waitFor(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitForState is waitFor for conditions that can say what they saw.
func waitForState(tb testing.TB, within time.Duration, what string, cond func() (bool, string)) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s; last saw: %s", within, what, saw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var httpc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}}

// edgeCloud is a real cloud (embedded broker and registry) that Stop and
// Restart take down and bring back on the same data dir and ports.
type edgeCloud struct {
	tb    testing.TB
	dir   string
	token string

	url, addr, mqttAddr string
	cancel              context.CancelFunc
	done                chan error
}

func newEdgeCloud(tb testing.TB) *edgeCloud {
	tb.Helper()
	dir := tb.TempDir()
	tok, err := server.Init(context.Background(), dir, "admin", "", "")
	if err != nil {
		tb.Fatal(err)
	}
	c := &edgeCloud{tb: tb, dir: dir, token: tok.Secret}
	c.start("127.0.0.1:0", "127.0.0.1:0")
	tb.Cleanup(c.Stop)
	c.json("POST", "/api/v1/subscriptions", `{"name":"demo"}`, 201, nil)
	c.json("POST", "/api/v1/subscriptions/demo/accounts", `{"name":"models","kind":"modelmanagement"}`, 201, nil)
	return c
}

func (c *edgeCloud) start(addr, mqttAddr string) {
	c.tb.Helper()
	srv, err := server.New(server.Config{DataDir: c.dir, Addr: addr, MQTTAddr: mqttAddr, ScorerDir: scorersFor(c.tb),
		ShutdownGrace: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		c.tb.Fatalf("start cloud on %s (mqtt %s): %v", addr, mqttAddr, err)
	}
	c.addr, c.url = srv.Addr(), srv.URL()
	c.mqttAddr = strings.TrimPrefix(srv.MQTTURL(), "tcp://")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	c.cancel, c.done = cancel, done
}

// Stop shuts the cloud down: API, registry and broker (idempotent).
func (c *edgeCloud) Stop() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	if err := <-c.done; err != nil {
		c.tb.Logf("cloud stopped: %v", err)
	}
	c.cancel = nil
}

// Restart starts the cloud again on the same data dir and ports.
func (c *edgeCloud) Restart() {
	c.tb.Helper()
	c.Stop()
	c.start(c.addr, c.mqttAddr)
}

func (c *edgeCloud) call(method, path, ctype string, body []byte, want int, out any) {
	c.tb.Helper()
	req, err := http.NewRequest(method, c.url+path, bytes.NewReader(body))
	if err != nil {
		c.tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", ctype)
	resp, err := httpc.Do(req)
	if err != nil {
		c.tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.tb.Fatalf("%s %s = %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.tb.Fatal(err)
		}
	}
}

func (c *edgeCloud) json(method, path, body string, want int, out any) {
	c.tb.Helper()
	c.call(method, path, "application/json", []byte(body), want, out)
}

// build registers model as a new version of name, makes a manifest of it
// (extra is spliced into the manifest's JSON, e.g. `,"schema":{...}`) and
// builds its image.
func (c *edgeCloud) build(name string, model []byte, extra string) cloud.Image {
	c.tb.Helper()
	var m cloud.Model
	c.call("POST", acctPath+"/models/"+name+"/versions", "application/octet-stream", model, 201, &m)
	var mf cloud.Manifest
	c.json("POST", acctPath+"/manifests", fmt.Sprintf(`{"apiVersion":"mlfleet.io/v1","name":%q,"runtime":"onnx","models":[{"name":%q,"version":%d}]%s}`, name, name, m.Version, extra), 201, &mf)
	var op cloud.Operation
	c.json("POST", acctPath+"/images", fmt.Sprintf(`{"name":%q,"manifest":"%s:%d"}`, name, name, mf.Version), 202, &op)
	deadline := time.Now().Add(5 * time.Minute)
	for !op.Done {
		if time.Now().After(deadline) {
			c.tb.Fatalf("image build did not finish: %+v", op)
		}
		time.Sleep(100 * time.Millisecond)
		c.json("GET", acctPath+"/operations/"+op.ID, "", 200, &op)
	}
	if op.Status != cloud.OpSucceeded {
		c.tb.Fatalf("image build failed: %+v", op.Error)
	}
	var img cloud.Image
	c.json("GET", "/api/v1"+op.Result, "", 200, &img)
	return img
}

// image builds an image of a model file of testdata.
func (c *edgeCloud) image(name, file string) cloud.Image {
	c.tb.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		c.tb.Fatal(err)
	}
	return c.build(name, b, "")
}

func (c *edgeCloud) device(id string) cloud.Device {
	c.tb.Helper()
	var d cloud.Device
	c.json("GET", acctPath+"/devices/"+id, "", 200, &d)
	return d
}

// setDesired publishes the device's next desired state and returns its version.
func (c *edgeCloud) setDesired(id string, services ...twin.ServiceSpec) uint64 {
	c.tb.Helper()
	body, _ := json.Marshal(map[string]any{"services": append([]twin.ServiceSpec{}, services...)})
	var d cloud.Device
	c.json("PUT", acctPath+"/devices/"+id+"/desired", string(body), 200, &d)
	if d.Desired == nil {
		c.tb.Fatalf("desired state of %s not set", id)
	}
	return d.Desired.Version
}

func (c *edgeCloud) status(id, service string) twin.ServiceStatus {
	c.tb.Helper()
	return serviceStatus(c.device(id), service)
}

// adminPull is a pull credential for images reached through a proxy (the
// cloud makes pull tokens only for references naming its own address).
func (c *edgeCloud) adminPull() *twin.PullAuth {
	return &twin.PullAuth{Username: "admin", Password: c.token, ExpiresAt: time.Now().Add(time.Hour).UTC()}
}

var (
	edgeBinOnce sync.Once
	edgeBin     string
	edgeBinErr  error
)

// edgeBinary builds the real, stripped mlfleet-edge binary once.
func edgeBinary(tb testing.TB) string {
	tb.Helper()
	edgeBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mlfleet-edge-bin")
		if err != nil {
			edgeBinErr = err
			return
		}
		edgeBin = filepath.Join(dir, "mlfleet-edge")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", edgeBin, "github.com/mlfleet/mlfleet/cmd/mlfleet-edge")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			edgeBinErr = fmt.Errorf("build mlfleet-edge: %v\n%s", err, out)
		}
	})
	if edgeBinErr != nil {
		tb.Fatal(edgeBinErr)
	}
	return edgeBin
}

// edgeProc is an enrolled mlfleet-edge daemon run as a child process.
type edgeProc struct {
	tb                 testing.TB
	bin, dir, sock, ns string
	id                 string
	logPath            string

	cmd    *exec.Cmd
	exited chan struct{}
	gw     string // http://<gateway addr> of the current run
}

var enrolledRE = regexp.MustCompile(`enrolled as device (\S+)`)

// enrollEdge enrolls a new device with `mlfleet-edge enroll`. Its cleanup
// stops the daemon and removes everything it left in containerd.
func enrollEdge(tb testing.TB, c *edgeCloud, sock string) *edgeProc {
	tb.Helper()
	var et cloud.EnrollmentToken
	c.json("POST", acctPath+"/enrollmentTokens", `{"labels":{"site":"lab"}}`, 201, &et)
	p := &edgeProc{tb: tb, bin: edgeBinary(tb), dir: tb.TempDir(), sock: sock, ns: fmt.Sprintf("mlfleet-faults-%d", time.Now().UnixNano())}
	p.logPath = filepath.Join(tb.TempDir(), "mlfleet-edge.log")
	out, err := exec.Command(p.bin, "enroll", "--cloud", c.url, "--token", et.Token, "--name", "faults", "--data-dir", p.dir).CombinedOutput()
	if err != nil {
		tb.Fatalf("mlfleet-edge enroll: %v\n%s", err, out)
	}
	m := enrolledRE.FindSubmatch(out)
	if m == nil {
		tb.Fatalf("mlfleet-edge enroll said %q", out)
	}
	p.id = string(m[1])
	tb.Cleanup(func() {
		p.stop()
		purgeNamespace(tb, p.sock, p.ns)
		if tb.Failed() {
			if b, err := os.ReadFile(p.logPath); err == nil {
				tb.Logf("mlfleet-edge log (last 4 KiB):\n%s", tail(b, 4096))
			}
		}
	})
	return p
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

var gatewayRE = regexp.MustCompile(`msg="gateway listening" addr=(\S+)`)

// start runs `mlfleet-edge run` and waits until its gateway listens.
func (p *edgeProc) start() {
	p.tb.Helper()
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.tb.Fatal(err)
	}
	cmd := exec.Command(p.bin, "run", "--data-dir", p.dir, "--containerd-address", p.sock, "--namespace", p.ns,
		"--gateway-addr", "127.0.0.1:0", "--log-level", "debug")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		p.tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		p.tb.Fatal(err)
	}
	addr := make(chan string, 1)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			_, _ = logf.Write(append(line, '\n'))
			if m := gatewayRE.FindSubmatch(line); m != nil {
				select {
				case addr <- string(m[1]):
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		_ = cmd.Wait()
		_ = logf.Close()
	}()
	p.cmd, p.exited = cmd, exited
	select {
	case a := <-addr:
		p.gw = "http://" + a
	case <-exited:
		b, _ := os.ReadFile(p.logPath)
		p.tb.Fatalf("mlfleet-edge exited before listening:\n%s", tail(b, 4096))
	case <-time.After(time.Minute):
		p.tb.Fatal("mlfleet-edge did not listen within a minute")
	}
}

// running reports whether the daemon process is up.
func (p *edgeProc) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// kill9 kills the daemon with SIGKILL and waits for it to be gone.
func (p *edgeProc) kill9() {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// stop asks the daemon to stop (SIGTERM), and kills it after 30 s.
func (p *edgeProc) stop() {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.tb.Errorf("mlfleet-edge did not stop within 30s of SIGTERM")
		p.kill9()
	}
}

// ctrClient connects to containerd for looking at what the daemon left.
func ctrClient(tb testing.TB, sock string) *containerd.Client {
	tb.Helper()
	cl, err := containerd.New(sock, containerd.WithTimeout(10*time.Second))
	if err != nil {
		tb.Fatalf("connect to containerd at %s: %v", sock, err)
	}
	tb.Cleanup(func() { _ = cl.Close() })
	return cl
}

// purgeNamespace removes every container, image and lease of ns, then ns.
func purgeNamespace(tb testing.TB, sock, ns string) {
	tb.Helper()
	cl, err := containerd.New(sock, containerd.WithTimeout(10*time.Second))
	if err != nil {
		tb.Logf("purge %s: %v", ns, err)
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), time.Minute)
	defer cancel()
	cs, _ := cl.Containers(ctx)
	for _, c := range cs {
		if task, err := c.Task(ctx, nil); err == nil {
			_, _ = task.Delete(ctx, containerd.WithProcessKill)
		}
		if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
			tb.Errorf("purge %s: delete container %s: %v", ns, c.ID(), err)
		}
	}
	is := cl.ImageService()
	imgs, _ := is.List(ctx)
	for _, img := range imgs {
		_ = is.Delete(ctx, img.Name, images.SynchronousDelete())
	}
	lm := cl.LeasesService()
	ls, _ := lm.List(ctx)
	for _, l := range ls {
		_ = lm.Delete(ctx, l, leases.SynchronousDelete)
	}
	_ = cl.NamespaceService().Delete(ctx, ns)
	// runc leaves the namespace's (empty) parent cgroups behind.
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + ns)
	for _, d := range append(dirs, "/sys/fs/cgroup/"+ns) {
		_ = os.Remove(d)
	}
}

// leftovers is what a namespace holds beyond its images and containers.
type leftovers struct {
	Leases  []string // any lease
	Ingests []string // partial downloads
	// Snapshots not used by a container nor in the chain of a stored image.
	Snapshots []string
}

func (l leftovers) empty() bool {
	return len(l.Leases)+len(l.Ingests)+len(l.Snapshots) == 0
}

// inspectNamespace lists the leftovers of ns.
func inspectNamespace(tb testing.TB, cl *containerd.Client, ns string) leftovers {
	tb.Helper()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 30*time.Second)
	defer cancel()
	var out leftovers
	ls, err := cl.LeasesService().List(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	for _, l := range ls {
		out.Leases = append(out.Leases, fmt.Sprintf("%s %v", l.ID, l.Labels))
	}
	sts, err := cl.ContentStore().ListStatuses(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	for _, s := range sts {
		out.Ingests = append(out.Ingests, fmt.Sprintf("%s (%d/%d bytes)", s.Ref, s.Offset, s.Total))
	}
	used := map[string]bool{}
	cs, err := cl.Containers(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	for _, c := range cs {
		info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
		if err != nil {
			tb.Fatal(err)
		}
		used[info.SnapshotKey] = true
	}
	imgs, err := cl.ListImages(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	for _, img := range imgs {
		diffs, err := img.RootFS(ctx)
		if err != nil {
			tb.Fatalf("rootfs of %s: %v", img.Name(), err)
		}
		for _, id := range identity.ChainIDs(diffs) {
			used[id.String()] = true
		}
	}
	err = cl.SnapshotService("overlayfs").Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if !used[info.Name] {
			out.Snapshots = append(out.Snapshots, fmt.Sprintf("%s (%s)", info.Name, info.Kind))
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// instance is a running container of a service, as containerd has it.
type instance struct {
	id   string
	port int
}

// runningInstances lists the running containers of service in ns.
func runningInstances(tb testing.TB, cl *containerd.Client, ns, service string) []instance {
	tb.Helper()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 30*time.Second)
	defer cancel()
	cs, err := cl.Containers(ctx, `labels."mlfleet.service"==`+strconv.Quote(service))
	if err != nil {
		tb.Fatal(err)
	}
	var out []instance
	for _, c := range cs {
		labels, err := c.Labels(ctx)
		if err != nil {
			continue
		}
		task, err := c.Task(ctx, nil)
		if err != nil {
			continue
		}
		st, err := task.Status(ctx)
		if err != nil || st.Status != containerd.Running {
			continue
		}
		port, _ := strconv.Atoi(labels["mlfleet.port"])
		out = append(out, instance{id: c.ID(), port: port})
	}
	return out
}

// scoreURL posts the iris rows to u; it returns nil when two labels come back.
func scoreURL(u string) error {
	resp, err := httpc.Post(u, "application/json", strings.NewReader(irisRow))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %d %s", u, resp.StatusCode, b)
	}
	var out struct {
		Result []json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(b, &out); err != nil || len(out.Result) != 2 {
		return fmt.Errorf("%s: answer %s (%v)", u, b, err)
	}
	return nil
}

// load scores u from n clients until stopped and counts the outcomes.
type load struct {
	ok, failed atomic.Int64
	lastErr    atomic.Value
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(n int, u func() string) *load {
	l := &load{stop: make(chan struct{})}
	for range n {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				if err := scoreURL(u()); err != nil {
					l.failed.Add(1)
					l.lastErr.Store(err.Error())
				} else {
					l.ok.Add(1)
				}
			}
		})
	}
	return l
}

// end stops the clients and returns the counts.
func (l *load) end() (ok, failed int64, lastErr any) {
	close(l.stop)
	l.wg.Wait()
	return l.ok.Load(), l.failed.Load(), l.lastErr.Load()
}

// tcpProxy forwards TCP connections to a target, optionally throttling what
// flows back to the client; Close takes it down (dropping connections) and
// Reopen brings it back on the same address.
type tcpProxy struct {
	target string
	addr   string
	// rate bounds the bytes per second sent back to each client (0: none).
	rate atomic.Int64
	// down counts the bytes sent back to clients.
	down atomic.Int64

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func newProxy(tb testing.TB, target string) *tcpProxy {
	tb.Helper()
	p := &tcpProxy{target: target, conns: map[net.Conn]bool{}}
	if err := p.listen("127.0.0.1:0"); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(p.Close)
	return p
}

func (p *tcpProxy) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.serve(c) })
		}
	})
	return nil
}

// Reopen listens again on the proxy's address.
func (p *tcpProxy) Reopen(tb testing.TB) {
	tb.Helper()
	if err := p.listen(p.addr); err != nil {
		tb.Fatalf("reopen proxy on %s: %v", p.addr, err)
	}
}

// Close stops listening and drops every connection.
func (p *tcpProxy) Close() {
	p.mu.Lock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *tcpProxy) track(c net.Conn, on bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on && p.ln == nil {
		return false
	}
	if on {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
	return true
}

func (p *tcpProxy) serve(client net.Conn) {
	defer client.Close()
	if !p.track(client, true) {
		return
	}
	defer p.track(client, false)
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	if !p.track(up, true) {
		return
	}
	defer p.track(up, false)
	go func() {
		_, _ = io.Copy(up, client)
		_ = up.(*net.TCPConn).CloseWrite()
	}()
	buf := make([]byte, 16<<10)
	for {
		chunk := buf
		if r := p.rate.Load(); r > 0 && r/10 < int64(len(chunk)) {
			chunk = buf[:max(r/10, 1)] // ten chunks a second
		}
		n, err := up.Read(chunk)
		if n > 0 {
			if _, werr := client.Write(chunk[:n]); werr != nil {
				return
			}
			p.down.Add(int64(n))
			if r := p.rate.Load(); r > 0 {
				time.Sleep(time.Duration(int64(n) * int64(time.Second) / r)) // throttling, not waiting for a condition
			}
		}
		if err != nil {
			return
		}
	}
}

// viaProxy rewrites an image reference of the cloud's registry to reach it
// through the proxy.
func viaProxy(ref, cloudAddr, proxyAddr string) string {
	return strings.Replace(ref, cloudAddr+"/", proxyAddr+"/", 1)
}

// procStatus reads VmRSS and VmHWM (bytes) of a process.
func procStatus(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			hwm = n << 10
		}
	}
	return rss, hwm, nil
}

// paddedModel is testdata/iris_logreg.onnx with n random bytes appended as
// a field ONNX does not define (parsers skip it): the same model, but an
// image layer of its own, of about n bytes, that no other test has pulled
// (containerd shares content between namespaces).
func paddedModel(tb testing.TB, n int) []byte {
	tb.Helper()
	b, err := os.ReadFile("testdata/iris_logreg.onnx")
	if err != nil {
		tb.Fatal(err)
	}
	pad := make([]byte, n)
	if _, err := rand.Read(pad); err != nil {
		tb.Fatal(err)
	}
	b = binary.AppendUvarint(b, 1000<<3|2) // field 1000, length-delimited
	b = binary.AppendUvarint(b, uint64(n))
	return append(b, pad...)
}
