package scorer

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestHelperProcess is the scoring command of the exec tests when run with
// GO_WANT_HELPER_PROCESS=1: it answers {"id","rows"} lines with the sum of
// x and the length of name per row; x == -1 crashes, x == -2 never answers,
// x == -3 answers with an error.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("GO_WANT_HELPER_PROCESS") != "1" {
		t.Skip("helper process")
	}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	for sc.Scan() {
		var req struct {
			ID   int64            `json:"id"`
			Rows []map[string]any `json:"rows"`
		}
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(2)
		}
		var results []any
		var fail string
		silent := false
		for _, r := range req.Rows {
			x, _ := r["x"].(float64)
			switch x {
			case -1:
				os.Exit(3)
			case -2:
				silent = true
			case -3:
				fail = "x must not be -3"
			}
			name, _ := r["name"].(string)
			results = append(results, map[string]any{"y": x * 2, "len": len(name)})
		}
		if silent {
			continue
		}
		var rep []byte
		if fail != "" {
			rep, _ = json.Marshal(map[string]any{"id": req.ID, "error": fail})
		} else {
			rep, _ = json.Marshal(map[string]any{"id": req.ID, "result": results})
		}
		out.Write(append(rep, '\n'))
		out.Flush()
	}
	os.Exit(0)
}

const pythonScorer = `import json, sys
for line in sys.stdin:
    req = json.loads(line)
    out = []
    for r in req["rows"]:
        x = r["x"]
        if x == -1:
            sys.exit(3)
        out.append({"y": x * 2, "len": len(r.get("name") or "")})
    if any(r["x"] == -2 for r in req["rows"]):
        continue
    if any(r["x"] == -3 for r in req["rows"]):
        print(json.dumps({"id": req["id"], "error": "x must not be -3"}), flush=True)
        continue
    print(json.dumps({"id": req["id"], "result": out}), flush=True)
`

func execManifest(command []string, batch bool) map[string]any {
	return map[string]any{
		"apiVersion": "mlfleet.io/v1",
		"name":       "exec-test",
		"runtime":    "exec",
		"models":     []any{map[string]any{"name": "model", "version": 1, "path": "iris_logreg.onnx"}},
		"scoring":    map[string]any{"command": command, "timeoutMs": 300, "batchInput": batch},
		"schema": map[string]any{"inputs": []any{
			map[string]any{"name": "x", "type": "float64"},
			map[string]any{"name": "name", "type": "string", "nullable": true},
		}},
		"sampleData": []any{map[string]any{"x": 1, "name": "a"}},
	}
}

func TestExecRuntime(t *testing.T) {
	py := "/usr/bin/python3"
	tests := []struct {
		name  string
		setup func(t *testing.T) map[string]any
	}{
		{"go helper per row", func(t *testing.T) map[string]any {
			t.Setenv("GO_WANT_HELPER_PROCESS", "1")
			return execManifest([]string{os.Args[0], "-test.run=^TestHelperProcess$"}, false)
		}},
		{"python batch", func(t *testing.T) map[string]any {
			if _, err := exec.LookPath(py); err != nil {
				t.Skip("no " + py)
			}
			return execManifest([]string{py, "-u", "score.py"}, true)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeManifest(t, tc.setup(t), "iris_logreg.onnx")
			if err := os.WriteFile(filepath.Join(filepath.Dir(cfg.Manifest), "score.py"), []byte(pythonScorer), 0o644); err != nil {
				t.Fatal(err)
			}
			ts := startServer(t, cfg)
			waitFor(t, "child ready", func() bool { code, _, _ := ts.do(t, "GET", "/v2/health/ready", "", nil); return code == 200 })
			rows := func(xs ...float64) map[string]any {
				var r []any
				for _, x := range xs {
					r = append(r, map[string]any{"x": x, "name": "abc"})
				}
				return map[string]any{"input_df": r}
			}
			code, body := ts.post(t, "/score", rows(1, 2.5))
			var got struct{ Result []map[string]float64 }
			if err := json.Unmarshal(body, &got); code != 200 || err != nil || fmt.Sprint(got.Result) != "[map[len:3 y:2] map[len:3 y:5]]" {
				t.Fatalf("score: %d %s", code, body)
			}
			code, body = ts.post(t, "/invocations", map[string]any{"dataframe_split": map[string]any{"columns": []string{"x"}, "data": [][]any{{4}}}})
			if code != 200 || !strings.Contains(string(body), `"y":8`) {
				t.Fatalf("invocations: %d %s", code, body)
			}
			code, body = ts.post(t, "/v2/models/exec-test/infer", map[string]any{"inputs": []any{map[string]any{"name": "x", "shape": []int{1}, "datatype": "FP64", "data": []float64{1}}}})
			if code != 200 || !strings.Contains(string(body), `"datatype":"BYTES"`) {
				t.Fatalf("v2: %d %s", code, body)
			}
			// Validation applies as for onnx.
			if code, body := ts.post(t, "/score", map[string]any{"input_df": []any{map[string]any{"x": "one"}}}); code != 400 {
				t.Fatalf("bad row: %d %s", code, body)
			}
			// An error answer.
			if code, body := ts.post(t, "/score", rows(-3)); code != 500 || !strings.Contains(string(body), "must not be -3") {
				t.Fatalf("child error: %d %s", code, body)
			}
			// No answer in timeoutMs: 504, and the child keeps serving.
			if code, body := ts.post(t, "/score", rows(-2)); code != 504 {
				t.Fatalf("timeout: %d %s", code, body)
			}
			if code, body := ts.post(t, "/score", rows(7)); code != 200 {
				t.Fatalf("after timeout: %d %s", code, body)
			}
			// The child dies: 503, then it is restarted.
			if code, body := ts.post(t, "/score", rows(-1)); code != 503 {
				t.Fatalf("crash: %d %s", code, body)
			}
			waitFor(t, "child restarted", func() bool { code, _ := ts.post(t, "/score", rows(1)); return code == 200 })
			_, metrics, _ := ts.do(t, "GET", "/metrics", "", nil)
			for _, want := range []string{`reason="timeout"`, `reason="unavailable"`, `reason="invalid_row"`} {
				if !strings.Contains(string(metrics), want) {
					t.Errorf("metrics lack %s", want)
				}
			}
			_, prof, _ := ts.do(t, "GET", "/v1/profile", "", nil)
			if !strings.Contains(string(prof), `"y":{"kind":"numeric"`) {
				t.Errorf("profile has no output y: %s", prof)
			}
		})
	}
}

func TestExecStartupRefusal(t *testing.T) {
	_, err := New(writeManifest(t, execManifest([]string{"/nonexistent/scorer"}, true), "iris_logreg.onnx"))
	if err == nil || !strings.Contains(err.Error(), "scoring.command") {
		t.Fatalf("New: %v", err)
	}
}
