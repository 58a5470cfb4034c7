package scorer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// A manifest with every kind of field, bound to iris_logreg by rule (b).
func strictManifest(t *testing.T) map[string]any {
	ex := loadExample(t, "iris_logreg")
	m := ex.manifest(t, nil)
	min0, max10 := 0.0, 10.0
	m["schema"] = map[string]any{"inputs": []any{
		map[string]any{"name": "sepal_length", "type": "float32", "min": min0, "max": max10},
		map[string]any{"name": "sepal_width", "type": "float64", "nullable": true},
		map[string]any{"name": "petal_length", "type": "int32", "categories": []string{"1", "2", "5"}},
		map[string]any{"name": "petal_width", "type": "uint8"},
	}}
	m["sampleData"] = []any{map[string]any{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1, "petal_width": 0}}
	return m
}

func TestBadInput(t *testing.T) {
	cfg := writeManifest(t, strictManifest(t), "iris_logreg.onnx")
	cfg.MaxBodyBytes = 1 << 20
	ts := startServer(t, cfg)
	good := `{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 5, "petal_width": 2}`
	rows := func(n int, row string) string {
		return `{"input_df": [` + strings.TrimSuffix(strings.Repeat(row+",", n), ",") + `]}`
	}
	bigRow := `{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 5, "petal_width": 2, "pad": "` + strings.Repeat("x", 1<<20) + `"}`
	tests := []struct {
		name, path, ctype, body string
		code                    int
		field                   string
		row                     int
	}{
		{"ok", "/score", "application/json", rows(1, good), 200, "", -1},
		{"ok null nullable", "/score", "", `{"input_df":[{"sepal_length": 1, "sepal_width": null, "petal_length": 1, "petal_width": 0}]}`, 200, "", -1},
		{"ok integral float for int", "/score", "", `{"input_df":[{"sepal_length": 1, "petal_length": 1.0, "petal_width": 2e0}]}`, 200, "", -1},
		{"missing field", "/score", "", `{"input_df":[` + good + `,{"sepal_length": 1, "petal_length": 1}]}`, 400, "petal_width", 1},
		{"extra field", "/score", "", `{"input_df":[{"sepal_length": 1, "petal_length": 1, "petal_width": 0, "color": "red"}]}`, 400, "color", 0},
		{"wrong type", "/score", "", `{"input_df":[{"sepal_length": "wide", "petal_length": 1, "petal_width": 0}]}`, 400, "sepal_length", 0},
		{"null not nullable", "/score", "", `{"input_df":[{"sepal_length": null, "petal_length": 1, "petal_width": 0}]}`, 400, "sepal_length", 0},
		{"below min", "/score", "", `{"input_df":[{"sepal_length": -1, "petal_length": 1, "petal_width": 0}]}`, 400, "sepal_length", 0},
		{"above max", "/score", "", `{"input_df":[{"sepal_length": 11, "petal_length": 1, "petal_width": 0}]}`, 400, "sepal_length", 0},
		{"bad category", "/score", "", `{"input_df":[{"sepal_length": 1, "petal_length": 3, "petal_width": 0}]}`, 400, "petal_length", 0},
		{"not an integer", "/score", "", `{"input_df":[{"sepal_length": 1, "petal_length": 1.5, "petal_width": 0}]}`, 400, "petal_length", 0},
		{"uint8 overflow", "/score", "", `{"input_df":[{"sepal_length": 1, "petal_length": 1, "petal_width": 256}]}`, 400, "petal_width", 0},
		{"negative unsigned", "/score", "", `{"input_df":[{"sepal_length": 1, "petal_length": 1, "petal_width": -1}]}`, 400, "petal_width", 0},
		{"float32 overflow", "/score", "", `{"input_df":[{"sepal_length": 1e39, "petal_length": 1, "petal_width": 0}]}`, 400, "sepal_length", 0},
		{"array for scalar", "/score", "", `{"input_df":[{"sepal_length": [1], "petal_length": 1, "petal_width": 0}]}`, 400, "sepal_length", 0},
		{"row not object", "/score", "", `{"input_df":[1]}`, 400, "", -1},
		{"row null", "/score", "", `{"input_df":[null]}`, 400, "input_df[0]", -1},
		{"no input_df", "/score", "", `{"rows":[]}`, 400, "", -1},
		{"empty input_df", "/score", "", `{"input_df":[]}`, 400, "", -1},
		{"malformed JSON", "/score", "", `{"input_df":[`, 400, "", -1},
		{"trailing data", "/score", "", rows(1, good) + ` {}`, 400, "", -1},
		{"not JSON at all", "/score", "", `sepal_length=1`, 400, "", -1},
		{"wrong content type", "/score", "text/csv", "a,b\n1,2\n", 415, "Content-Type", -1},
		{"body too large", "/score", "", `{"input_df":[` + bigRow + `]}`, 413, "", -1},
		{"too many rows", "/score", "", rows(10001, good), 400, "", -1},
		{"invocations two keys", "/invocations", "", `{"instances":[` + good + `],"inputs":[` + good + `]}`, 400, "inputs", -1},
		{"invocations no key", "/invocations", "", `{"data":[` + good + `]}`, 400, "", -1},
		{"invocations bad split", "/invocations", "", `{"dataframe_split":{"columns":["a"],"data":[[1,2]]}}`, 400, "dataframe_split.data[0]", -1},
		{"invocations bad row", "/invocations", "", `{"dataframe_records":[` + good + `,{"sepal_length": 1}]}`, 400, "petal_length", 1},
		{"v2 unknown model", "/v2/models/nope/infer", "", `{"inputs":[]}`, 404, "", -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := ts.do(t, "POST", tc.path, tc.ctype, []byte(tc.body))
			if code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, body)
			}
			if code != 200 && tc.path != "/v2/models/nope/infer" {
				var e struct {
					Error struct {
						Message string `json:"message"`
						Row     *int   `json:"row"`
						Field   string `json:"field"`
					} `json:"error"`
				}
				if err := json.Unmarshal(body, &e); err != nil || e.Error.Message == "" {
					t.Fatalf("error body %s: %v", body, err)
				}
				if e.Error.Field != tc.field {
					t.Errorf("field %q, want %q (%s)", e.Error.Field, tc.field, body)
				}
				if tc.row >= 0 && (e.Error.Row == nil || *e.Error.Row != tc.row) {
					t.Errorf("row %v, want %d (%s)", e.Error.Row, tc.row, body)
				}
				if tc.field != "" && !strings.Contains(e.Error.Message, tc.field) {
					t.Errorf("message %q does not name %q", e.Error.Message, tc.field)
				}
			}
			if code, _, _ := ts.do(t, "GET", "/healthz", "", nil); code != 200 {
				t.Fatalf("healthz %d after the request", code)
			}
		})
	}
	t.Run("10000 rows succeed", func(t *testing.T) {
		code, body, _ := ts.do(t, "POST", "/score", "", []byte(rows(10000, good)))
		if code != 200 {
			t.Fatalf("%d %s", code, body[:min(len(body), 300)])
		}
		var r struct{ Result []any }
		if err := json.Unmarshal(body, &r); err != nil || len(r.Result) != 10000 {
			t.Fatalf("%d results, %v", len(r.Result), err)
		}
	})
}

