package cloud

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

func ptr[T any](v T) *T { return &v }

// scorerMetrics is a service's flattened /metrics as a device sends them:
// ok and 5xx scoring requests, a 400, health probes, and a latency
// histogram whose observations are all at latency (seconds).
func scorerMetrics(ok, failed, latency float64) map[string]float64 {
	m := map[string]float64{
		`mlfleet_scorer_requests_total{code="200",endpoint="score"}`:      ok,
		`mlfleet_scorer_requests_total{code="500",endpoint="score"}`:      failed,
		`mlfleet_scorer_requests_total{code="400",endpoint="score"}`:      7,   // the caller's fault
		`mlfleet_scorer_requests_total{code="503",endpoint="healthz"}`:    100, // probes are not traffic
		`mlfleet_scorer_errors_total{reason="internal"}`:                  failed,
		`mlfleet_scorer_request_duration_seconds_count{endpoint="score"}`: ok + failed + 7,
	}
	n := ok + failed + 7
	for _, le := range []float64{0.001, 0.01, 0.1, 0.25, 1} {
		v := 0.0
		if latency <= le {
			v = n
		}
		m[fmt.Sprintf(`mlfleet_scorer_request_duration_seconds_bucket{endpoint="score",le="%g"}`, le)] = v
	}
	m[`mlfleet_scorer_request_duration_seconds_bucket{endpoint="score",le="+Inf"}`] = n
	m[`mlfleet_scorer_request_duration_seconds_bucket{endpoint="healthz",le="+Inf"}`] = 100
	return m
}

func TestSLOWindow(t *testing.T) {
	gate := &SLOGate{MaxErrorRate: ptr(0.05), MaxP99Ms: ptr(100.0)}
	zero := map[string]float64{}
	cases := []struct {
		name         string
		base, latest map[string]float64
		requests     float64
		p99Ms        float64 // -1: none
		reset        bool
		why          string // "" passes
	}{
		{"no traffic passes", zero, zero, 0, -1, false, ""},
		{"no traffic in the window passes", scorerMetrics(500, 100, 2), scorerMetrics(500, 100, 2), 0, -1, false, ""},
		{"from zero, healthy", zero, scorerMetrics(993, 0, 0.005), 1000, 10, false, ""},
		{"error rate over", zero, scorerMetrics(345, 155, 0.005), 507, 10, false, "slo: error rate 0.306 over 0.05 (155 of 507 requests)"},
		{"exactly at the error threshold passes", scorerMetrics(100, 10, 0.005), scorerMetrics(195, 15, 0.005), 100, 10, false, ""},
		{"difference, not totals: old errors do not count", scorerMetrics(100, 90, 0.005), scorerMetrics(1090, 90, 0.005), 990, 10, false, ""},
		{"p99 over", zero, scorerMetrics(993, 0, 0.2), 1000, 250, false, "slo: p99 250 ms over 100 ms"},
		{"p99 exactly at the limit passes", zero, scorerMetrics(993, 0, 0.1), 1000, 100, false, ""},
		{"p99 above the largest bucket", zero, scorerMetrics(993, 0, 5), 1000, math.Inf(1), false, "slo: p99 above the largest latency bucket, over 100 ms"},
		{"both broken", zero, scorerMetrics(900, 100, 0.2), 1007, 250, false, "slo: error rate 0.0993 over 0.05 (100 of 1007 requests); p99 250 ms over 100 ms"},
		{"counter went down: the scorer restarted, latest counts from zero", scorerMetrics(5000, 0, 0.005), scorerMetrics(60, 40, 0.005), 107, 10, true, "slo: error rate 0.374 over 0.05 (40 of 107 requests)"},
		{"histogram went down alone is a restart too", scorerMetrics(100, 0, 0.005), func() map[string]float64 {
			m := scorerMetrics(100, 0, 0.005)
			m[`mlfleet_scorer_request_duration_seconds_bucket{endpoint="score",le="0.01"}`] = 3
			return m
		}(), 107, 100, true, ""},
		{"no buckets: error rate only", zero, map[string]float64{`mlfleet_scorer_requests_total{code="200",endpoint="v2_infer"}`: 10}, 10, -1, false, ""},
		{"untrusted junk is ignored", zero, map[string]float64{
			`mlfleet_scorer_requests_total{code="500",endpoint="score"`:               9, // no brace
			`mlfleet_scorer_requests_total{code="999",endpoint="score"}`:              9,
			`mlfleet_scorer_requests_total{code="500",endpoint="score",code="200"}`:   9,
			`mlfleet_scorer_requests_total{code="500",endpoint="invocations"}`:        -4,
			`mlfleet_scorer_requests_total{code="500",endpoint="invocations"}x`:       9,
			`mlfleet_scorer_request_duration_seconds_bucket{endpoint="score",le="x"}`: 9,
			`mlfleet_scorer_requests_total{code="200",endpoint="invocations"}`:        4,
		}, 4, -1, false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := windowOf(sampleOf(c.base), sampleOf(c.latest))
			if w.requests != c.requests || w.reset != c.reset {
				t.Errorf("window = %+v, want %v requests, reset %v", w, c.requests, c.reset)
			}
			switch {
			case c.p99Ms < 0 && w.hasP99:
				t.Errorf("p99 %v s, want none", w.p99)
			case c.p99Ms >= 0 && (!w.hasP99 || msOf(w.p99) != c.p99Ms):
				t.Errorf("p99 %v s (has %v), want %v ms", w.p99, w.hasP99, c.p99Ms)
			}
			if why := gate.check(w); why != c.why {
				t.Errorf("check = %q, want %q", why, c.why)
			}
		})
	}
}

