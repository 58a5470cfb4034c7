package scorer

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/shared/manifest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// goldenRequests are the wire-format examples: the request is
// testdata/NAME.request.json, the response testdata/NAME.golden.
var goldenRequests = []struct{ name, method, path string }{
	{"score", "POST", "/score"},
	{"invocations_split", "POST", "/invocations"},
	{"invocations_records", "POST", "/invocations"},
	{"v2_infer", "POST", "/v2/models/iris-logreg/infer"},
	{"v2_infer_bad", "POST", "/v2/models/iris-logreg/infer"},
	{"score_bad_row", "POST", "/score"},
	{"swagger", "GET", "/swagger.json"},
	{"v2_model", "GET", "/v2/models/iris-logreg"},
	{"profile", "GET", "/v1/profile"},
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, got, "", "  "); err != nil {
		t.Fatalf("%s: response is not JSON: %v: %s", name, err, got)
	}
	pretty.WriteByte('\n')
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pretty.Bytes(), want) {
		t.Errorf("%s: wire format changed:\n%s\nwant\n%s", name, pretty.Bytes(), want)
	}
}

func TestGolden(t *testing.T) {
	ex := loadExample(t, "iris_logreg")
	cfg := writeManifest(t, ex.manifest(t, []string{"setosa", "versicolor", "virginica"}), "iris_logreg.onnx")
	clock := time.Date(2024, 6, 1, 12, 0, 30, 0, time.UTC)
	cfg.now = func() time.Time { return clock }
	ts := startServer(t, cfg)
	for _, g := range goldenRequests {
		t.Run(g.name, func(t *testing.T) {
			var body []byte
			if g.method == "POST" {
				var err error
				if body, err = os.ReadFile(filepath.Join("testdata", g.name+".request.json")); err != nil {
					t.Fatal(err)
				}
			}
			_, resp, _ := ts.do(t, g.method, g.path, "application/json", body)
			checkGolden(t, g.name, resp)
		})
	}
}

func schemaOf(t testing.TB) manifest.Schema {
	var s manifest.Schema
	for _, f := range []string{"sepal_length", "sepal_width", "petal_length", "petal_width"} {
		s.Inputs = append(s.Inputs, manifest.Field{Name: f, Type: manifest.TypeFloat32})
	}
	return s
}

func addSeeds(f *testing.F, names ...string) {
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join("testdata", n+".request.json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[`))
}

func FuzzParseScore(f *testing.F) {
	addSeeds(f, "score", "score_bad_row")
	v := newValidator(schemaOf(f))
	f.Fuzz(func(t *testing.T, body []byte) {
		rows, err := parseScore(body)
		if err != nil {
			return
		}
		if _, err := v.validate(rows); err != nil {
			if _, ok := err.(*RowError); !ok {
				t.Fatalf("validate error %T %v", err, err)
			}
		}
	})
}

func FuzzParseInvocations(f *testing.F) {
	addSeeds(f, "invocations_split", "invocations_records")
	f.Add([]byte(`{"instances":[[1,2,3,4]]}`))
	f.Add([]byte(`{"inputs":{"sepal_length":[1],"sepal_width":[2]}}`))
	s := schemaOf(f)
	v := newValidator(s)
	f.Fuzz(func(t *testing.T, body []byte) {
		rows, err := parseInvocations(body, s)
		if err != nil {
			return
		}
		_, _ = v.validate(rows)
	})
}

func FuzzParseV2(f *testing.F) {
	addSeeds(f, "v2_infer", "v2_infer_bad")
	f.Add([]byte(`{"inputs":[{"name":"sepal_length","shape":[1],"datatype":"FP32","data":[1]}]}`))
	s := schemaOf(f)
	v := newValidator(s)
	f.Fuzz(func(t *testing.T, body []byte) {
		_, rows, err := parseV2(body, s, "X", 1<<20)
		if err != nil {
			return
		}
		if b, err := v.validate(rows); err == nil && b.n != len(rows) {
			t.Fatalf("batch of %d for %d rows", b.n, len(rows))
		}
	})
}
