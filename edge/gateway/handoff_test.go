package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	scoring "github.com/mlfleet/mlfleet/images/scorer"
)

// These tests run real scorers (images/scorer) with handoff sockets behind
// a served gateway: connections move to the scorers and back for real.

const testdata = "../../examples/testdata"

// irisBody is one iris row, by feature name.
const irisBody = `{"input_df":[{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}]}`

type liveScorer struct {
	url    *url.URL
	socket string
	stop   context.CancelFunc
	done   chan error
}

// startScorer serves model (a file of examples/testdata) as a scorer with
// a handoff socket (unless noSocket) until the test ends or stop.
func startScorer(t testing.TB, model string, noSocket bool) *liveScorer {
	return startNamedScorer(t, "iris", model, noSocket)
}

// startNamedScorer is startScorer with the model named name.
func startNamedScorer(t testing.TB, name, model string, noSocket bool) *liveScorer {
	t.Helper()
	dir := t.TempDir()
	m, err := os.ReadFile("../../examples/iris/manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(m, &doc); err != nil {
		t.Fatal(err)
	}
	doc["name"] = name
	doc["models"] = []map[string]any{{"name": name, "version": 1, "path": model}}
	m, _ = json.Marshal(doc)
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), m, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(testdata, model))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, model), b, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := scoring.Config{Manifest: filepath.Join(dir, "manifest.json"), ModelDir: dir, Logger: slog.New(slog.DiscardHandler)}
	if !noSocket {
		cfg.HandoffSocket = filepath.Join(dir, "h.sock")
	}
	s, err := scoring.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ls := &liveScorer{url: &url.URL{Scheme: "http", Host: ln.Addr().String()}, socket: cfg.HandoffSocket, stop: cancel, done: make(chan error, 1)}
	go func() { ls.done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-ls.done })
	if !noSocket {
		waitFor(t, "handoff socket", func() bool { _, err := os.Stat(cfg.HandoffSocket); return err == nil })
	}
	return ls
}

func (s *liveScorer) route(service string) Route {
	return Route{Service: service, Model: "iris", Backend: s.url, Handoff: s.socket}
}

