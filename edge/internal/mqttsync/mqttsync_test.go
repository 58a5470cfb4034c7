package mqttsync

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/edge/internal/boltstore"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

const dev = "d-1"

var creds = map[string]string{dev: "mld_secret", "d-2": "mld_other"}

func img(c byte) string { return "reg.local/models/iris@sha256:" + strings.Repeat(string(c), 64) }

func desiredDoc(t *testing.T, device string, version uint64) []byte {
	t.Helper()
	b, err := twin.Encode(twin.Desired{Protocol: 1, Device: device, Version: version, IssuedAt: time.Unix(1, 0).UTC(),
		Services: []twin.ServiceSpec{{Name: "iris", Image: img('a')}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type device struct {
	store *boltstore.Store
	c     *Client

	mu       sync.Mutex
	got      []uint64 // versions handed to OnDesired
	unstored []uint64 // versions handed over before they were persisted
}

func (d *device) versions() []uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.got)
}

func newDevice(t *testing.T, brokerURL string, tweak func(*Config)) *device {
	t.Helper()
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "state.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	d := &device{store: store}
	cfg := Config{
		Broker: brokerURL, DeviceID: dev, Password: creds[dev], Store: store,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 300 * time.Millisecond, KeepAlive: 2 * time.Second, OpTimeout: 3 * time.Second,
		OnDesired: func(doc twin.Desired) {
			v, _ := store.DesiredVersion()
			d.mu.Lock()
			defer d.mu.Unlock()
			d.got = append(d.got, doc.Version)
			if v != doc.Version {
				d.unstored = append(d.unstored, doc.Version)
			}
		},
	}
	if tweak != nil {
		tweak(&cfg)
	}
	d.c, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   Config
		field string
	}{
		{"bad id", Config{DeviceID: "Bad", Broker: "tcp://x:1", Store: &boltstore.Store{}}, "deviceId"},
		{"no broker", Config{DeviceID: dev, Store: &boltstore.Store{}}, "broker"},
		{"no store", Config{DeviceID: dev, Broker: "tcp://x:1"}, "store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if errclass.FieldOf(err) != tc.field {
				t.Fatalf("New: err = %v, want one naming %q", err, tc.field)
			}
		})
	}
}

// TestSubscribeThenFetch: on connect the device subscribes to desired and
// telemetry/ack before it asks for its desired state, then reports; the
// retained desired document is persisted before it is acted on.
func TestSubscribeThenFetch(t *testing.T) {
	b := startBroker(t, "", creds)
	b.publish(twin.Topic(dev, twin.KindDesired), desiredDoc(t, dev, 3), true)
	d := newDevice(t, b.url(), nil)
	run(t, d.c)

	eventually(t, 5*time.Second, "desired v3 accepted", func() bool { return slices.Equal(d.versions(), []uint64{3}) })
	eventually(t, 5*time.Second, "reported published", func() bool { return len(b.received(twin.Topic(dev, twin.KindReported))) == 1 })
	ev := b.hook.Events()
	want := []string{
		"sub " + twin.Topic(dev, twin.KindDesired),
		"sub " + twin.Topic(dev, twin.KindTelemetryAck),
		"pub " + twin.Topic(dev, twin.KindPresence),
		"pub " + twin.Topic(dev, twin.KindDesiredGet),
		"pub " + twin.Topic(dev, twin.KindReported),
	}
	slices.Sort(ev[:2])
	if !slices.Equal(ev[:5], want) {
		t.Fatalf("broker saw %q, want %q", ev, want)
	}
	var req twin.DesiredRequest
	// The retained v3 may be accepted before the request is built: it holds 0 or 3.
	if err := twin.Decode(b.received(twin.Topic(dev, twin.KindDesiredGet))[0].payload, twin.MaxDocument, &req, dev); err != nil || (req.Have != 0 && req.Have != 3) {
		t.Fatalf("DesiredRequest = %+v, %v", req, err)
	}
	var pres twin.Presence
	p := b.received(twin.Topic(dev, twin.KindPresence))[0]
	if err := twin.Decode(p.payload, twin.MaxDocument, &pres, dev); err != nil || !pres.Online || !p.retain {
		t.Fatalf("presence = %+v retained=%v, %v", pres, p.retain, err)
	}
	if v, _ := d.store.DesiredVersion(); v != 3 {
		t.Fatalf("stored version %d", v)
	}
	if len(d.unstored) != 0 {
		t.Fatalf("acted on versions %v before persisting them", d.unstored)
	}
	if c := d.c.Counters(); c.Accepted != 1 || c.Connects != 1 {
		t.Fatalf("counters %+v", c)
	}
}