func TestP99FromBuckets(t *testing.T) {
	// 1000 observations: 980 under 10 ms, 15 under 50 ms, 5 under 250 ms.
	latest := map[float64]float64{0.01: 980, 0.05: 995, 0.25: 1000, math.Inf(1): 1000}
	if p, ok := p99Of(nil, latest); !ok || p != 0.05 {
		t.Errorf("p99 = %v %v, want 0.05 (the bucket holding the 990th observation)", p, ok)
	}
	// The same histogram earlier held 970 fast ones: the window's 30 are
	// 10 fast, 15 medium and 5 slow, so its p99 is in the slowest bucket.
	base := map[float64]float64{0.01: 970, 0.05: 970, 0.25: 970, math.Inf(1): 970}
	if p, ok := p99Of(base, latest); !ok || p != 0.25 {
		t.Errorf("window p99 = %v %v, want 0.25", p, ok)
	}
	if _, ok := p99Of(latest, latest); ok {
		t.Error("an empty window has a p99")
	}
}

func TestParseSeries(t *testing.T) {
	cases := []struct {
		key, name, labels string // labels as fmt of the map; "" name: refused
	}{
		{`a{b="c"}`, "a", "map[b:c]"},
		{`m{code="500",endpoint="score"}`, "m", "map[code:500 endpoint:score]"},
		{`m{e="a\"b,c=\"d"}`, "m", `map[e:a"b,c="d]`},
		{`m{}`, "m", "map[]"},
		{`m`, "", ""},
		{`{a="b"}`, "", ""},
		{`m{a="b"`, "", ""},
		{`m{a=b}`, "", ""},
		{`m{a="b"c="d"}`, "", ""},
		{`m{a="b",}`, "", ""},
		{`m{a="b",a="c"}`, "", ""},
		{`m{="b"}`, "", ""},
	}
	for _, c := range cases {
		name, labels, ok := parseSeries(c.key)
		if ok != (c.name != "") || name != c.name || (ok && fmt.Sprint(labels) != c.labels) {
			t.Errorf("parseSeries(%q) = %q %v %v, want %q %s", c.key, name, labels, ok, c.name, c.labels)
		}
	}
}