func TestBadV2Input(t *testing.T) {
	ex := loadExample(t, "iris_logreg")
	ts := startServer(t, writeManifest(t, ex.manifest(t, nil), "iris_logreg.onnx"))
	x := func(shape string, dt string, data string) string {
		return `{"inputs":[{"name":"X","shape":` + shape + `,"datatype":"` + dt + `","data":` + data + `}]}`
	}
	tests := []struct {
		name, body string
		code       int
		mention    string
	}{
		{"ok", x("[1,4]", "FP32", "[1,2,3,4]"), 200, ""},
		{"ok nested", x("[1,4]", "FP64", "[[1,2,3,4]]"), 200, ""},
		{"ok ints", x("[1,4]", "INT64", "[1,2,3,4]"), 200, ""},
		{"count mismatch", x("[1,4]", "FP32", "[1,2,3]"), 400, "data"},
		{"wrong width", x("[1,3]", "FP32", "[1,2,3]"), 400, "shape"},
		{"bad datatype", x("[1,4]", "FP128", "[1,2,3,4]"), 400, "FP128"},
		{"bytes for float", x("[1,4]", "BYTES", `["a","b","c","d"]`), 400, "BYTES"},
		{"string in FP32", x("[1,4]", "FP32", `[1,2,3,"x"]`), 400, "data[3]"},
		{"unknown input", `{"inputs":[{"name":"Y","shape":[1],"datatype":"FP32","data":[1]}]}`, 400, `"Y"`},
		{"no inputs", `{"inputs":[]}`, 400, "inputs"},
		{"missing feature", `{"inputs":[{"name":"sepal_length","shape":[1],"datatype":"FP32","data":[1]}]}`, 400, "sepal_width"},
		{"rows mismatch", `{"inputs":[{"name":"sepal_length","shape":[1],"datatype":"FP32","data":[1]},{"name":"sepal_width","shape":[2],"datatype":"FP32","data":[1,2]}]}`, 400, "rows"},
		{"negative dim", x("[-1,4]", "FP32", "[1,2,3,4]"), 400, "negative"},
		{"huge shape", x("[100000000,100000000]", "FP32", "[1]"), 400, "shape"},
		{"malformed", `{"inputs":`, 400, "JSON"},
		{"unknown field", `{"inputs":[],"bogus":1}`, 400, "bogus"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := ts.post(t, "/v2/models/iris-logreg/infer", []byte(tc.body))
			if code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, body)
			}
			if code != 200 {
				var e struct{ Error string }
				if err := json.Unmarshal(body, &e); err != nil || !strings.Contains(e.Error, tc.mention) {
					t.Fatalf("error %s does not mention %q (%v)", body, tc.mention, err)
				}
			}
		})
	}
}