// TestVersionsAndBadPayloads: stale, duplicate and replayed versions are
// ignored; malformed and oversized payloads are rejected and counted; only
// newer valid documents are applied, each persisted first.
func TestVersionsAndBadPayloads(t *testing.T) {
	b := startBroker(t, "", creds)
	d := newDevice(t, b.url(), nil)
	run(t, d.c)
	eventually(t, 5*time.Second, "connected", d.c.Connected)
	topic := twin.Topic(dev, twin.KindDesired)

	unknownField := strings.Replace(string(desiredDoc(t, dev, 50)), `"version"`, `"bogus":1,"version"`, 1)
	huge := make([]byte, twin.MaxDocument+1)
	for i := range huge {
		huge[i] = ' '
	}
	steps := []struct {
		name    string
		payload []byte
		want    Counters // cumulative, Connects ignored
	}{
		{"v2 accepted", desiredDoc(t, dev, 2), Counters{Accepted: 1}},
		{"v2 duplicate", desiredDoc(t, dev, 2), Counters{Accepted: 1, Stale: 1}},
		{"v1 stale", desiredDoc(t, dev, 1), Counters{Accepted: 1, Stale: 2}},
		{"garbage", []byte("{not json"), Counters{Accepted: 1, Stale: 2, Malformed: 1}},
		{"empty", nil, Counters{Accepted: 1, Stale: 2, Malformed: 2}},
		{"unknown field", []byte(unknownField), Counters{Accepted: 1, Stale: 2, Malformed: 3}},
		{"other device's doc", desiredDoc(t, "d-2", 60), Counters{Accepted: 1, Stale: 2, Malformed: 4}},
		{"trailing data", append(desiredDoc(t, dev, 61), []byte(" {}")...), Counters{Accepted: 1, Stale: 2, Malformed: 5}},
		{"oversized", huge, Counters{Accepted: 1, Stale: 2, Malformed: 5, Oversized: 1}},
		{"v3 accepted", desiredDoc(t, dev, 3), Counters{Accepted: 2, Stale: 2, Malformed: 5, Oversized: 1}},
		{"v2 replayed", desiredDoc(t, dev, 2), Counters{Accepted: 2, Stale: 3, Malformed: 5, Oversized: 1}},
	}
	for _, s := range steps {
		b.publish(topic, s.payload, false)
		eventually(t, 5*time.Second, s.name, func() bool {
			c := d.c.Counters()
			c.Connects = 0
			return c == s.want
		})
	}
	if got := d.versions(); !slices.Equal(got, []uint64{2, 3}) {
		t.Fatalf("applied versions %v, want [2 3]", got)
	}
	if len(d.unstored) != 0 {
		t.Fatalf("acted before persisting: %v", d.unstored)
	}
	if doc, _ := d.store.Desired(); doc.Version != 3 {
		t.Fatalf("stored desired version %d, want 3", doc.Version)
	}
}

// TestPresenceWill: an abrupt disconnect makes the broker publish the
// retained offline presence; the device then reconnects and says online.
func TestPresenceWill(t *testing.T) {
	b := startBroker(t, "", creds)
	px := startProxy(t, b.addr)
	d := newDevice(t, px.url(), nil)
	run(t, d.c)
	presence := func() []twin.Presence {
		var out []twin.Presence
		for _, m := range b.received(twin.Topic(dev, twin.KindPresence)) {
			var p twin.Presence
			if err := twin.Decode(m.payload, twin.MaxDocument, &p, dev); err != nil {
				t.Fatalf("presence %q: %v", m.payload, err)
			}
			out = append(out, p)
		}
		return out
	}
	eventually(t, 5*time.Second, "online", func() bool { return len(presence()) == 1 })
	px.cut()
	eventually(t, 10*time.Second, "will published", func() bool { p := presence(); return len(p) >= 2 && !p[1].Online })
	eventually(t, 10*time.Second, "online again", func() bool { p := presence(); return len(p) >= 3 && p[len(p)-1].Online })
	eventually(t, 5*time.Second, "second session", func() bool { return d.c.Counters().Connects >= 2 })
}

// TestGoodbye: a clean stop publishes offline presence, retained.
func TestGoodbye(t *testing.T) {
	b := startBroker(t, "", creds)
	d := newDevice(t, b.url(), nil)
	stop := run(t, d.c)
	eventually(t, 5*time.Second, "connected", d.c.Connected)
	stop()
	eventually(t, 5*time.Second, "offline presence", func() bool { return len(b.received(twin.Topic(dev, twin.KindPresence))) == 2 })
	msgs := b.received(twin.Topic(dev, twin.KindPresence))
	var last twin.Presence
	if len(msgs) != 2 || json.Unmarshal(msgs[1].payload, &last) != nil || last.Online || !msgs[1].retain {
		t.Fatalf("presence after stop: %d msgs, last %+v", len(msgs), last)
	}
}