func FuzzSLOSample(f *testing.F) {
	f.Add(`mlfleet_scorer_requests_total{code="500",endpoint="score"}`, 3.0, `mlfleet_scorer_request_duration_seconds_bucket{endpoint="score",le="0.1"}`, 2.0)
	f.Add(`m{a="\"",b="\\"}`, -1.0, `mlfleet_scorer_requests_total{code="200",endpoint="v2_infer"}`, 1e300)
	f.Add(`mlfleet_scorer_request_duration_seconds_bucket{endpoint="score",le="+Inf"}`, 5.0, `x{`, 0.0)
	f.Fuzz(func(t *testing.T, k1 string, v1 float64, k2 string, v2 float64) {
		latest := sampleOf(map[string]float64{k1: v1, k2: v2})
		base := sampleOf(map[string]float64{k1: v1 / 2, k2: v2 / 3})
		w := windowOf(base, latest)
		if w.requests < 0 || w.errors < 0 || w.errors > w.requests || math.IsNaN(w.requests) {
			t.Fatalf("window %+v from %q=%v %q=%v", w, k1, v1, k2, v2)
		}
		g := &SLOGate{MaxErrorRate: ptr(0.0), MaxP99Ms: ptr(1.0)}
		if why := g.check(w); why != "" && !strings.HasPrefix(why, "slo: ") {
			t.Fatalf("reason %q", why)
		}
	})
}

func TestSLOGateValidation(t *testing.T) {
	cases := []struct {
		gate  SLOGate
		field string
	}{
		{SLOGate{}, "slo"},
		{SLOGate{MaxErrorRate: ptr(-0.1)}, "slo.maxErrorRate"},
		{SLOGate{MaxErrorRate: ptr(1.0)}, "slo.maxErrorRate"},
		{SLOGate{MaxErrorRate: ptr(math.NaN())}, "slo.maxErrorRate"},
		{SLOGate{MaxP99Ms: ptr(0.0)}, "slo.maxP99Ms"},
		{SLOGate{MaxP99Ms: ptr(-5.0)}, "slo.maxP99Ms"},
		{SLOGate{MaxP99Ms: ptr(4e6)}, "slo.maxP99Ms"},
		{SLOGate{MaxErrorRate: ptr(0.05), MinRequests: -1}, "slo.minRequests"},
		{SLOGate{MaxErrorRate: ptr(0.0)}, ""},
		{SLOGate{MaxErrorRate: ptr(0.05), MaxP99Ms: ptr(100.0)}, ""},
	}
	for _, c := range cases {
		spec := RolloutSpec{SLO: &c.gate}
		err := spec.normalize()
		if errclass.FieldOf(err) != c.field || (c.field != "" && !errclass.Is(err, errclass.InvalidArgument)) {
			t.Errorf("normalize(slo %s) = %v, want field %q", c.gate.String(), err, c.field)
		}
	}
	var spec RolloutSpec
	if err := json.Unmarshal([]byte(`{"slo":{"maxErrorRate":0.05,"maxP99Ms":100}}`), &spec); err != nil || spec.SLO.String() != "error rate <= 0.05, p99 <= 100 ms" {
		t.Errorf("JSON slo -> %v, %v", spec.SLO, err)
	}
}

// TestSLOMinRequests: a window with less traffic than the gate's minimum
// is not judged (one error in a handful of requests is no signal).
func TestSLOMinRequests(t *testing.T) {
	w := windowOf(sampleOf(map[string]float64{}), sampleOf(scorerMetrics(5, 5, 0.005))) // 17 requests, 5 failed
	cases := []struct {
		min int
		why string
	}{
		{0, ""}, // the default, 20
		{17, "slo: error rate 0.294 over 0.05 (5 of 17 requests)"},
		{18, ""},
	}
	for _, c := range cases {
		spec := RolloutSpec{SLO: &SLOGate{MaxErrorRate: ptr(0.05), MinRequests: c.min}}
		if err := spec.normalize(); err != nil {
			t.Fatal(err)
		}
		if c.min == 0 && spec.SLO.MinRequests != DefaultSLOMinRequests {
			t.Errorf("default minRequests %d, want %d", spec.SLO.MinRequests, DefaultSLOMinRequests)
		}
		if why := spec.SLO.check(w); why != c.why {
			t.Errorf("minRequests %d: check = %q, want %q", c.min, why, c.why)
		}
	}
}

// memTx is the slice of a store transaction the gate reads: Get.
type memTx struct {
	Tx
	docs  map[string][]byte
	reads int
}

