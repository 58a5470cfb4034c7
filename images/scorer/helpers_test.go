package scorer

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

const exampleDir = "../../examples/testdata"

// example is one example model with its inputs and scikit-learn's outputs.
type example struct {
	name     string
	features []string    // schema order
	rows     [][]float64 // inputs.json X, by row
	expected map[string]expectedOutput
}

type expectedOutput struct {
	dtype string
	shape []int
	data  []any
}

func loadExample(t testing.TB, name string) *example {
	t.Helper()
	ex := &example{name: name, expected: map[string]expectedOutput{}}
	// Keys of the first sample row, in file order.
	b, err := os.ReadFile(filepath.Join(exampleDir, name+".sample.json"))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
			} else {
				depth--
			}
			if d == '}' && depth == 1 {
				break
			}
			continue
		}
		if s, ok := tok.(string); ok && depth == 2 {
			ex.features = append(ex.features, s)
			var v any
			if err := dec.Decode(&v); err != nil {
				t.Fatal(err)
			}
		}
	}
	var in struct {
		Inputs []struct {
			Shape []int     `json:"shape"`
			Data  []float64 `json:"data"`
		} `json:"inputs"`
	}
	readJSON(t, filepath.Join(exampleDir, name+".inputs.json"), &in)
	x := in.Inputs[0]
	for r := 0; r < x.Shape[0]; r++ {
		ex.rows = append(ex.rows, x.Data[r*x.Shape[1]:(r+1)*x.Shape[1]])
	}
	var out struct {
		Outputs []struct {
			Name  string `json:"name"`
			Dtype string `json:"dtype"`
			Shape []int  `json:"shape"`
			Data  []any  `json:"data"`
		} `json:"outputs"`
	}
	readJSON(t, filepath.Join(exampleDir, name+".expected.json"), &out)
	for _, o := range out.Outputs {
		ex.expected[o.Name] = expectedOutput{o.Dtype, o.Shape, o.Data}
	}
	return ex
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// manifestFor writes a manifest for an example model: named float32 features
// (rule b), with the example's sample rows.
func (ex *example) manifest(t testing.TB, labels []string) map[string]any {
	var inputs []any
	for _, f := range ex.features {
		inputs = append(inputs, map[string]any{"name": f, "type": "float32"})
	}
	var sample []map[string]any
	readJSON(t, filepath.Join(exampleDir, ex.name+".sample.json"), &sample)
	m := map[string]any{
		"apiVersion": "mlfleet.io/v1",
		"name":       strings.ReplaceAll(ex.name, "_", "-"),
		"runtime":    "onnx",
		"models":     []any{map[string]any{"name": strings.ReplaceAll(ex.name, "_", "-"), "version": 3, "path": ex.name + ".onnx"}},
		"schema":     map[string]any{"inputs": inputs},
		"sampleData": sample,
	}
	if labels != nil {
		m["scoring"] = map[string]any{"outputLabels": labels}
	}
	return m
}

func (ex *example) records() []map[string]any {
	recs := make([]map[string]any, len(ex.rows))
	for i, r := range ex.rows {
		rec := map[string]any{}
		for j, f := range ex.features {
			rec[f] = r[j]
		}
		recs[i] = rec
	}
	return recs
}

// testServer is a Server serving on 127.0.0.1:0.
type testServer struct {
	*Server
	url    string
	cancel context.CancelFunc
	done   chan error
}

// writeManifest writes m and copies the models into a temp dir.
func writeManifest(t testing.TB, m map[string]any, models ...string) Config {
	dir := t.TempDir()
	modelDir := filepath.Join(dir, "models")
	if err := os.MkdirAll(modelDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range models {
		b, err := os.ReadFile(filepath.Join(exampleDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(modelDir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "manifest.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return Config{Manifest: path, ModelDir: modelDir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func startServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{Server: s, url: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

func (ts *testServer) stop(t testing.TB) {
	if ts.cancel == nil {
		return
	}
	ts.cancel()
	ts.cancel = nil
	if err := <-ts.done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func (ts *testServer) do(t testing.TB, method, path, ctype string, body []byte) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, ts.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header
}

func (ts *testServer) post(t testing.TB, path string, v any) (int, []byte) {
	t.Helper()
	body, ok := v.([]byte)
	if !ok {
		var err error
		if body, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	code, b, _ := ts.do(t, "POST", path, "application/json", body)
	return code, b
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-5 }
