package cloud

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// SLOGate is a rollout's optional gate on what updated devices measure
// while they serve the new image. A gate that is set is checked on every
// healthy device of the batch being rolled out, from the moment it reports
// the new image healthy until the batch's soak is over; a device whose
// window breaks the gate counts as failed, and the error threshold decides
// as for any other failure.
//
// The window of a device starts at the newest telemetry batch at or before
// the time it became healthy on the new image (or at zero when the new
// image's counters start later, as they do in a fresh container) and ends at
// its newest batch; only metrics the device sent for the service on the new
// image count. Metrics are the scorer's cumulative counters, so the window
// is the difference of the two batches; a counter that went down means the
// scorer restarted, and the newest batch's values then count alone (from
// zero). A window with fewer than MinRequests requests passes.
type SLOGate struct {
	// MaxErrorRate is the largest fraction (0 to 1) of scoring requests that
	// may fail with a server error (HTTP 5xx) in a device's window. Requests
	// refused for bad input or a full queue (4xx) are the caller's, not the
	// version's, and do not count; nor do health probes and metric scrapes.
	MaxErrorRate *float64 `json:"maxErrorRate,omitempty"`
	// MaxP99Ms is the largest 99th percentile of scoring latency, in
	// milliseconds. The percentile is read off the latency histogram: the
	// upper bound of the bucket that holds the 99th percentile request, so
	// it is never under the true value. A device whose telemetry carries no
	// latency buckets is not gated on latency.
	MaxP99Ms *float64 `json:"maxP99Ms,omitempty"`
	// MinRequests is the fewest scoring requests a device's window needs
	// before the gate judges it (default 20): with fewer, one error is a
	// large rate and the p99 is a single request. A window under it passes
	// for now and is judged again as telemetry arrives.
	MinRequests int `json:"minRequests,omitempty"`
}

// DefaultSLOMinRequests is SLOGate.MinRequests when unset.
const DefaultSLOMinRequests = 20

// maxP99Ms bounds MaxP99Ms (an hour).
const maxP99Ms = 3600e3

func (g *SLOGate) normalize() error {
	if g.MaxErrorRate == nil && g.MaxP99Ms == nil {
		return errclass.Invalid("slo", "slo sets neither maxErrorRate nor maxP99Ms")
	}
	if r := g.MaxErrorRate; r != nil && (math.IsNaN(*r) || *r < 0 || *r >= 1) {
		return errclass.Invalid("slo.maxErrorRate", "slo.maxErrorRate %v is not a fraction in [0, 1)", *r)
	}
	if p := g.MaxP99Ms; p != nil && (math.IsNaN(*p) || *p <= 0 || *p > maxP99Ms) {
		return errclass.Invalid("slo.maxP99Ms", "slo.maxP99Ms %v is not between 0 (excluded) and %v", *p, float64(maxP99Ms))
	}
	switch {
	case g.MinRequests < 0 || g.MinRequests > 1e9:
		return errclass.Invalid("slo.minRequests", "slo.minRequests %d is not between 1 and 1000000000", g.MinRequests)
	case g.MinRequests == 0:
		g.MinRequests = DefaultSLOMinRequests
	}
	return nil
}

// String is the gate as shown to users: "error rate <= 0.05, p99 <= 100 ms".
func (g *SLOGate) String() string {
	if g == nil {
		return "none"
	}
	var parts []string
	if g.MaxErrorRate != nil {
		parts = append(parts, "error rate <= "+fmtNum(*g.MaxErrorRate))
	}
	if g.MaxP99Ms != nil {
		parts = append(parts, "p99 <= "+fmtNum(*g.MaxP99Ms)+" ms")
	}
	if g.MinRequests > 0 {
		parts = append(parts, "judged from "+strconv.Itoa(g.MinRequests)+" requests")
	}
	return strings.Join(parts, ", ")
}

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'g', 3, 64) }