func (m *memTx) Get(path string, v any) error {
	raw, ok := m.docs[path]
	if !ok {
		return errclass.NotFoundf("%s not found", path)
	}
	m.reads++
	return json.Unmarshal(raw, v)
}

// send stores a telemetry batch of device d as the cloud does.
func (m *memTx) send(d *Device, at time.Time, image string, metrics map[string]float64) {
	d.TelemetrySeq++
	b, _ := json.Marshal(twin.Telemetry{Protocol: twin.Protocol, Device: d.ID, Seq: d.TelemetrySeq, Time: at,
		Services: []twin.ServiceTelemetry{{Name: "iris", Image: image, Metrics: metrics, Profile: json.RawMessage(`{"features":{}}`)}}})
	m.docs[telemetryPath(d.Path, d.TelemetrySeq)] = b
}

// TestSLOVerdictsFromStoredTelemetry runs the gate over stored batches:
// old-image batches do not count, the window starts when the device became
// healthy, a batch is read once, and a device without a gate costs nothing.
func TestSLOVerdictsFromStoredTelemetry(t *testing.T) {
	s := &Service{}
	tx := &memTx{docs: map[string][]byte{}}
	devs := fleet(3, true)
	for i := range devs {
		devs[i].Path = "/subscriptions/s/accounts/a/devices/" + devs[i].ID
	}
	ro := newRollout(RolloutSpec{SLO: &SLOGate{MaxErrorRate: ptr(0.05)}, ErrorThreshold: 0.9, SuccessThreshold: 0.1, SoakSeconds: 600}, devs)
	step(s, ro, devs, t0)
	// Before the update: the old image served with many errors.
	for i := range devs {
		tx.send(&devs[i], t0, oldRef, scorerMetrics(100, 900, 0.005))
		report(&devs[i], 10, twin.Running, newRef, true, "")
	}
	step(s, ro, devs, t0.Add(time.Second)) // all healthy at t0+1s
	// d-00 was on the new image just before it was reported healthy (its
	// probe traffic and a few early errors are before the window).
	tx.send(&devs[0], t0.Add(500*time.Millisecond), newRef, scorerMetrics(10, 50, 0.005))
	tx.send(&devs[0], t0.Add(10*time.Second), newRef, scorerMetrics(1010, 60, 0.005)) // 10 of 1007 in the window
	tx.send(&devs[1], t0.Add(10*time.Second), newRef, scorerMetrics(700, 300, 0.005)) // 30% from zero
	// d-02 sends nothing about the new image yet.
	verdicts, err := sloVerdicts(tx, ro, "iris", devs)
	if err != nil {
		t.Fatal(err)
	}
	if len(verdicts) != 1 || !strings.HasPrefix(verdicts["d-01"], "slo: error rate 0.298 over 0.05 (300 of 1007 requests)") {
		t.Fatalf("verdicts %v, want d-01 alone over", verdicts)
	}
	if m := ro.Devices["d-00"].SLO; m == nil || m.From != 2 || m.Requests != 1010 || m.Errors != 10 {
		t.Errorf("d-00 mark %+v, want the window after batch 2: 10 of 1010", m)
	}
	// Nothing new: nothing read.
	reads := tx.reads
	if v, err := sloVerdicts(tx, ro, "iris", devs); v != nil || err != nil || tx.reads != reads {
		t.Errorf("a second look read %d batches: %v %v", tx.reads-reads, v, err)
	}
	stepSLO(s, ro, devs, verdicts, t0.Add(11*time.Second))
	if o := ro.Devices["d-01"]; o.State != DeviceFailed || !strings.HasPrefix(o.Reason, "slo: error rate") {
		t.Errorf("d-01 outcome %+v, want Failed for the slo", o)
	}
	if o := ro.Devices["d-00"]; o.State != DeviceHealthy {
		t.Errorf("d-00 outcome %+v, want Healthy", o)
	}

	// No gate: no reads at all.
	ro2 := newRollout(RolloutSpec{}, devs)
	reads = tx.reads
	if v, err := sloVerdicts(tx, ro2, "iris", devs); v != nil || err != nil || tx.reads != reads {
		t.Errorf("without a gate: %v %v, %d reads", v, err, tx.reads-reads)
	}
}

