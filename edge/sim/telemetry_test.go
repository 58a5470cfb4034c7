package sim

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/shared/twin"
)

// TestTelemetryCounters drives one device's scorer counters on a fake
// clock: cumulative across batches, exact error rates per image, a reset
// when the serving image changes, and the wire format of a batch.
func TestTelemetryCounters(t *testing.T) {
	a, b := image('a'), image('b')
	m := newMachine(t, Config{PullTime: time.Second, StartTime: time.Second, Requests: 100,
		Traffic: map[string]Traffic{b: {ErrorRate: 0.3, Latency: 200 * time.Millisecond}}})
	if got := m.rt.telemetry(m.dev, m.clock.now); len(got.Services) != 0 {
		t.Fatalf("a device serving nothing sent %+v", got.Services)
	}
	m.rt.apply(m.dev, desired("dev-1", 1, a), m.clock.now)
	m.advance(time.Minute)
	var batch twin.Telemetry
	for range 3 {
		batch = m.rt.telemetry(m.dev, m.clock.now)
	}
	metrics := batch.Services[0].Metrics
	cases := []struct {
		series string
		want   float64
	}{
		{`mlfleet_scorer_requests_total{code="200",endpoint="score"}`, 300},
		{`mlfleet_scorer_request_duration_seconds_bucket{endpoint="score",le="0.0025"}`, 0},
		{`mlfleet_scorer_request_duration_seconds_bucket{endpoint="score",le="0.005"}`, 300}, // DefaultTraffic: 5 ms
		{`mlfleet_scorer_request_duration_seconds_bucket{endpoint="score",le="+Inf"}`, 300},
		{`mlfleet_scorer_request_duration_seconds_count{endpoint="score"}`, 300},
	}
	for _, c := range cases {
		if got, ok := metrics[c.series]; !ok || got != c.want {
			t.Errorf("image a after 3 batches: %s = %v (%v), want %v", c.series, got, ok, c.want)
		}
	}
	if _, ok := metrics[`mlfleet_scorer_requests_total{code="500",endpoint="score"}`]; ok {
		t.Error("an image without errors reports a 500 series")
	}
	// Update to b: counters start again from zero, 30% of them 500s, all slow.
	m.rt.apply(m.dev, desired("dev-1", 2, b), m.clock.now)
	m.advance(time.Minute)
	for range 2 {
		batch = m.rt.telemetry(m.dev, m.clock.now)
	}
	s := batch.Services[0]
	if s.Image != b || s.Metrics[`mlfleet_scorer_requests_total{code="500",endpoint="score"}`] != 60 ||
		s.Metrics[`mlfleet_scorer_requests_total{code="200",endpoint="score"}`] != 140 ||
		s.Metrics[`mlfleet_scorer_request_duration_seconds_bucket{endpoint="score",le="0.1"}`] != 0 ||
		s.Metrics[`mlfleet_scorer_request_duration_seconds_bucket{endpoint="score",le="0.25"}`] != 200 {
		t.Errorf("image b after 2 batches: %v", s.Metrics)
	}
	batch.Seq = 7
	enc, err := json.MarshalIndent(batch, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	var back twin.Telemetry
	if err := twin.Decode(enc, twin.MaxTelemetry, &back, "dev-1"); err != nil {
		t.Fatalf("the batch does not decode strictly: %v", err)
	}
	golden(t, "telemetry.golden.json", append(enc, '\n'))
}

// TestFleetSendsTelemetry runs devices over the broker with telemetry on:
// batches numbered from 1 on the device's own topic, decoded strictly,
// acknowledged; and none at all by default.
func TestFleetSendsTelemetry(t *testing.T) {
	b := startBroker(t, true)
	ids := identities(3)
	bad := image('b')
	f := startFleet(t, b, Config{Devices: ids, PullTime: 10 * time.Millisecond, StartTime: 10 * time.Millisecond, Seed: 1,
		TelemetryInterval: 20 * time.Millisecond, Requests: 50, Traffic: map[string]Traffic{bad: {ErrorRate: 0.5}}})
	for i, id := range ids {
		img := image('a')
		if i == 0 {
			img = bad
		}
		b.publishDesired(desired(id.ID, 1, img))
	}
	eventually(t, 30*time.Second, func() string { return fmt.Sprintf("stats %+v", f.Stats()) }, func() bool {
		st := f.Stats()
		return st.TelemetrySent >= 9 && st.TelemetryAcked >= 9
	})
	for i, id := range ids {
		msgs := b.messages(twin.Topic(id.ID, twin.KindTelemetry))
		if len(msgs) < 2 {
			t.Fatalf("%s sent %d batches", id.ID, len(msgs))
		}
		var last twin.Telemetry
		for n, p := range msgs {
			var batch twin.Telemetry
			if err := twin.Decode(p, twin.MaxTelemetry, &batch, id.ID); err != nil {
				t.Fatalf("%s batch %d: %v", id.ID, n, err)
			}
			if batch.Seq != uint64(n+1) {
				t.Fatalf("%s batch %d has seq %d", id.ID, n, batch.Seq)
			}
			last = batch
		}
		s := last.Services[0]
		errs := s.Metrics[`mlfleet_scorer_requests_total{code="500",endpoint="score"}`]
		total := errs + s.Metrics[`mlfleet_scorer_requests_total{code="200",endpoint="score"}`]
		if want := map[bool]float64{true: 0.5, false: 0}[i == 0]; total == 0 || errs/total != want {
			t.Errorf("%s on %s: %v errors of %v requests, want rate %v", id.ID, s.Image, errs, total, want)
		}
	}

	quiet, err := New(Config{MQTTURL: b.url(), Devices: identities(2)})
	if err != nil {
		t.Fatal(err)
	}
	quiet.startTelemetry(time.Now())
	if n := quiet.rt.sched.pending(); n != 0 {
		t.Errorf("telemetry off by default, yet %d ticks scheduled", n)
	}
}