// SLOMark is the gate's bookkeeping for one device of a rollout, kept in
// its outcome: where its window starts and what the last check measured.
type SLOMark struct {
	// From is the telemetry batch the window starts after (0: from zero).
	From uint64 `json:"from,omitempty"`
	// Checked is the newest telemetry batch checked.
	Checked uint64 `json:"checked,omitempty"`
	// Requests and Errors are the window's scoring requests and 5xx.
	Requests float64 `json:"requests"`
	Errors   float64 `json:"errors"`
	// P99Ms is the window's p99 latency bound (absent without latency
	// buckets; -1 when above the histogram's largest bound).
	P99Ms *float64 `json:"p99Ms,omitempty"`
}

// The scorer's metrics the gate reads, as the device flattens them: the
// metric name, then its labels sorted by name with quoted values.
const (
	metricRequests = "mlfleet_scorer_requests_total"
	metricBuckets  = "mlfleet_scorer_request_duration_seconds_bucket"
)

// scoringEndpoints are the scorer's endpoint labels of scoring requests
// (health probes, scrapes and documents are left out of the gate).
var scoringEndpoints = map[string]bool{"score": true, "invocations": true, "v2_infer": true}

// sloSample is what one telemetry batch says about a service's scoring
// traffic: cumulative requests, server errors and latency buckets (upper
// bound in seconds -> cumulative count).
type sloSample struct {
	requests, errors float64
	buckets          map[float64]float64
}

// sampleOf reads a service's flattened metrics. The metrics come from a
// device and are untrusted: series that do not parse, and values that are
// negative or not finite, are ignored.
func sampleOf(metrics map[string]float64) sloSample {
	s := sloSample{}
	for key, v := range metrics {
		if !(v >= 0) || math.IsInf(v, 0) {
			continue
		}
		switch {
		case strings.HasPrefix(key, metricRequests+"{"):
			name, labels, ok := parseSeries(key)
			if !ok || name != metricRequests || !scoringEndpoints[labels["endpoint"]] {
				continue
			}
			code, err := strconv.Atoi(labels["code"])
			if err != nil || code < 100 || code > 599 {
				continue
			}
			s.requests += v
			if code >= 500 {
				s.errors += v
			}
		case strings.HasPrefix(key, metricBuckets+"{"):
			name, labels, ok := parseSeries(key)
			if !ok || name != metricBuckets || !scoringEndpoints[labels["endpoint"]] {
				continue
			}
			le, err := strconv.ParseFloat(labels["le"], 64)
			if err != nil || math.IsNaN(le) || le < 0 {
				continue
			}
			if s.buckets == nil {
				s.buckets = map[float64]float64{}
			}
			s.buckets[le] += v
		}
	}
	return s
}

// parseSeries splits a flattened series key, `name{a="x",b="y"}`, into its
// name and labels (values unquoted as Go strings, as the device quotes
// them). ok is false for anything else.
func parseSeries(key string) (name string, labels map[string]string, ok bool) {
	name, rest, found := strings.Cut(key, "{")
	if !found || name == "" || !strings.HasSuffix(rest, "}") {
		return "", nil, false
	}
	rest = rest[:len(rest)-1]
	labels = map[string]string{}
	for rest != "" {
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return "", nil, false
		}
		lname := rest[:eq]
		quoted, err := strconv.QuotedPrefix(rest[eq+1:])
		if err != nil || quoted[0] != '"' {
			return "", nil, false
		}
		val, err := strconv.Unquote(quoted)
		if err != nil {
			return "", nil, false
		}
		if _, dup := labels[lname]; dup {
			return "", nil, false
		}
		labels[lname] = val
		rest = rest[eq+1+len(quoted):]
		if rest != "" {
			if rest[0] != ',' || len(rest) == 1 {
				return "", nil, false
			}
			rest = rest[1:]
		}
	}
	return name, labels, true
}

// sloWindow is what a service served in a window.
type sloWindow struct {
	requests, errors float64
	// p99 is the latency bound in seconds (+Inf above the largest bound);
	// hasP99 is false when the window has no latency buckets or no traffic.
	p99    float64
	hasP99 bool
	// reset says a counter went down: the scorer restarted in the window.
	reset bool
}