// A 50 MB body is refused with 413 without being read whole.
func TestHugeBody(t *testing.T) {
	ex := loadExample(t, "iris_logreg")
	ts := startServer(t, writeManifest(t, ex.manifest(t, nil), "iris_logreg.onnx"))
	body := bytes.Repeat([]byte(" "), 50<<20)
	copy(body, `{"input_df":[`)
	code, resp, _ := ts.do(t, "POST", "/score", "application/json", body)
	if code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d: %s", code, resp)
	}
	if code, _, _ := ts.do(t, "GET", "/healthz", "", nil); code != 200 {
		t.Fatalf("healthz %d", code)
	}
}

// With every worker blocked and the queue full, the next request gets 429.
func TestQueueFull(t *testing.T) {
	ex := loadExample(t, "iris_logreg")
	cfg := writeManifest(t, ex.manifest(t, nil), "iris_logreg.onnx")
	cfg.Workers, cfg.QueueSize = 2, 3
	release := make(chan struct{})
	var entered sync.WaitGroup
	cfg.beforeInfer = func() { <-release }
	ts := startServer(t, cfg)
	body, _ := json.Marshal(map[string]any{"input_df": ex.records()[:1]})
	codes := make(chan int, 5)
	for range 5 {
		entered.Add(1)
		go func() {
			defer entered.Done()
			code, _, _ := ts.do(t, "POST", "/score", "", body)
			codes <- code
		}()
	}
	waitFor(t, "workers busy and queue full", func() bool {
		return ts.met.inflight.Load() == 2 && ts.q.waiting.Load() == 3
	})
	code, resp, hdr := ts.do(t, "POST", "/score", "", body)
	if code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Fatalf("status %d Retry-After %q: %s", code, hdr.Get("Retry-After"), resp)
	}
	_, metrics, _ := ts.do(t, "GET", "/metrics", "", nil)
	for _, want := range []string{"mlfleet_scorer_queue_depth 3", `mlfleet_scorer_errors_total{reason="queue_full"} 1`, `mlfleet_scorer_requests_total{endpoint="score",code="429"} 1`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
	close(release)
	entered.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("blocked request finished with %d", c)
		}
	}
}