// TestTelemetryDrainAndAck: queued batches go out in order, and an ack
// deletes them up to its seq.
func TestTelemetryDrainAndAck(t *testing.T) {
	b := startBroker(t, "", creds)
	d := newDevice(t, b.url(), func(c *Config) { c.MaxInflight = 3 })
	for range 5 {
		if _, err := d.store.Enqueue(twin.Telemetry{Protocol: 1, Device: dev, Services: []twin.ServiceTelemetry{{Name: "iris", Metrics: map[string]float64{"x": 1}}}}); err != nil {
			t.Fatal(err)
		}
	}
	run(t, d.c)
	topic := twin.Topic(dev, twin.KindTelemetry)
	seqs := func() []uint64 {
		var out []uint64
		for _, m := range b.received(topic) {
			var tb twin.Telemetry
			if err := twin.Decode(m.payload, twin.MaxTelemetry, &tb, dev); err != nil {
				t.Fatalf("telemetry %q: %v", m.payload, err)
			}
			out = append(out, tb.Seq)
		}
		return out
	}
	eventually(t, 5*time.Second, "first window sent", func() bool { return slices.Equal(seqs(), []uint64{1, 2, 3}) })
	ack := func(seq uint64) {
		p, _ := twin.Encode(twin.TelemetryAck{Protocol: 1, Device: dev, Seq: seq})
		b.publish(twin.Topic(dev, twin.KindTelemetryAck), p, false)
	}
	ack(2)
	eventually(t, 5*time.Second, "window slides after ack 2", func() bool { return slices.Equal(seqs(), []uint64{1, 2, 3, 4, 5}) })
	if q, _, _ := d.store.OutboxStats(); q != 3 {
		t.Fatalf("queued after ack 2 = %d, want 3", q)
	}
	ack(5)
	eventually(t, 5*time.Second, "outbox empty", func() bool { q, _, _ := d.store.OutboxStats(); return q == 0 })
	// New telemetry goes out when notified.
	if _, err := d.store.Enqueue(twin.Telemetry{Protocol: 1, Device: dev}); err != nil {
		t.Fatal(err)
	}
	d.c.NotifyTelemetry()
	eventually(t, 5*time.Second, "seq 6 sent", func() bool { s := seqs(); return len(s) == 6 && s[5] == 6 })
	if c := d.c.Counters(); c.Acks != 2 || c.TelemetrySent != 6 {
		t.Fatalf("counters %+v", c)
	}
}

// TestBrokerRestartResync: after the broker restarts (losing its state),
// the device reconnects, asks again for its desired state and reports,
// within 10 s, and applies a newer document the new broker holds.
func TestBrokerRestartResync(t *testing.T) {
	b := startBroker(t, "", creds)
	b.publish(twin.Topic(dev, twin.KindDesired), desiredDoc(t, dev, 4), true)
	d := newDevice(t, b.url(), nil)
	run(t, d.c)
	eventually(t, 5*time.Second, "v4 applied", func() bool { return slices.Equal(d.versions(), []uint64{4}) })
	if err := d.store.PutReported(twin.Reported{Protocol: 1, Device: dev, ObservedVersion: 4, Services: []twin.ServiceStatus{}}); err != nil {
		t.Fatal(err)
	}
	addr := b.addr
	b.close()
	restarted := time.Now()
	b2 := startBroker(t, addr, creds)
	b2.publish(twin.Topic(dev, twin.KindDesired), desiredDoc(t, dev, 5), true)
	eventually(t, 10*time.Second, "resync on the new broker", func() bool {
		return len(b2.received(twin.Topic(dev, twin.KindDesiredGet))) > 0 && len(b2.received(twin.Topic(dev, twin.KindReported))) > 0
	})
	t.Logf("resynced %v after the broker restarted", time.Since(restarted).Round(time.Millisecond))
	var req twin.DesiredRequest
	// The retained v5 may arrive right after the subscription, before the
	// request: both are correct.
	if err := twin.Decode(b2.received(twin.Topic(dev, twin.KindDesiredGet))[0].payload, twin.MaxDocument, &req, dev); err != nil || (req.Have != 4 && req.Have != 5) {
		t.Fatalf("DesiredRequest after restart = %+v, %v; want have 4 or 5", req, err)
	}
	var rep twin.Reported
	if err := twin.Decode(b2.received(twin.Topic(dev, twin.KindReported))[0].payload, twin.MaxDocument, &rep, dev); err != nil || rep.ObservedVersion != 4 {
		t.Fatalf("Reported after restart = %+v, %v", rep, err)
	}
	eventually(t, 5*time.Second, "v5 applied", func() bool { return slices.Equal(d.versions(), []uint64{4, 5}) })
}

// TestWrongCredential: the broker refuses the device; Run keeps retrying
// with backoff and returns nil on cancel.
func TestWrongCredential(t *testing.T) {
	b := startBroker(t, "", creds)
	d := newDevice(t, b.url(), func(c *Config) { c.Password = "wrong" })
	stop := run(t, d.c)
	eventually(t, 5*time.Second, "three refused attempts", func() bool { return b.hook.Refused() >= 3 })
	stop()
	if d.c.Counters().Connects != 0 {
		t.Fatalf("connected with a wrong credential")
	}
}

func TestBackoffJitter(t *testing.T) {
	c := &Client{cfg: Config{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}}
	for _, tc := range []struct {
		n        int
		lo, high time.Duration
	}{{0, 50 * time.Millisecond, 100 * time.Millisecond}, {2, 200 * time.Millisecond, 400 * time.Millisecond}, {30, 500 * time.Millisecond, time.Second}} {
		for range 50 {
			if d := c.backoff(tc.n); d < tc.lo || d > tc.high {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", tc.n, d, tc.lo, tc.high)
			}
		}
	}
}
