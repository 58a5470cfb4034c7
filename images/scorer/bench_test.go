package scorer

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/images/onnx"
)

const benchClients = 16

// baselineHandler is the least a server can do: decode JSON, call the
// session in-process, encode JSON.
func baselineHandler(sess *onnx.Session, features []string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			InputDF []map[string]float32 `json:"input_df"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		x := make([]float32, 0, len(req.InputDF)*len(features))
		for _, row := range req.InputDF {
			for _, f := range features {
				x = append(x, row[f])
			}
		}
		out, err := sess.Run(r.Context(), map[string]*onnx.Tensor{"X": onnx.FromFloat32(x, len(req.InputDF), len(features))})
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		res := make([]map[string]any, len(req.InputDF))
		labels, probs := out["label"].Int64s(), out["probabilities"].Float32s()
		k := len(probs) / len(res)
		for i := range res {
			res[i] = map[string]any{"label": labels[i], "probabilities": probs[i*k : (i+1)*k]}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"result": res})
	}
}

func serveHandler(b *testing.B, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Shutdown(context.Background()) })
	return "http://" + ln.Addr().String()
}

// runClients posts body to url from benchClients goroutines and reports
// p50/p99 latency.
func runClients(b *testing.B, url string, body []byte) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4 * benchClients}}
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism((benchClients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		for pb.Next() {
			t0 := time.Now()
			resp, err := client.Post(url, "application/json", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
			local = append(local, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	})
	b.StopTimer()
	if len(lat) > 0 {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	}
}

// BenchmarkScoreHTTP compares the scorer's POST /score with a minimal
// handler calling the same model, at 16 concurrent clients, one iris row
// per request. ratio = baseline ns/op / scorer ns/op.
func BenchmarkScoreHTTP(b *testing.B) {
	ex := loadExample(b, "iris_logreg")
	body, _ := json.Marshal(map[string]any{"input_df": ex.records()[:1]})
	for _, profiling := range []bool{true, false} {
		name := "scorer"
		if !profiling {
			name = "scorer-noprofile"
		}
		b.Run(name, func(b *testing.B) {
			cfg := writeManifest(b, ex.manifest(b, nil), "iris_logreg.onnx")
			cfg.noProfile = !profiling
			s, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			runClients(b, serveHandler(b, s.Handler())+"/score", body)
		})
	}
	b.Run("baseline", func(b *testing.B) {
		f, err := os.Open(filepath.Join(exampleDir, "iris_logreg.onnx"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		m, err := onnx.Load(f, 1<<30)
		if err != nil {
			b.Fatal(err)
		}
		sess, err := onnx.NewSession(m)
		if err != nil {
			b.Fatal(err)
		}
		runClients(b, serveHandler(b, baselineHandler(sess, ex.features))+"/score", body)
	})
}

// BenchmarkProfile measures a request's work in-process (validate, infer,
// encode) with and without profiling, for 1 and 100 rows.
func BenchmarkProfile(b *testing.B) {
	ex := loadExample(b, "iris_logreg")
	cfg := writeManifest(b, ex.manifest(b, []string{"a", "b", "c"}), "iris_logreg.onnx")
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{1, 100} {
		var recs []map[string]any
		for len(recs) < n {
			recs = append(recs, ex.records()...)
		}
		body, _ := json.Marshal(map[string]any{"input_df": recs[:n]})
		for _, profiling := range []bool{false, true} {
			name := "rows=" + itoa(n) + "/profile=off"
			if profiling {
				name = "rows=" + itoa(n) + "/profile=on"
			}
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					rows, err := parseScore(body)
					if err != nil {
						b.Fatal(err)
					}
					bt, err := s.val.validate(rows)
					if err != nil {
						b.Fatal(err)
					}
					res, err := s.be.infer(context.Background(), bt)
					if err != nil {
						b.Fatal(err)
					}
					if profiling {
						s.prof.observe(bt, res)
					}
					_ = appendRows(nil, res)
				}
			})
		}
	}
}

func itoa(n int) string { return string(appendElem(nil, onnx.FromInt64([]int64{int64(n)}, 1), 0)) }