// serveGateway runs g.Serve on 127.0.0.1:0 until the test ends (or the
// returned stop).
func serveGateway(t testing.TB, g *Gateway) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Serve(ctx, ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return "http://" + ln.Addr().String(), stop
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// oneConn is a client that keeps a single connection (closed when the test
// ends, before the scorers stop: they would wait for its next request).
func oneConn(t *testing.T) *http.Client {
	tr := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// call does one request; it returns the status and body.
func call(c *http.Client, method, u, key, body string) (int, string, error) {
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestHandoffServesKeepAliveConnectionsDirectly(t *testing.T) {
	sc := startScorer(t, "iris_logreg.onnx", false)
	g := New(Config{})
	g.SetRoutes([]Route{sc.route("iris")})
	base, _ := serveGateway(t, g)
	c := oneConn(t)
	for i := range 50 {
		code, body, err := call(c, "POST", base+"/services/iris/score", "", irisBody)
		if err != nil || code != 200 || !strings.Contains(body, `"label":0`) {
			t.Fatalf("request %d: %d %q %v", i, code, body, err)
		}
	}
	// OIP and metadata routes on the same connection.
	for _, p := range []string{"/services/iris/swagger.json", "/v2/models/iris", "/v2/models/iris/ready"} {
		if code, body, err := call(c, "GET", base+p, "", ""); err != nil || code != 200 {
			t.Fatalf("GET %s: %d %q %v", p, code, body, err)
		}
	}
	if handed, returned, _ := g.HandoffStats(); handed != 1 || returned != 0 {
		t.Fatalf("handed off %d, returned %d; want the one connection handed off once", handed, returned)
	}
}

// TestHandoffRoutesEveryRequest: one keep-alive connection alternates
// between two services and the gateway's own endpoints; each answer comes
// from the right place.
func TestHandoffRoutesEveryRequest(t *testing.T) {
	a := startScorer(t, "iris_logreg.onnx", false)
	b := startNamedScorer(t, "iris-mlp", "iris_mlp.onnx", false)
	g := New(Config{})
	ra, rb := a.route("a"), b.route("b")
	rb.Model = "iris-mlp"
	g.SetRoutes([]Route{ra, rb})
	base, _ := serveGateway(t, g)
	c := oneConn(t)
	direct := func(s *liveScorer) string {
		_, body, err := call(http.DefaultClient, "POST", s.url.String()+"/score", "", irisBody)
		if err != nil {
			t.Fatal(err)
		}
		return body
	}
	wantA, wantB := direct(a), direct(b)
	if wantA == wantB {
		t.Fatal("the two models answer alike: the test cannot tell them apart")
	}
	steps := []struct{ method, path, body, want string }{
		{"POST", "/services/a/score", irisBody, wantA},
		{"POST", "/services/a/score", irisBody, wantA},
		{"POST", "/services/b/score", irisBody, wantB},
		{"GET", "/healthz", "", `"status":"ok"`},
		{"POST", "/services/a/score", irisBody, wantA},
		{"GET", "/v2/health/ready", "", `"ready":true`},
		{"POST", "/services/b/score", irisBody, wantB},
		{"GET", "/services/nope/score", "", `"code":"unavailable"`},
		{"POST", "/services/b/score", irisBody, wantB},
		{"GET", "/v2/models/iris-mlp/ready", "", `"ready":true`},
		{"POST", "/services/a/score", irisBody, wantA},
	}
	for i, s := range steps {
		_, body, err := call(c, s.method, base+s.path, "", s.body)
		if err != nil || !strings.Contains(body, s.want) {
			t.Fatalf("step %d %s %s: %q %v, want %q", i, s.method, s.path, body, err, s.want)
		}
	}
	if handed, returned, _ := g.HandoffStats(); handed < 2 || returned < 2 {
		t.Fatalf("handed off %d, returned %d; want the connection to travel", handed, returned)
	}
}

func TestHandoffKeepsTheLocalKey(t *testing.T) {
	sc := startScorer(t, "iris_logreg.onnx", false)
	g := New(Config{Key: "s3cret"})
	g.SetRoutes([]Route{sc.route("iris")})
	base, _ := serveGateway(t, g)
	c := oneConn(t)
	steps := []struct {
		key, path string
		want      int
	}{
		{"s3cret", "/services/iris/score", 200}, // handed off after this one
		{"", "/services/iris/score", 401},
		{"wrong", "/services/iris/score", 401},
		{"", "/v2/models/iris/infer", 401},
		{"s3cret", "/services/iris/score", 200},
	}
	for i, s := range steps {
		body := irisBody
		if strings.HasPrefix(s.path, "/v2/") {
			body = `{"inputs":[]}`
		}
		code, got, err := call(c, "POST", base+s.path, s.key, body)
		if err != nil || code != s.want {
			t.Fatalf("step %d: %d %q %v, want %d", i, code, got, err, s.want)
		}
	}
	if handed, _, _ := g.HandoffStats(); handed != 1 {
		t.Fatalf("handed off %d connections, want 1", handed)
	}
}

// TestHandoffSwitchUnderLoad is the blue/green switch: clients keep
// connections busy on A; the route moves to B and A drains and stops.
// No request fails, and afterwards every answer is B's.
func TestHandoffSwitchUnderLoad(t *testing.T) {
	a := startScorer(t, "iris_logreg.onnx", false)
	b := startScorer(t, "iris_mlp.onnx", false)
	g := New(Config{})
	g.SetRoutes([]Route{a.route("iris")})
	base, _ := serveGateway(t, g)
	_, wantA, _ := call(http.DefaultClient, "POST", a.url.String()+"/score", "", irisBody)
	_, wantB, _ := call(http.DefaultClient, "POST", b.url.String()+"/score", "", irisBody)
	// Two idle connections for eight clients: connections come and go, as with http.DefaultClient.
	tr := &http.Transport{MaxIdleConnsPerHost: 2}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var okA, okB, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, body, err := call(client, "POST", base+"/services/iris/score", "", irisBody)
				switch {
				case err == nil && code == 200 && body == wantA:
					okA.Add(1)
				case err == nil && code == 200 && body == wantB:
					okB.Add(1)
				default:
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %q %v", code, body, err))
				}
			}
		})
	}
	waitFor(t, "load on A", func() bool { return okA.Load() > 200 })
	g.SetRoutes([]Route{b.route("iris")})
	a.stop() // SIGTERM: A drains
	if err := <-a.done; err != nil {
		t.Fatalf("A: %v", err)
	}
	a.done <- nil // for the cleanup
	waitFor(t, "load on B", func() bool { return okB.Load() > 200 })
	nA, nB := okA.Load(), okB.Load() // answers of A still on their way are in by now
	waitFor(t, "more load on B", func() bool { return okB.Load() > nB+200 })
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || okA.Load() != nA {
		t.Fatalf("A %d (then %d), B %d, failed %d (first: %v); want no failure and nothing on A after it stopped",
			nA, okA.Load(), okB.Load(), failed.Load(), firstErr.Load())
	}
	handed, returned, rejected := g.HandoffStats()
	t.Logf("A %d, B %d; handed off %d, returned %d, rejected %d", nA, okB.Load(), handed, returned, rejected)
	if returned == 0 || rejected != 0 {
		t.Fatalf("returned %d, rejected %d: want A to give its connections back", returned, rejected)
	}
}

