package sim

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// Traffic is how a simulated image serves: what fraction of its scoring
// requests fail with HTTP 500, and how long each request takes.
type Traffic struct {
	ErrorRate float64
	Latency   time.Duration
}

// DefaultTraffic is how images not named in Config.Traffic serve.
var DefaultTraffic = Traffic{ErrorRate: 0, Latency: 5 * time.Millisecond}

// latencyBuckets are the scorer's latency histogram bounds, in seconds.
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// The scorer's metric names, flattened as the device flattens /metrics:
// the name, then the labels sorted by name with Go-quoted values.
const (
	metricRequests = "mlfleet_scorer_requests_total"
	metricErrors   = "mlfleet_scorer_errors_total"
	metricLatency  = "mlfleet_scorer_request_duration_seconds"
	endpoint       = "score"
)

// traffic is a serving service's simulated scorer counters. They start
// from zero with every new serving image, as a new scorer process's do.
type traffic struct {
	image      string
	ok, failed uint64
	buckets    []uint64 // per bound, plus +Inf; not cumulative
	sum        float64
}

// checkTraffic validates Config.Traffic and the telemetry settings.
func checkTraffic(cfg *Config) error {
	switch {
	case cfg.TelemetryInterval < 0:
		return errclass.Invalid("telemetryInterval", "telemetry interval %s is negative", cfg.TelemetryInterval)
	case cfg.TelemetryInterval > 0 && cfg.TelemetryInterval < 10*time.Millisecond:
		return errclass.Invalid("telemetryInterval", "telemetry interval %s is under 10ms", cfg.TelemetryInterval)
	case cfg.Requests < 0 || cfg.Requests > 1e9:
		return errclass.Invalid("requests", "requests per interval %d is not within [0, 1e9]", cfg.Requests)
	}
	for img, tr := range cfg.Traffic {
		if !twin.ValidImage(img) {
			return errclass.Invalid("traffic", "image %q is not a reference pinned by sha256 digest", img)
		}
		if !(tr.ErrorRate >= 0 && tr.ErrorRate <= 1) {
			return errclass.Invalid("traffic", "error rate %g of image %q is not within [0, 1]", tr.ErrorRate, img)
		}
		if tr.Latency < 0 || tr.Latency > time.Hour {
			return errclass.Invalid("traffic", "latency %s of image %q is not within [0, 1h]", tr.Latency, img)
		}
	}
	if cfg.Requests == 0 {
		cfg.Requests = 100
	}
	return nil
}

// telemetry advances the counters of every serving service of d by one
// interval of traffic and returns the batch a device would send (Seq and
// Dropped left to the caller); d.mu must be held.
func (rt *engine) telemetry(d *device, now time.Time) twin.Telemetry {
	batch := twin.Telemetry{Protocol: twin.Protocol, Device: d.id, Time: now.UTC(), Services: []twin.ServiceTelemetry{}}
	for i := range d.services {
		s := &d.services[i]
		if s.image == "" || (s.phase != twin.Running && s.phase != twin.RolledBack) {
			continue // nothing serving: no scrape
		}
		if s.traffic == nil || s.traffic.image != s.image {
			s.traffic = &traffic{image: s.image, buckets: make([]uint64, len(latencyBuckets)+1)}
		}
		tr, ok := rt.cfg.Traffic[s.image]
		if !ok {
			tr = DefaultTraffic
		}
		s.traffic.serve(uint64(rt.cfg.Requests), tr)
		batch.Services = append(batch.Services, twin.ServiceTelemetry{Name: s.name, Image: s.image, Metrics: s.traffic.metrics()})
	}
	return batch
}

// serve counts n requests served as tr says.
func (t *traffic) serve(n uint64, tr Traffic) {
	// The errors owed so far, over every request since the counters
	// started: exact rates, whatever the batch size.
	owed := uint64(math.Floor(float64(t.ok+t.failed+n)*tr.ErrorRate + 1e-9))
	failed := min(owed-min(owed, t.failed), n)
	t.failed += failed
	t.ok += n - failed
	sec := tr.Latency.Seconds()
	i, _ := slices.BinarySearch(latencyBuckets, sec)
	t.buckets[i] += n
	t.sum += sec * float64(n)
}

