package scorer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// latencyBuckets are the upper bounds, in seconds, of the histograms.
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

type histogram struct {
	counts []uint64 // per bucket, plus +Inf
	sum    float64
	n      uint64
}

func (h *histogram) observe(v float64) {
	if h.counts == nil {
		h.counts = make([]uint64, len(latencyBuckets)+1)
	}
	i, _ := slices.BinarySearch(latencyBuckets, v)
	h.counts[i]++
	h.sum += v
	h.n++
}

type reqKey struct{ endpoint, code string }

// metrics are the scorer's Prometheus metrics, written in the text format by hand.
type metrics struct {
	mu       sync.Mutex
	requests map[reqKey]uint64
	errors   map[string]uint64
	latency  map[string]*histogram
	infer    histogram
	inflight atomic.Int64
}

func newMetrics() *metrics {
	return &metrics{requests: map[reqKey]uint64{}, errors: map[string]uint64{}, latency: map[string]*histogram{}}
}

func (m *metrics) request(endpoint string, code int, d time.Duration) {
	m.mu.Lock()
	m.requests[reqKey{endpoint, strconv.Itoa(code)}]++
	h := m.latency[endpoint]
	if h == nil {
		h = &histogram{}
		m.latency[endpoint] = h
	}
	h.observe(d.Seconds())
	m.mu.Unlock()
}

func (m *metrics) error(reason string) {
	m.mu.Lock()
	m.errors[reason]++
	m.mu.Unlock()
}

func (m *metrics) inference(d time.Duration) {
	m.mu.Lock()
	m.infer.observe(d.Seconds())
	m.mu.Unlock()
}

// write renders the metrics in the Prometheus text exposition format.
func (m *metrics) write(buf *bytes.Buffer, queued, workers, queueCap int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	buf.WriteString("# HELP mlfleet_scorer_requests_total Requests by endpoint and HTTP status code.\n# TYPE mlfleet_scorer_requests_total counter\n")
	keys := make([]reqKey, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b reqKey) int {
		if a.endpoint != b.endpoint {
			return cmpString(a.endpoint, b.endpoint)
		}
		return cmpString(a.code, b.code)
	})
	for _, k := range keys {
		fmt.Fprintf(buf, "mlfleet_scorer_requests_total{endpoint=%q,code=%q} %d\n", k.endpoint, k.code, m.requests[k])
	}
	buf.WriteString("# HELP mlfleet_scorer_errors_total Failed requests by reason.\n# TYPE mlfleet_scorer_errors_total counter\n")
	reasons := make([]string, 0, len(m.errors))
	for r := range m.errors {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	for _, r := range reasons {
		fmt.Fprintf(buf, "mlfleet_scorer_errors_total{reason=%q} %d\n", r, m.errors[r])
	}
	buf.WriteString("# HELP mlfleet_scorer_request_duration_seconds Request latency by endpoint.\n# TYPE mlfleet_scorer_request_duration_seconds histogram\n")
	eps := make([]string, 0, len(m.latency))
	for e := range m.latency {
		eps = append(eps, e)
	}
	slices.Sort(eps)
	for _, e := range eps {
		writeHistogram(buf, "mlfleet_scorer_request_duration_seconds", fmt.Sprintf("endpoint=%q,", e), m.latency[e])
	}
	buf.WriteString("# HELP mlfleet_scorer_inference_duration_seconds Time spent in the model per request.\n# TYPE mlfleet_scorer_inference_duration_seconds histogram\n")
	writeHistogram(buf, "mlfleet_scorer_inference_duration_seconds", "", &m.infer)
	fmt.Fprintf(buf, "# HELP mlfleet_scorer_queue_depth Requests waiting for a worker.\n# TYPE mlfleet_scorer_queue_depth gauge\nmlfleet_scorer_queue_depth %d\n", queued)
	fmt.Fprintf(buf, "# HELP mlfleet_scorer_queue_capacity Requests that may wait for a worker.\n# TYPE mlfleet_scorer_queue_capacity gauge\nmlfleet_scorer_queue_capacity %d\n", queueCap)
	fmt.Fprintf(buf, "# HELP mlfleet_scorer_inflight Requests holding a worker.\n# TYPE mlfleet_scorer_inflight gauge\nmlfleet_scorer_inflight %d\n", m.inflight.Load())
	fmt.Fprintf(buf, "# HELP mlfleet_scorer_workers Scoring workers.\n# TYPE mlfleet_scorer_workers gauge\nmlfleet_scorer_workers %d\n", workers)
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func writeHistogram(buf *bytes.Buffer, name, labels string, h *histogram) {
	var cum uint64
	for i, le := range latencyBuckets {
		if h.counts != nil {
			cum += h.counts[i]
		}
		fmt.Fprintf(buf, "%s_bucket{%sle=\"%s\"} %d\n", name, labels, strconv.FormatFloat(le, 'g', -1, 64), cum)
	}
	fmt.Fprintf(buf, "%s_bucket{%sle=\"+Inf\"} %d\n", name, labels, h.n)
	l := ""
	if labels != "" {
		l = "{" + labels[:len(labels)-1] + "}"
	}
	fmt.Fprintf(buf, "%s_sum%s %s\n%s_count%s %d\n", name, l, strconv.FormatFloat(h.sum, 'g', -1, 64), name, l, h.n)
}

// errQueueFull is returned by acquire when the wait queue is full.
var errQueueFull = errors.New("scorer: too many requests waiting")

// queue admits at most workers requests at a time and lets at most
// capacity more wait; the rest are refused at once.
type queue struct {
	slots    chan struct{}
	waiting  atomic.Int64
	capacity int64
}

func newQueue(workers, capacity int) *queue {
	return &queue{slots: make(chan struct{}, workers), capacity: int64(capacity)}
}

func (q *queue) acquire(ctx context.Context) error {
	select {
	case q.slots <- struct{}{}:
		return nil
	default:
	}
	if q.waiting.Add(1) > q.capacity {
		q.waiting.Add(-1)
		return errQueueFull
	}
	defer q.waiting.Add(-1)
	select {
	case q.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (q *queue) release() { <-q.slots }

// statusRecorder remembers the status code a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}