func TestHandoffFallsBackToProxying(t *testing.T) {
	sc := startScorer(t, "iris_logreg.onnx", true) // no socket
	g := New(Config{})
	r := sc.route("iris")
	r.Handoff = filepath.Join(t.TempDir(), "missing.sock")
	g.SetRoutes([]Route{r})
	base, _ := serveGateway(t, g)
	c := oneConn(t)
	for i := range 5 {
		if code, body, err := call(c, "POST", base+"/services/iris/score", "", irisBody); err != nil || code != 200 {
			t.Fatalf("request %d: %d %q %v", i, code, body, err)
		}
	}
	if handed, _, _ := g.HandoffStats(); handed != 0 {
		t.Fatalf("handed off %d connections to a scorer without a socket", handed)
	}
}

// TestHandedConnectionsOutliveTheGateway: a daemon restart does not cut
// clients the scorers already serve.
func TestHandedConnectionsOutliveTheGateway(t *testing.T) {
	sc := startScorer(t, "iris_logreg.onnx", false)
	g := New(Config{})
	g.SetRoutes([]Route{sc.route("iris")})
	base, stop := serveGateway(t, g)
	c := oneConn(t)
	if code, _, err := call(c, "POST", base+"/services/iris/score", "", irisBody); err != nil || code != 200 {
		t.Fatalf("%d %v", code, err)
	}
	stop()
	for i := range 5 {
		if code, body, err := call(c, "POST", base+"/services/iris/score", "", irisBody); err != nil || code != 200 {
			t.Fatalf("request %d after the gateway stopped: %d %q %v", i, code, body, err)
		}
	}
}

// TestHandedConnectionsMoveOnAfterAGatewayRestart: connections handed over
// by a gateway that has since stopped (a daemon restart) come back to the new
// gateway when their scorer drains, and go on to the new version.
func TestHandedConnectionsMoveOnAfterAGatewayRestart(t *testing.T) {
	a := startScorer(t, "iris_logreg.onnx", false)
	b := startScorer(t, "iris_mlp.onnx", false)
	_, wantA, _ := call(http.DefaultClient, "POST", a.url.String()+"/score", "", irisBody)
	_, wantB, _ := call(http.DefaultClient, "POST", b.url.String()+"/score", "", irisBody)

	g1 := New(Config{})
	g1.SetRoutes([]Route{a.route("iris")})
	base, stop1 := serveGateway(t, g1)
	c := oneConn(t)
	if _, body, err := call(c, "POST", base+"/services/iris/score", "", irisBody); err != nil || body != wantA {
		t.Fatalf("first request: %q %v", body, err)
	}
	stop1() // the daemon restarts: A keeps the connection

	g2 := New(Config{})
	g2.SetRoutes([]Route{a.route("iris")})
	base2, _ := serveGateway(t, g2)
	waitFor(t, "the new gateway", func() bool {
		code, _, _ := call(http.DefaultClient, "GET", base2+"/healthz", "", "")
		return code == 200
	})
	g2.SetRoutes([]Route{b.route("iris")}) // blue/green: route to B, then stop A
	stopped := make(chan struct{})
	go func() { a.stop(); <-a.done; a.done <- nil; close(stopped) }()

	// The old connection keeps working: answered by A until it drains, then
	// given back to the new gateway and answered by B.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body, err := call(c, "POST", base+"/services/iris/score", "", irisBody)
		if err != nil || (body != wantA && body != wantB) {
			t.Fatalf("request on the old connection: %q %v", body, err)
		}
		if body == wantB {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the old connection never moved to B")
		}
	}
	<-stopped
	if _, returned, _ := g2.HandoffStats(); returned == 0 {
		t.Fatal("the new gateway got nothing back")
	}
}

// BenchmarkScoring compares, with a real scorer in this process and 16
// keep-alive clients, calling the scorer's port directly, going through the
// gateway with connection handoff, and through the gateway proxying every
// request (a scorer without a handoff socket). The figures that count are
// EdgeFigures' (separate processes, real containers); these need no root.
func BenchmarkScoring(b *testing.B) {
	withSocket := startScorer(b, "iris_logreg.onnx", false)
	without := startScorer(b, "iris_logreg.onnx", true)
	gh := New(Config{})
	gh.SetRoutes([]Route{withSocket.route("iris")})
	baseHandoff, _ := serveGateway(b, gh)
	gp := New(Config{})
	gp.SetRoutes([]Route{without.route("iris")})
	baseProxy, _ := serveGateway(b, gp)
	for _, c := range []struct{ name, url string }{
		{"direct", withSocket.url.String() + "/score"},
		{"handoff", baseHandoff + "/services/iris/score"},
		{"proxy", baseProxy + "/services/iris/score"},
	} {
		b.Run(c.name, func(b *testing.B) {
			tr := &http.Transport{MaxIdleConnsPerHost: 16}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			b.SetParallelism(8) // 16 clients on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					code, _, err := call(client, "POST", c.url, "", irisBody)
					if err != nil || code != 200 {
						b.Errorf("%d %v", code, err)
						return
					}
				}
			})
		})
	}
}
