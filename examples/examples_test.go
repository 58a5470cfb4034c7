package examples

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/mlfleet/mlfleet/images/scorer"
	"github.com/mlfleet/mlfleet/shared/manifest"
)

// TestExampleManifests runs each example (examples/iris, examples/sensor):
// its manifest parses, the real scorer serves its model, and the sample rows
// score to scikit-learn's own labels.
func TestExampleManifests(t *testing.T) {
	cases := []struct{ dir, model, file string }{
		{"iris", "iris", "testdata/iris_logreg"},
		{"sensor", "sensor-anomaly", "testdata/sensor_rf"},
	}
	for _, c := range cases {
		t.Run(c.dir, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(c.dir, "manifest.json"))
			if err != nil {
				t.Fatal(err)
			}
			m, err := manifest.Parse(raw)
			if err != nil {
				t.Fatalf("manifest: %v", err)
			}
			models := t.TempDir()
			model, err := os.ReadFile(c.file + ".onnx")
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(models, c.model+".onnx"), model, 0o600); err != nil {
				t.Fatal(err)
			}
			srv, err := scorer.New(scorer.Config{Manifest: filepath.Join(c.dir, "manifest.json"), ModelDir: models})
			if err != nil {
				t.Fatalf("scorer: %v", err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx, ln) }()
			t.Cleanup(func() { cancel(); <-done })

			body, _ := json.Marshal(map[string]any{"input_df": m.SampleData})
			resp, err := http.Post("http://"+ln.Addr().String()+"/score", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("/score = %d: %s", resp.StatusCode, out)
			}
			var got struct {
				Result []struct {
					Label int64 `json:"label"`
				} `json:"result"`
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			var want struct {
				Outputs []struct {
					Name string  `json:"name"`
					Data []int64 `json:"data"`
				} `json:"outputs"`
			}
			exp, _ := os.ReadFile(c.file + ".expected.json")
			_ = json.Unmarshal(exp, &want) // probabilities do not decode as int64; labels do
			var labels []int64
			for _, o := range want.Outputs {
				if o.Name == "label" {
					labels = o.Data
				}
			}
			if len(got.Result) != len(m.SampleData) || len(labels) < len(got.Result) {
				t.Fatalf("scored %d rows of %d; %d expected labels", len(got.Result), len(m.SampleData), len(labels))
			}
			for i, r := range got.Result {
				if r.Label != labels[i] {
					t.Errorf("row %d: label %d, scikit-learn says %d", i, r.Label, labels[i])
				}
			}
		})
	}
}
