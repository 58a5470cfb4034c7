package edge

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mlfleet/mlfleet/edge/internal/boltstore"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// scorerRuntime is the fake runtime whose instances are real HTTP servers
// on their ports, answering like a scorer. Unit tests only.
type scorerRuntime struct {
	*fakeRuntime
	srvMu   sync.Mutex
	servers map[string]*http.Server
	starts  int
}

func newScorerRuntime() *scorerRuntime {
	var events []string
	return &scorerRuntime{fakeRuntime: newFakeRuntime(&events), servers: map[string]*http.Server{}}
}

func (s *scorerRuntime) Start(ctx context.Context, spec InstanceSpec) (Instance, error) {
	in, err := s.fakeRuntime.Start(ctx, spec)
	if err != nil {
		return in, err
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", spec.Port))
	if err != nil {
		return in, err
	}
	tag := spec.Image[len(spec.Image)-1:]
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("/score", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintf(w, `{"image":%q}`, tag) })
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "# TYPE mlfleet_scorer_requests_total counter\nmlfleet_scorer_requests_total{code=\"200\"} 7\n")
	})
	mux.HandleFunc("/v1/profile", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{"rows":7}`)) })
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	s.srvMu.Lock()
	s.servers[spec.ID] = srv
	s.starts++
	s.srvMu.Unlock()
	return in, nil
}

func (s *scorerRuntime) Stop(ctx context.Context, id string, grace time.Duration) error {
	s.srvMu.Lock()
	srv := s.servers[id]
	delete(s.servers, id)
	s.srvMu.Unlock()
	if srv != nil {
		_ = srv.Shutdown(ctx)
	}
	return s.fakeRuntime.Stop(ctx, id, grace)
}

func (s *scorerRuntime) Starts() int {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	return s.starts
}

func (s *scorerRuntime) Close() error {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	for _, srv := range s.servers {
		_ = srv.Close()
	}
	return nil
}

// testBroker is an in-process broker admitting one device, with a recorder
// of what the device publishes.
type testBroker struct {
	srv  *mochi.Server
	addr string
	mu   sync.Mutex
	msgs map[string][][]byte
}

type allowDevice struct {
	mochi.HookBase
	id, pass string
}

func (h *allowDevice) ID() string { return "allow-device" }
func (h *allowDevice) Provides(b byte) bool {
	return bytes.Contains([]byte{mochi.OnConnectAuthenticate, mochi.OnACLCheck}, []byte{b})
}
func (h *allowDevice) OnConnectAuthenticate(cl *mochi.Client, pk packets.Packet) bool {
	return string(pk.Connect.Username) == h.id && string(pk.Connect.Password) == h.pass
}
func (h *allowDevice) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	if write {
		return twin.DeviceMayPublish(h.id, topic)
	}
	return twin.DeviceMaySubscribe(h.id, topic)
}

func newTestBroker(t *testing.T, id, pass string) *testBroker {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(&allowDevice{id: id, pass: pass}, nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewNet("t", ln)); err != nil {
		t.Fatal(err)
	}
	b := &testBroker{srv: srv, addr: ln.Addr().String(), msgs: map[string][][]byte{}}
	if err := srv.Subscribe(twin.TopicRoot+"/#", 1, func(cl *mochi.Client, sub packets.Subscription, pk packets.Packet) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.msgs[pk.TopicName] = append(b.msgs[pk.TopicName], bytes.Clone(pk.Payload))
	}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return b
}

func (b *testBroker) last(topic string) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.msgs[topic]
	if len(m) == 0 {
		return nil
	}
	return m[len(m)-1]
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startDaemon(t *testing.T, dir string, rt Runtime) (*Daemon, string, func()) {
	t.Helper()
	store, err := boltstore.Open(StatePath(dir), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{DataDir: dir, GatewayAddr: "127.0.0.1:0", TelemetryWindow: 50 * time.Millisecond,
		ReconcileInterval: 100 * time.Millisecond, HealthInterval: 50 * time.Millisecond,
		MQTTMinBackoff: 20 * time.Millisecond, MQTTMaxBackoff: 200 * time.Millisecond}, Deps{Runtime: rt, Store: store})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	addr, err := d.GatewayAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		_ = store.Close() // the runtime outlives this daemon in these tests
	}
	return d, "http://" + addr.String(), stop
}

func score(base, service string) string {
	resp, err := http.Post(base+"/services/"+service+"/score", "application/json", strings.NewReader(`{"input_df":[]}`))
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, body)
}

// TestDaemonEndToEnd drives the daemon over a real broker with a runtime
// whose instances are real HTTP servers: desired over MQTT, serving through
// the gateway, reported state, telemetry, a blue/green update, and a daemon
// restart that re-attaches without starting anything.
func TestDaemonEndToEnd(t *testing.T) {
	const dev, pass = "d-7", "mld_pw"
	b := newTestBroker(t, dev, pass)
	dir := t.TempDir()
	{
		store, err := boltstore.Open(StatePath(dir), boltstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := store.PutEnrollment(boltstore.Enrollment{DeviceID: dev, Credential: pass, MQTT: boltstore.MQTTCreds{URL: "tcp://" + b.addr, Username: dev, Password: pass}}); err != nil {
			t.Fatal(err)
		}
		store.Close()
	}
	rt := newScorerRuntime()
	d, base, stop := startDaemon(t, dir, rt)

	publish := func(version uint64, c byte) {
		s := twin.ServiceSpec{Name: "iris", Image: img(c), Health: twin.Probe{PeriodMs: 50}}
		p, _ := twin.Encode(twin.Desired{Protocol: 1, Device: dev, Version: version, Services: []twin.ServiceSpec{s}})
		if err := b.srv.Publish(twin.Topic(dev, twin.KindDesired), p, true, 1); err != nil {
			t.Fatal(err)
		}
	}
	reported := func() twin.Reported {
		var r twin.Reported
		if raw := b.last(twin.Topic(dev, twin.KindReported)); raw != nil {
			_ = twin.Decode(raw, twin.MaxDocument, &r, dev)
		}
		return r
	}
	publish(1, 'a')
	waitFor(t, 10*time.Second, "iris serving image a", func() bool { return score(base, "iris") == `200 {"image":"a"}` })
	waitFor(t, 10*time.Second, "reported running", func() bool {
		r := reported()
		return r.ObservedVersion == 1 && len(r.Services) == 1 && r.Services[0].Phase == twin.Running && r.Services[0].Healthy && r.Services[0].Image == img('a')
	})
	waitFor(t, 10*time.Second, "telemetry published", func() bool {
		var tb twin.Telemetry
		raw := b.last(twin.Topic(dev, twin.KindTelemetry))
		return raw != nil && twin.Decode(raw, twin.MaxTelemetry, &tb, dev) == nil && len(tb.Services) == 1 &&
			tb.Services[0].Metrics[`mlfleet_scorer_requests_total{code="200"}`] == 7 && string(tb.Services[0].Profile) == `{"rows":7}`
	})

	publish(2, 'b')
	waitFor(t, 10*time.Second, "iris serving image b", func() bool { return score(base, "iris") == `200 {"image":"b"}` })
	waitFor(t, 10*time.Second, "old instance stopped", func() bool { insts, _ := rt.List(context.Background()); return len(insts) == 1 })

	stop()
	starts := rt.Starts()
	d2, base2, stop2 := startDaemon(t, dir, rt)
	defer stop2()
	if got := score(base2, "iris"); got != `200 {"image":"b"}` {
		t.Fatalf("right after restart: %s", got)
	}
	waitFor(t, 10*time.Second, "second session", func() bool { return d2.SyncCounters().Connects >= 1 && d2.SyncCounters().Stale >= 1 })
	if rt.Starts() != starts {
		t.Fatalf("daemon restart started %d instances; want re-attach", rt.Starts()-starts)
	}
	if d.DeviceID() != dev {
		t.Fatalf("DeviceID = %q", d.DeviceID())
	}
	if err := d2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d2.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for _, tc := range []struct {
		name string
		cfg  Config
		deps Deps
	}{
		{"no data dir", Config{}, Deps{Runtime: newScorerRuntime(), Store: store}},
		{"no runtime", Config{DataDir: "x"}, Deps{Store: store}},
		{"no store", Config{DataDir: "x"}, Deps{Runtime: newScorerRuntime()}},
	} {
		if _, err := New(tc.cfg, tc.deps); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
}