// stepSLO is step with SLO verdicts.
func stepSLO(s *Service, ro *Rollout, devs []Device, slo map[string]string, now time.Time) ([]string, bool) {
	var assign []string
	done := s.decide(ro, &ScoringService{Name: "iris"}, devs, slo, now, &assign)
	return assign, done
}

// BenchmarkSLOVerdicts is one rollout step's gate over a batch of 1,000
// healthy devices that each sent one new telemetry batch since the last
// step (the gate's steady-state cost: two stored batches read per device).
func BenchmarkSLOVerdicts(b *testing.B) {
	tx := &memTx{docs: map[string][]byte{}}
	devs := fleet(1000, true)
	for i := range devs {
		devs[i].Path = "/subscriptions/s/accounts/a/devices/" + devs[i].ID
	}
	ro := newRollout(RolloutSpec{SLO: &SLOGate{MaxErrorRate: ptr(0.05), MaxP99Ms: ptr(100.0)}}, devs)
	for id, o := range ro.Devices {
		o.State, o.Since = DeviceHealthy, t0
		ro.Devices[id] = o
	}
	at := t0
	for i := range devs {
		tx.send(&devs[i], at, newRef, scorerMetrics(0, 0, 0.005))
	}
	b.ReportAllocs()
	b.StopTimer()
	for n := range b.N {
		at = at.Add(time.Minute)
		for i := range devs {
			tx.send(&devs[i], at, newRef, scorerMetrics(float64(100*(n+1)), 0, 0.005))
		}
		b.StartTimer()
		if _, err := sloVerdicts(tx, ro, "iris", devs); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
	}
}

// TestStoredTelemetry: batches are kept gzipped (several times smaller) and
// read back as sent; batches kept before (plain JSON) still read.
func TestStoredTelemetry(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	metrics := scorerMetrics(900, 100, 0.02)
	tel := &twin.Telemetry{Protocol: twin.Protocol, Device: "d-1", Seq: 7, Time: at,
		Services: []twin.ServiceTelemetry{{Name: "iris", Image: "r/iris@sha256:2", Metrics: metrics, Profile: json.RawMessage(`{"features":{}}`)}}}
	packed, err := packTelemetry(tel)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := json.Marshal(tel)
	stored, _ := json.Marshal(packed)
	t.Logf("batch: %d bytes of JSON, stored %d", len(plain), len(stored))
	if len(stored)*2 > len(plain) {
		t.Errorf("stored %d bytes for %d of JSON: want at least 2x smaller", len(stored), len(plain))
	}
	m := &memTx{docs: map[string][]byte{telemetryPath("/d/d-1", 7): stored, telemetryPath("/d/d-1", 6): plain}}
	for _, seq := range []uint64{7, 6} {
		r, ok, err := readTelemetry(m, "/d/d-1", seq)
		if err != nil || !ok {
			t.Fatalf("batch %d: %v %v", seq, ok, err)
		}
		got, onNew := r.metricsOf("iris", "r/iris@sha256:2")
		if r.Seq != 7 || !r.Time.Equal(at) || !onNew || len(got) != len(metrics) {
			t.Errorf("batch %d read back as %+v", seq, r)
		}
	}
	if _, ok, err := readTelemetry(m, "/d/d-1", 8); ok || err != nil {
		t.Errorf("a batch never stored: %v %v", ok, err)
	}
	m.docs[telemetryPath("/d/d-1", 9)] = []byte(`{"gz":"bm90IGd6aXA="}`)
	if _, _, err := readTelemetry(m, "/d/d-1", 9); err == nil {
		t.Error("a corrupt stored batch read without error")
	}
}

func BenchmarkPackTelemetry(b *testing.B) {
	tel := &twin.Telemetry{Protocol: twin.Protocol, Device: "d-1", Seq: 7, Time: time.Now(),
		Services: []twin.ServiceTelemetry{{Name: "iris", Image: "r/iris@sha256:2", Metrics: scorerMetrics(900, 100, 0.02)}}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := packTelemetry(tel); err != nil {
			b.Fatal(err)
		}
	}
}