// Cancelling Serve's context lets an in-flight request finish, then Serve
// returns nil.
func TestGracefulShutdown(t *testing.T) {
	ex := loadExample(t, "iris_logreg")
	cfg := writeManifest(t, ex.manifest(t, nil), "iris_logreg.onnx")
	release := make(chan struct{})
	cfg.beforeInfer = func() { <-release }
	ts := startServer(t, cfg)
	body, _ := json.Marshal(map[string]any{"input_df": ex.records()[:2]})
	result := make(chan string, 1)
	go func() {
		code, b, _ := ts.do(t, "POST", "/score", "", body)
		result <- strconv.Itoa(code) + " " + string(b)
	}()
	waitFor(t, "request in flight", func() bool { return ts.met.inflight.Load() == 1 })
	ts.cancel()
	waitFor(t, "shutdown started", func() bool { return ts.shutdown.Load() })
	close(release)
	if r := <-result; !strings.HasPrefix(r, "200 ") {
		t.Fatalf("in-flight request: %s", r)
	}
	if err := <-ts.done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	ts.cancel = nil
	if _, err := http.Get(ts.url + "/healthz"); err == nil {
		t.Fatal("server still accepting after shutdown")
	}
}

func TestStartupRefusals(t *testing.T) {
	ex := loadExample(t, "iris_logreg")
	tests := []struct {
		name    string
		edit    func(m map[string]any)
		model   string
		mention string
	}{
		{"missing model file", func(m map[string]any) {}, "", "iris_logreg.onnx"},
		{"wrong width", func(m map[string]any) {
			m["schema"] = map[string]any{"inputs": []any{map[string]any{"name": "a", "type": "float32"}}}
			m["sampleData"] = []any{}
		}, "iris_logreg.onnx", "4 elements per row"},
		{"string into float", func(m map[string]any) {
			m["schema"] = map[string]any{"inputs": []any{map[string]any{"name": "X", "type": "string", "shape": []int{4}}}}
			m["sampleData"] = []any{}
		}, "iris_logreg.onnx", "cannot feed"},
		{"bad manifest", func(m map[string]any) { m["runtime"] = "tensorflow" }, "iris_logreg.onnx", "runtime"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := ex.manifest(t, nil)
			tc.edit(m)
			var models []string
			if tc.model != "" {
				models = append(models, tc.model)
			}
			_, err := New(writeManifest(t, m, models...))
			if err == nil || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("New: %v, want an error mentioning %q", err, tc.mention)
			}
		})
	}
}

func TestMetadataEndpoints(t *testing.T) {
	ex := loadExample(t, "iris_logreg")
	ts := startServer(t, writeManifest(t, ex.manifest(t, nil), "iris_logreg.onnx"))
	tests := []struct {
		path    string
		code    int
		mention string
	}{
		{"/healthz", 200, "true"},
		{"/ping", 200, "true"},
		{"/v2/health/live", 200, "live"},
		{"/v2/health/ready", 200, "ready"},
		{"/v2", 200, "mlfleet-scorer"},
		{"/v2/models/iris-logreg", 200, `"platform":"onnx"`},
		{"/v2/models/iris-logreg/ready", 200, "true"},
		{"/v2/models/other", 404, "not found"},
		{"/v2/models/other/ready", 404, "not found"},
		{"/swagger.json", 200, `"input_df"`},
		{"/v1/profile", 200, `"current"`},
		{"/metrics", 200, "mlfleet_scorer_requests_total"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			code, body, _ := ts.do(t, "GET", tc.path, "", nil)
			if code != tc.code || !strings.Contains(string(body), tc.mention) {
				t.Fatalf("%d %s, want %d mentioning %q", code, body, tc.code, tc.mention)
			}
		})
	}
	var doc map[string]any
	_, body, _ := ts.do(t, "GET", "/swagger.json", "", nil)
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	ex2 := doc["definitions"].(map[string]any)["ServiceInput"].(map[string]any)["example"]
	if fmt.Sprint(ex2) == "<nil>" {
		t.Error("swagger has no example")
	}
}
