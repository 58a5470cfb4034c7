package ortbench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/images/onnx"
	"github.com/mlfleet/mlfleet/images/scorer"
	"github.com/mlfleet/mlfleet/shared/manifest"
)

const (
	httpClients = 16  // concurrent clients of BenchmarkScoreHTTP
	httpGoal    = 0.7 // scorer req/s over baseline req/s, at least
)

// httpModels are the tabular models served in BenchmarkScoreHTTP.
var httpModels = []string{"iris_logreg", "iris_mlp", "rul_gbr", "sensor_rf"}

// baselineHandler is the least a server can do with the same engine:
// decode {"input_df": [...]}, run the session in-process, encode
// {"result": [{output: value}]}. No validation, limits or profiles.
func baselineHandler(sess *onnx.Session, input string, features []string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			InputDF []map[string]float32 `json:"input_df"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.InputDF) == 0 {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		n := len(req.InputDF)
		x := make([]float32, 0, n*len(features))
		for _, row := range req.InputDF {
			for _, f := range features {
				x = append(x, row[f])
			}
		}
		out, err := sess.Run(r.Context(), map[string]*onnx.Tensor{input: onnx.FromFloat32(x, n, len(features))})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		res := make([]map[string]any, n)
		for i := range res {
			res[i] = make(map[string]any, len(out))
		}
		for name, t := range out {
			per := t.Len() / n
			for i := range res {
				lo, hi := i*per, (i+1)*per
				var v any
				switch d := t.Data.(type) {
				case []float32:
					v = d[lo:hi]
				case []float64:
					v = d[lo:hi]
				case []int64:
					v = d[lo:hi]
				case []string:
					v = d[lo:hi]
				}
				if s, ok := v.([]int64); ok && per == 1 {
					v = s[0]
				}
				res[i][name] = v
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"result": res})
	}
}

// serve serves h on 127.0.0.1:0 until the benchmark ends.
func serve(b *testing.B, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	b.Cleanup(func() {
		_ = srv.Shutdown(context.Background())
		<-done
	})
	return "http://" + ln.Addr().String()
}

// serveScorer starts the real scorer (scorer.New + Serve) for an example
// model with a manifest of its named float32 features.
func serveScorer(b *testing.B, name string, features []string, sample []map[string]any) string {
	var inputs []manifest.Field
	for _, f := range features {
		inputs = append(inputs, manifest.Field{Name: f, Type: "float32"})
	}
	model := strings.ReplaceAll(name, "_", "-")
	m := map[string]any{
		"apiVersion": manifest.APIVersion,
		"name":       model,
		"runtime":    "onnx",
		"models":     []any{map[string]any{"name": model, "version": 1, "path": name + ".onnx"}},
		"schema":     map[string]any{"inputs": inputs},
		"sampleData": sample,
	}
	body, err := json.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "manifest.json")
	if err := os.WriteFile(path, body, 0o644); err != nil {
		b.Fatal(err)
	}
	modelDir, err := filepath.Abs(testdataDir)
	if err != nil {
		b.Fatal(err)
	}
	s, err := scorer.New(scorer.Config{
		Manifest: path, ModelDir: modelDir,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatalf("scorer for %s: %v", name, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("scorer for %s: Serve: %v", name, err)
		}
	})
	return "http://" + ln.Addr().String()
}

// post sends body to url from httpClients goroutines, b.N requests in all,
// and records req/s and p50/p99 latency under results.http[model][side].
func post(b *testing.B, model, side, url string, body []byte) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * httpClients}}
	defer client.CloseIdleConnections()
	// Warm the connections outside the timing.
	for range httpClients {
		if err := postOnce(client, url, body); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, b.N)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	b.ResetTimer()
	for range httpClients {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) || failed.Load() != nil {
					return
				}
				t0 := time.Now()
				if err := postOnce(client, url, body); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if p := failed.Load(); p != nil {
		b.Fatal(*p)
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	b.ReportMetric(float64(p50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(p99.Microseconds()), "p99-µs")
	results.Lock()
	defer results.Unlock()
	sides := results.http[model]
	if sides == nil {
		sides = map[string]*httpResult{}
		results.http[model] = sides
	}
	r := sides[side]
	if r == nil {
		r = &httpResult{}
		sides[side] = r
	}
	r.reqs.addLat(b.N, b.Elapsed(), [2]time.Duration{p50, p99})
}

func postOnce(client *http.Client, url string, body []byte) error {
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &statusError{resp.StatusCode, string(b)}
	}
	return nil
}

type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string {
	return "POST /score: status " + http.StatusText(e.code) + ": " + e.body
}

// BenchmarkScoreHTTP compares the scorer's POST /score with a minimal
// net/http handler calling the same engine in-process, 16 concurrent
// clients, one row per request.
func BenchmarkScoreHTTP(b *testing.B) {
	for _, name := range httpModels {
		features, sample, err := sampleFeatures(name)
		if err != nil {
			b.Fatal(err)
		}
		body, err := json.Marshal(map[string]any{"input_df": sample[:1]})
		if err != nil {
			b.Fatal(err)
		}
		ex, err := loadExample(name)
		if err != nil {
			b.Fatal(err)
		}
		sess, err := engineSession(ex)
		if err != nil {
			b.Fatal(err)
		}
		if len(ex.inputs) != 1 || ex.inputs[0].rowLen() != len(features) {
			b.Fatalf("model %s: want one input of %d features, have %d inputs", name, len(features), len(ex.inputs))
		}
		b.Run(name, func(b *testing.B) {
			b.Run("scorer", func(b *testing.B) {
				post(b, name, "scorer", serveScorer(b, name, features, sample)+"/score", body)
			})
			b.Run("baseline", func(b *testing.B) {
				post(b, name, "baseline", serve(b, baselineHandler(sess, ex.inputs[0].name, features))+"/score", body)
			})
		})
	}
}