// metrics is the scorer's /metrics as the device flattens it.
func (t *traffic) metrics() map[string]float64 {
	m := make(map[string]float64, len(latencyBuckets)+7)
	m[fmt.Sprintf("%s{code=%q,endpoint=%q}", metricRequests, "200", endpoint)] = float64(t.ok)
	if t.failed > 0 {
		m[fmt.Sprintf("%s{code=%q,endpoint=%q}", metricRequests, "500", endpoint)] = float64(t.failed)
		m[fmt.Sprintf("%s{reason=%q}", metricErrors, "internal")] = float64(t.failed)
	}
	var cum uint64
	for i, le := range latencyBuckets {
		cum += t.buckets[i]
		m[fmt.Sprintf("%s_bucket{endpoint=%q,le=%q}", metricLatency, endpoint, strconv.FormatFloat(le, 'g', -1, 64))] = float64(cum)
	}
	n := t.ok + t.failed
	m[fmt.Sprintf("%s_bucket{endpoint=%q,le=%q}", metricLatency, endpoint, "+Inf")] = float64(n)
	m[fmt.Sprintf("%s_sum{endpoint=%q}", metricLatency, endpoint)] = t.sum
	m[fmt.Sprintf("%s_count{endpoint=%q}", metricLatency, endpoint)] = float64(n)
	return m
}

// sendTelemetry is a device's telemetry tick: it sends a batch when the
// device is connected (a batch it cannot send is counted as dropped, as a
// full outbox would) and schedules the next tick.
func (f *Fleet) sendTelemetry(d *device, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if f.ctx == nil || f.ctx.Err() != nil {
		return
	}
	next := f.cfg.TelemetryInterval
	next = d.jitter(next, next/10)
	f.rt.sched.add(event{at: now.Add(next).UnixNano(), dev: d, kind: evTelemetry})
	batch := f.rt.telemetry(d, now)
	if len(batch.Services) == 0 {
		return
	}
	if d.state != stOnline || !d.client.IsConnectionOpen() {
		d.telDropped++
		return
	}
	d.telSeq++
	batch.Seq, batch.Dropped = d.telSeq, d.telDropped
	payload, err := twin.Encode(batch)
	if err != nil || len(payload) > twin.MaxTelemetry {
		f.log.Error("simulated telemetry not sent", "device", d.id, "bytes", len(payload), "err", err)
		return
	}
	d.sent.Add(1)
	d.telSent++
	d.client.Publish(twin.Topic(d.id, twin.KindTelemetry), 1, false, payload)
}

// startTelemetry schedules every device's first telemetry tick, spread
// over one interval so the fleet does not send at once.
func (f *Fleet) startTelemetry(now time.Time) {
	if f.cfg.TelemetryInterval <= 0 {
		return
	}
	for _, d := range f.devs {
		d.mu.Lock()
		at := now.Add(time.Duration(d.rand() * float64(f.cfg.TelemetryInterval)))
		d.mu.Unlock()
		f.rt.sched.add(event{at: at.UnixNano(), dev: d, kind: evTelemetry})
	}
}

// handleAck applies a telemetry acknowledgement sent to d.
func (f *Fleet) handleAck(d *device, m mqtt.Message) {
	var a twin.TelemetryAck
	if err := twin.Decode(m.Payload(), twin.MaxDocument, &a, d.id); err != nil {
		f.malformed.Add(1)
		f.log.Warn("telemetry ack rejected", "device", d.id, "field", errclass.FieldOf(err), "err", err)
		return
	}
	d.mu.Lock()
	d.telAcked = max(d.telAcked, min(a.Seq, d.telSeq))
	d.mu.Unlock()
}