// windowOf is the traffic between base and latest, two samples of the same
// scorer's counters (base is the zero sample when the window starts with
// the counters). A counter lower in latest than in base means the scorer
// restarted: latest then counts alone, from zero.
func windowOf(base, latest sloSample) sloWindow {
	reset := latest.requests < base.requests || latest.errors < base.errors
	for le, b := range base.buckets {
		if latest.buckets[le] < b {
			reset = true
		}
	}
	if reset {
		base = sloSample{}
	}
	w := sloWindow{requests: latest.requests - base.requests, errors: latest.errors - base.errors, reset: reset}
	w.errors = min(max(w.errors, 0), w.requests)
	w.p99, w.hasP99 = p99Of(base.buckets, latest.buckets)
	return w
}

// p99Of reads the 99th percentile off the difference of two cumulative
// histograms: the upper bound of the first bucket whose count reaches 99%
// of the window's observations (+Inf when only the +Inf bucket does).
func p99Of(base, latest map[float64]float64) (float64, bool) {
	if len(latest) == 0 {
		return 0, false
	}
	les := make([]float64, 0, len(latest))
	for le := range latest {
		les = append(les, le)
	}
	sort.Float64s(les)
	cum := make([]float64, len(les))
	total := 0.0
	for i, le := range les {
		cum[i] = max(latest[le]-base[le], 0)
		total = max(total, cum[i])
	}
	if total <= 0 {
		return 0, false
	}
	rank := math.Ceil(0.99 * total)
	for i, le := range les {
		if cum[i] >= rank {
			return le, true
		}
	}
	return math.Inf(1), true
}

// check returns why w breaks the gate ("" when it does not). A window
// exactly at a limit passes.
func (g *SLOGate) check(w sloWindow) string {
	if w.requests < float64(max(g.MinRequests, 1)) {
		return "" // too little traffic to judge yet
	}
	var why []string
	if g.MaxErrorRate != nil {
		if rate := w.errors / w.requests; rate > *g.MaxErrorRate {
			why = append(why, fmt.Sprintf("error rate %s over %s (%.0f of %.0f requests)", fmtNum(rate), fmtNum(*g.MaxErrorRate), w.errors, w.requests))
		}
	}
	if g.MaxP99Ms != nil && w.hasP99 {
		switch ms := msOf(w.p99); {
		case math.IsInf(ms, 1):
			why = append(why, fmt.Sprintf("p99 above the largest latency bucket, over %s ms", fmtNum(*g.MaxP99Ms)))
		case ms > *g.MaxP99Ms:
			why = append(why, fmt.Sprintf("p99 %s ms over %s ms", fmtNum(ms), fmtNum(*g.MaxP99Ms)))
		}
	}
	if len(why) == 0 {
		return ""
	}
	return "slo: " + strings.Join(why, "; ")
}

// msOf turns seconds into milliseconds, rounded to a nanosecond so that a
// bucket bound such as 0.1 s reads as 100 ms exactly.
func msOf(sec float64) float64 {
	if math.IsInf(sec, 0) {
		return sec
	}
	return math.Round(sec*1e9) / 1e6
}

// telemetryRecord is the part of a stored telemetry batch the gate reads.
type telemetryRecord struct {
	Seq      uint64    `json:"seq"`
	Time     time.Time `json:"time"`
	Services []struct {
		Name    string             `json:"name"`
		Image   string             `json:"image,omitempty"`
		Metrics map[string]float64 `json:"metrics,omitempty"`
	} `json:"services"`
}

// metricsOf returns the metrics the batch holds for service name on image.
func (r *telemetryRecord) metricsOf(name, image string) (map[string]float64, bool) {
	for _, s := range r.Services {
		if s.Name == name && s.Image == image {
			return s.Metrics, true
		}
	}
	return nil, false
}

func telemetryPath(devicePath string, seq uint64) string {
	return fmt.Sprintf("%s/telemetry/%020d", devicePath, seq)
}

// readTelemetry reads a device's stored batch seq; ok is false when it is
// not stored (never sent, or no longer kept).
func readTelemetry(tx Tx, devicePath string, seq uint64) (*telemetryRecord, bool, error) {
	// A batch is kept gzipped (storedTelemetry); one stored before that is
	// the batch's JSON itself, which the embedded record reads.
	var r struct {
		storedTelemetry
		telemetryRecord
	}
	if err := tx.Get(telemetryPath(devicePath, seq), &r); err != nil {
		if errclass.Is(err, errclass.NotFound) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("read telemetry %d of device %s: %w", seq, devicePath, err)
	}
	if len(r.Gzip) > 0 {
		r.telemetryRecord = telemetryRecord{}
		if err := r.storedTelemetry.unpack(&r.telemetryRecord); err != nil {
			return nil, false, fmt.Errorf("read telemetry %d of device %s: %w", seq, devicePath, err)
		}
	}
	return &r.telemetryRecord, true, nil
}

// maxSLOWalk bounds how many batches the gate reads back to find where a
// device's window starts.
const maxSLOWalk = 64

// sloVerdicts checks the rollout's SLO gate on the healthy devices of its
// current batch that sent telemetry since their last check, and returns why
// each device that breaks it fails (by device id). It records each check in
// the device's outcome (SLOMark), so a device's window start is found once
// and a batch is read once. Without a gate it reads nothing.
func sloVerdicts(tx Tx, ro *Rollout, service string, devs []Device) (map[string]string, error) {
	g := ro.Spec.SLO
	if g == nil {
		return nil, nil
	}
	var out map[string]string
	for i := range devs {
		d := &devs[i]
		o, ok := ro.Devices[d.ID]
		if !ok || o.State != DeviceHealthy || o.Batch != ro.Batch || d.TelemetrySeq == 0 {
			continue
		}
		if o.SLO != nil && o.SLO.Checked >= d.TelemetrySeq {
			continue // nothing new
		}
		mark := SLOMark{}
		if o.SLO != nil {
			mark = *o.SLO
		} else {
			from, err := windowStart(tx, d, service, ro.ToRef, o.Since)
			if err != nil {
				return nil, err
			}
			mark.From = from
		}
		mark.Checked = d.TelemetrySeq
		latest, ok, err := readTelemetry(tx, d.Path, d.TelemetrySeq)
		if err != nil {
			return nil, err
		}
		var lm map[string]float64
		if ok {
			lm, ok = latest.metricsOf(service, ro.ToRef)
		}
		if !ok || d.TelemetrySeq <= mark.From {
			o.SLO = &mark // nothing about the new image in the window yet
			ro.Devices[d.ID] = o
			continue
		}
		base := sloSample{}
		if mark.From > 0 {
			b, ok, err := readTelemetry(tx, d.Path, mark.From)
			if err != nil {
				return nil, err
			}
			if ok {
				if bm, ok := b.metricsOf(service, ro.ToRef); ok {
					base = sampleOf(bm)
				}
			}
		}
		w := windowOf(base, sampleOf(lm))
		mark.Requests, mark.Errors, mark.P99Ms = w.requests, w.errors, nil
		if w.hasP99 {
			ms := msOf(w.p99)
			if math.IsInf(ms, 1) {
				ms = -1
			}
			mark.P99Ms = &ms
		}
		o.SLO = &mark
		ro.Devices[d.ID] = o
		if why := g.check(w); why != "" {
			if out == nil {
				out = map[string]string{}
			}
			out[d.ID] = why
		}
	}
	return out, nil
}

// windowStart finds the telemetry batch a device's window starts after:
// walking back from its newest batch, the first one sent at or before
// since, or the first one without the service on the new image (whose
// counters then start from zero after it). 0 means from zero.
func windowStart(tx Tx, d *Device, service, image string, since time.Time) (uint64, error) {
	oldest := uint64(1)
	if d.TelemetrySeq > keepTelemetry {
		oldest = d.TelemetrySeq - keepTelemetry + 1
	}
	seq := d.TelemetrySeq
	for n := 0; seq >= oldest && seq > 0; n, seq = n+1, seq-1 {
		r, ok, err := readTelemetry(tx, d.Path, seq)
		if err != nil {
			return 0, err
		}
		if !ok {
			return seq, nil // not kept: count from the next one's baseline
		}
		if _, onNew := r.metricsOf(service, image); !onNew || !r.Time.After(since) {
			return seq, nil
		}
		if n == maxSLOWalk {
			return seq, nil // a long way back: the window starts here
		}
	}
	return 0, nil
}
