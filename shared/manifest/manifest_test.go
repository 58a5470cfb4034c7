package manifest

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func validFiles(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "valid", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/valid/*.json: %v", err)
	}
	return files
}

// TestGolden checks the canonical form of each testdata/valid manifest
// against testdata/golden. Run with -update to rewrite the golden files.
func TestGolden(t *testing.T) {
	for _, in := range validFiles(t) {
		name := filepath.Base(in)
		t.Run(name, func(t *testing.T) {
			m, err := Parse(readFile(t, in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got, err := m.Canonical()
			if err != nil {
				t.Fatalf("Canonical: %v", err)
			}
			golden := filepath.Join("testdata", "golden", name)
			if *update {
				if err := os.WriteFile(golden, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want := bytes.TrimSuffix(readFile(t, golden), []byte("\n"))
			if !bytes.Equal(got, want) {
				t.Errorf("canonical form differs from %s (run with -update if intended)\ngot:  %s\nwant: %s", golden, got, want)
			}
		})
	}
}

// TestRoundTrip checks Parse(Canonical(m)) == m with defaults applied, and
// that the canonical form is a fixed point.
func TestRoundTrip(t *testing.T) {
	for _, in := range validFiles(t) {
		t.Run(filepath.Base(in), func(t *testing.T) {
			m, err := Parse(readFile(t, in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			before, _ := json.Marshal(m)
			c, err := m.Canonical()
			if err != nil {
				t.Fatalf("Canonical: %v", err)
			}
			if after, _ := json.Marshal(m); !bytes.Equal(before, after) {
				t.Errorf("Canonical changed its receiver")
			}
			m2, err := Parse(c)
			if err != nil {
				t.Fatalf("Parse(Canonical): %v\n%s", err, c)
			}
			m.ApplyDefaults()
			if !reflect.DeepEqual(m, m2) {
				t.Errorf("Parse(Canonical(m)) != m with defaults\n m: %#v\nm2: %#v", m, m2)
			}
			c2, err := m2.Canonical()
			if err != nil || !bytes.Equal(c, c2) {
				t.Errorf("canonical form is not stable (%v)\n%s\n%s", err, c, c2)
			}
		})
	}
}

func TestDigestIgnoresFormatting(t *testing.T) {
	a := `{"apiVersion":"mlfleet.io/v1","name":"m","runtime":"onnx","models":[{"name":"a","version":1}],
		"schema":{"inputs":[{"name":"x","type":"int32"}]},"sampleData":[{"x":10}],"labels":{"b":"1","a":"2"}}`
	b := `{ "labels": {"a": "2", "b": "1"}, "sampleData": [{"x": 1e1}],
		"schema": {"inputs": [{"type": "int32", "name": "x", "shape": [], "categories": []}], "outputs": []},
		"models": [{"version": 1, "name": "a", "path": "a.onnx"}], "scoring": {"timeoutMs": 10000},
		"runtime": "onnx", "name": "m", "apiVersion": "mlfleet.io/v1", "dependencies": [] }`
	c := strings.Replace(a, `"b":"1"`, `"b":"3"`, 1)
	digest := func(s string) string {
		t.Helper()
		m, err := Parse([]byte(s))
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		d, err := m.Digest()
		if err != nil {
			t.Fatalf("Digest: %v", err)
		}
		if !strings.HasPrefix(d, "sha256:") || len(d) != 7+64 {
			t.Fatalf("digest %q is not sha256:<64 hex>", d)
		}
		return d
	}
	if digest(a) != digest(b) {
		t.Errorf("equal manifests have different digests")
	}
	if digest(a) == digest(c) {
		t.Errorf("different manifests have equal digests")
	}
}

// TestParseStrict covers the JSON-level rules of Parse.
func TestParseStrict(t *testing.T) {
	const ok = `{"apiVersion":"mlfleet.io/v1","name":"m","runtime":"onnx","models":[{"name":"a","version":1}],"schema":{"inputs":[{"name":"x","type":"float32"}]}}`
	with := func(old, new string) string {
		if !strings.Contains(ok, old) {
			t.Fatalf("test bug: %q not in the base manifest", old)
		}
		return strings.Replace(ok, old, new, 1)
	}
	tests := []struct {
		name  string
		in    string
		class errclass.Class // "" = success
		field string
	}{
		{"valid", ok, "", ""},
		{"leading and trailing space", " \n" + ok + "\n\t", "", ""},
		{"unknown top field", with(`"name":"m"`, `"name":"m","nmae":"x"`), errclass.InvalidArgument, "nmae"},
		{"unknown nested field", with(`"type":"float32"`, `"type":"float32","dtype":"x"`), errclass.InvalidArgument, "schema.inputs[0].dtype"},
		{"unknown model field", with(`"version":1`, `"version":1,"sha":"x"`), errclass.InvalidArgument, "models[0].sha"},
		{"key case mismatch", with(`"name":"m"`, `"Name":"m"`), errclass.InvalidArgument, "Name"},
		{"duplicate key", with(`"name":"m"`, `"name":"m","name":"n"`), errclass.InvalidArgument, "name"},
		{"duplicate key in sample row", with(`"schema"`, `"sampleData":[{"x":1,"x":2}],"schema"`), errclass.InvalidArgument, "sampleData[0].x"},
		{"duplicate label", with(`"schema"`, `"labels":{"a.b":"1","a.b":"2"},"schema"`), errclass.InvalidArgument, `labels["a.b"]`},
		{"trailing data", ok + "{}", errclass.InvalidArgument, ""},
		{"trailing garbage", ok + " x", errclass.InvalidArgument, ""},
		{"truncated", ok[:len(ok)-1], errclass.InvalidArgument, ""},
		{"empty", "", errclass.InvalidArgument, ""},
		{"not an object", `[]`, errclass.InvalidArgument, ""},
		{"syntax error", with(`"name":"m"`, `"name":'m'`), errclass.InvalidArgument, "name"},
		{"string for int", with(`"version":1`, `"version":"1"`), errclass.InvalidArgument, "models[0].version"},
		{"fraction for int", with(`"version":1`, `"version":1.5`), errclass.InvalidArgument, "models[0].version"},
		{"huge int", with(`"version":1`, `"version":99999999999999999999`), errclass.InvalidArgument, "models[0].version"},
		{"null string", with(`"name":"m"`, `"name":null`), errclass.InvalidArgument, "name"},
		{"null struct", with(`"schema":{`, `"scoring":null,"schema":{`), errclass.InvalidArgument, "scoring"},
		{"null list is absent", with(`"schema"`, `"labels":null,"dependencies":null,"schema"`), "", ""},
		{"null baseline is absent", with(`"schema"`, `"baseline":null,"schema"`), "", ""},
		{"number for string", with(`"name":"m"`, `"name":5`), errclass.InvalidArgument, "name"},
		{"object for list", with(`"models":[{"name":"a","version":1}]`, `"models":{"name":"a"}`), errclass.InvalidArgument, "models"},
		{"bool as string", with(`"schema"`, `"scoring":{"batchInput":"true"},"schema"`), errclass.InvalidArgument, "scoring.batchInput"},
		{"number out of range", with(`"type":"float32"`, `"type":"float32","min":1e999`), errclass.InvalidArgument, "schema.inputs[0].min"},
		{"sample number out of range", with(`"schema"`, `"sampleData":[{"x":1e999}],"schema"`), errclass.InvalidArgument, "sampleData[0].x"},
		{"invalid utf8", with(`"name":"m"`, "\"name\":\"m\xff\""), errclass.InvalidArgument, ""},
		{"too deep", with(`"schema"`, `"sampleData":[{"x":`+strings.Repeat("[", 100)+strings.Repeat("]", 100)+`}],"schema"`), errclass.InvalidArgument, "sampleData[0].x" + strings.Repeat("[0]", 62)},
		{"too large", ok + strings.Repeat(" ", MaxSize), errclass.TooLarge, ""},
		{"invalid after strict", with(`"version":1`, `"version":0`), errclass.InvalidArgument, "models[0].version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.in))
			if tt.class == "" {
				if err != nil || m == nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse succeeded, want %s error at %q", tt.class, tt.field)
			}
			if c := errclass.ClassOf(err); c != tt.class {
				t.Errorf("class %s, want %s (%v)", c, tt.class, err)
			}
			if f := errclass.FieldOf(err); f != tt.field {
				t.Errorf("field %q, want %q (%v)", f, tt.field, err)
			}
			if tt.field != "" && !strings.HasPrefix(err.Error(), tt.field+": ") {
				t.Errorf("message %q does not start with the field", err)
			}
		})
	}
}

func TestRead(t *testing.T) {
	b := readFile(t, filepath.Join("testdata", "valid", "iris-onnx.json"))
	if _, err := Read(bytes.NewReader(b)); err != nil {
		t.Fatalf("Read: %v", err)
	}
	big := append(append([]byte{}, b...), bytes.Repeat([]byte(" "), MaxSize)...)
	if _, err := Read(bytes.NewReader(big)); !errclass.Is(err, errclass.TooLarge) {
		t.Fatalf("Read of %d bytes: %v, want too_large", len(big), err)
	}
}

func ptr(f float64) *float64 { return &f }

func baseONNX() *Manifest {
	return &Manifest{
		APIVersion: APIVersion,
		Name:       "iris",
		Runtime:    RuntimeONNX,
		Models:     []ModelRef{{Name: "iris", Version: 1}},
		Schema: Schema{
			Inputs: []Field{
				{Name: "x", Type: TypeFloat32, Min: ptr(0), Max: ptr(10)},
				{Name: "kind", Type: TypeString, Categories: []string{"a", "b"}, Nullable: true},
				{Name: "n", Type: TypeInt8},
			},
			Outputs: []Field{{Name: "label", Type: TypeInt64}, {Name: "p", Type: TypeFloat32, Shape: []int{3}}},
		},
		SampleData: []map[string]any{{"x": 1.5, "kind": "a", "n": 3}},
	}
}

func baseExec() *Manifest {
	m := baseONNX()
	m.Runtime = RuntimeExec
	m.Scoring = Scoring{
		Command: []string{"python3", "score.py"},
		Files:   []File{{Path: "score.py", Content: "print(1)\n"}, {Path: "lib/util.py", Content: "", Mode: 0o755}},
	}
	m.Dependencies = []Dependency{{Kind: DepPip, Name: "numpy", Version: "1.26.4"}, {Kind: DepFile, Name: "lib/util.py"}}
	return m
}

// TestValidate covers each rule of Validate, good and bad.
func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		base  func() *Manifest
		edit  func(m *Manifest)
		field string // "" = valid
	}{
		{"onnx ok", baseONNX, func(m *Manifest) {}, ""},
		{"exec ok", baseExec, func(m *Manifest) {}, ""},
		{"api version", baseONNX, func(m *Manifest) { m.APIVersion = "mlfleet.io/v2" }, "apiVersion"},
		{"api version missing", baseONNX, func(m *Manifest) { m.APIVersion = "" }, "apiVersion"},
		{"name upper", baseONNX, func(m *Manifest) { m.Name = "Iris" }, "name"},
		{"name empty", baseONNX, func(m *Manifest) { m.Name = "" }, "name"},
		{"description too long", baseONNX, func(m *Manifest) { m.Description = strings.Repeat("x", 5000) }, "description"},
		{"description bad utf8", baseONNX, func(m *Manifest) { m.Description = "a\xffb" }, "description"},
		{"runtime", baseONNX, func(m *Manifest) { m.Runtime = "tensorflow" }, "runtime"},
		{"no models", baseONNX, func(m *Manifest) { m.Models = nil }, "models"},
		{"model name", baseONNX, func(m *Manifest) { m.Models[0].Name = "-x" }, "models[0].name"},
		{"model duplicate", baseONNX, func(m *Manifest) { m.Models = append(m.Models, ModelRef{Name: "iris", Version: 2}) }, "models[1].name"},
		{"model version 0", baseONNX, func(m *Manifest) { m.Models[0].Version = 0 }, "models[0].version"},
		{"model digest ok", baseONNX, func(m *Manifest) { m.Models[0].Digest = "sha256:" + strings.Repeat("ab", 32) }, ""},
		{"model digest upper", baseONNX, func(m *Manifest) { m.Models[0].Digest = "sha256:" + strings.Repeat("AB", 32) }, "models[0].digest"},
		{"model digest short", baseONNX, func(m *Manifest) { m.Models[0].Digest = "sha256:abc" }, "models[0].digest"},
		{"model path ok", baseONNX, func(m *Manifest) { m.Models[0].Path = "sub/dir/m.onnx" }, ""},
		{"model path dotdot", baseONNX, func(m *Manifest) { m.Models[0].Path = "../m.onnx" }, "models[0].path"},
		{"model path inner dotdot", baseONNX, func(m *Manifest) { m.Models[0].Path = "a/../../m.onnx" }, "models[0].path"},
		{"model path absolute", baseONNX, func(m *Manifest) { m.Models[0].Path = "/m.onnx" }, "models[0].path"},
		{"model path unclean", baseONNX, func(m *Manifest) { m.Models[0].Path = "a//m.onnx" }, "models[0].path"},
		{"model path dot", baseONNX, func(m *Manifest) { m.Models[0].Path = "." }, "models[0].path"},
		{"model path backslash", baseONNX, func(m *Manifest) { m.Models[0].Path = `a\m.onnx` }, "models[0].path"},
		{"model path clash with default", baseONNX, func(m *Manifest) {
			m.Models = append(m.Models, ModelRef{Name: "other", Version: 1, Path: "iris.onnx"})
		}, "models[1].path"},
		{"onnx command", baseONNX, func(m *Manifest) { m.Scoring.Command = []string{"x"} }, "scoring.command"},
		{"onnx files", baseONNX, func(m *Manifest) { m.Scoring.Files = []File{{Path: "a", Content: "b"}} }, "scoring.files"},
		{"onnx base image", baseONNX, func(m *Manifest) { m.Scoring.BaseImage = "python:3" }, "scoring.baseImage"},
		{"onnx dependencies", baseONNX, func(m *Manifest) { m.Dependencies = []Dependency{{Kind: DepPip, Name: "x"}} }, "dependencies"},
		{"output labels ok", baseONNX, func(m *Manifest) { m.Scoring.OutputLabels = []string{"a", "b"} }, ""},
		{"output labels duplicate", baseONNX, func(m *Manifest) { m.Scoring.OutputLabels = []string{"a", "a"} }, "scoring.outputLabels[1]"},
		{"output labels empty", baseONNX, func(m *Manifest) { m.Scoring.OutputLabels = []string{""} }, "scoring.outputLabels[0]"},
		{"timeout ok", baseONNX, func(m *Manifest) { m.Scoring.TimeoutMs = MaxTimeoutMs }, ""},
		{"timeout too big", baseONNX, func(m *Manifest) { m.Scoring.TimeoutMs = MaxTimeoutMs + 1 }, "scoring.timeoutMs"},
		{"timeout negative", baseONNX, func(m *Manifest) { m.Scoring.TimeoutMs = -1 }, "scoring.timeoutMs"},
		{"exec no command", baseExec, func(m *Manifest) { m.Scoring.Command = nil }, "scoring.command"},
		{"exec empty program", baseExec, func(m *Manifest) { m.Scoring.Command = []string{""} }, "scoring.command[0]"},
		{"exec empty argument ok", baseExec, func(m *Manifest) { m.Scoring.Command = []string{"x", ""} }, ""},
		{"exec base image ok", baseExec, func(m *Manifest) { m.Scoring.BaseImage = "registry.example:5000/py@sha256:" + strings.Repeat("0", 64) }, ""},
		{"exec base image space", baseExec, func(m *Manifest) { m.Scoring.BaseImage = "python 3" }, "scoring.baseImage"},
		{"exec base image url", baseExec, func(m *Manifest) { m.Scoring.BaseImage = "https://x/y" }, "scoring.baseImage"},
		{"file path dotdot", baseExec, func(m *Manifest) { m.Scoring.Files[0].Path = "../score.py" }, "scoring.files[0].path"},
		{"file path empty", baseExec, func(m *Manifest) { m.Scoring.Files[0].Path = "" }, "scoring.files[0].path"},
		{"file duplicate", baseExec, func(m *Manifest) { m.Scoring.Files[1].Path = "score.py" }, "scoring.files[1].path"},
		{"file too big", baseExec, func(m *Manifest) { m.Scoring.Files[0].Content = strings.Repeat("x", MaxFileSize+1) }, "scoring.files[0].content"},
		{"files too big together", baseExec, func(m *Manifest) {
			for i := range 5 {
				m.Scoring.Files = append(m.Scoring.Files, File{Path: "f" + string(rune('0'+i)), Content: strings.Repeat("x", MaxFileSize)})
			}
		}, "scoring.files[5].content"},
		{"file binary", baseExec, func(m *Manifest) { m.Scoring.Files[0].Content = "a\x00b" }, "scoring.files[0].content"},
		{"file mode", baseExec, func(m *Manifest) { m.Scoring.Files[0].Mode = 0o1777 }, "scoring.files[0].mode"},
		{"dependency kind", baseExec, func(m *Manifest) { m.Dependencies[0].Kind = "npm" }, "dependencies[0].kind"},
		{"dependency name", baseExec, func(m *Manifest) { m.Dependencies[0].Name = "num py" }, "dependencies[0].name"},
		{"dependency version", baseExec, func(m *Manifest) { m.Dependencies[0].Version = ">= 1" }, "dependencies[0].version"},
		{"dependency duplicate", baseExec, func(m *Manifest) {
			m.Dependencies = append(m.Dependencies, Dependency{Kind: DepPip, Name: "numpy"})
		}, "dependencies[2].name"},
		{"file dependency missing", baseExec, func(m *Manifest) { m.Dependencies[1].Name = "nope.txt" }, "dependencies[1].name"},
		{"file dependency version", baseExec, func(m *Manifest) { m.Dependencies[1].Version = "1" }, "dependencies[1].version"},
		{"no inputs", baseONNX, func(m *Manifest) { m.Schema.Inputs = nil; m.SampleData = nil }, "schema.inputs"},
		{"input name empty", baseONNX, func(m *Manifest) { m.Schema.Inputs[2].Name = "" }, "schema.inputs[2].name"},
		{"input name spaces", baseONNX, func(m *Manifest) { m.Schema.Inputs[2].Name = " n" }, "schema.inputs[2].name"},
		{"input name control", baseONNX, func(m *Manifest) { m.Schema.Inputs[2].Name = "a\nb" }, "schema.inputs[2].name"},
		{"input duplicate", baseONNX, func(m *Manifest) { m.Schema.Inputs[2].Name = "x" }, "schema.inputs[2].name"},
		{"output duplicate", baseONNX, func(m *Manifest) { m.Schema.Outputs[1].Name = "label" }, "schema.outputs[1].name"},
		{"output same name as input ok", baseONNX, func(m *Manifest) { m.Schema.Outputs[1].Name = "x" }, ""},
		{"type", baseONNX, func(m *Manifest) { m.Schema.Inputs[2].Type = "int128" }, "schema.inputs[2].type"},
		{"output type", baseONNX, func(m *Manifest) { m.Schema.Outputs[0].Type = "" }, "schema.outputs[0].type"},
		{"shape zero", baseONNX, func(m *Manifest) { m.Schema.Outputs[1].Shape = []int{3, 0} }, "schema.outputs[1].shape[1]"},
		{"shape -2", baseONNX, func(m *Manifest) { m.Schema.Outputs[1].Shape = []int{-2} }, "schema.outputs[1].shape[0]"},
		{"shape dynamic ok", baseONNX, func(m *Manifest) { m.Schema.Outputs[1].Shape = []int{-1, 3} }, ""},
		{"shape rank", baseONNX, func(m *Manifest) { m.Schema.Outputs[1].Shape = make([]int, 9) }, "schema.outputs[1].shape"},
		{"shape too many elements", baseONNX, func(m *Manifest) { m.Schema.Outputs[1].Shape = []int{1 << 20, 1 << 20} }, "schema.outputs[1].shape[1]"},
		{"min on string", baseONNX, func(m *Manifest) { m.Schema.Inputs[1].Min = ptr(1) }, "schema.inputs[1].min"},
		{"max on bool", baseONNX, func(m *Manifest) { m.Schema.Outputs[0].Type = TypeBool; m.Schema.Outputs[0].Max = ptr(1) }, "schema.outputs[0].max"},
		{"min > max", baseONNX, func(m *Manifest) { m.Schema.Inputs[0].Min = ptr(11) }, "schema.inputs[0].min"},
		{"min == max ok", baseONNX, func(m *Manifest) { m.Schema.Inputs[0].Min = ptr(10); m.SampleData = nil }, ""},
		{"min infinite", baseONNX, func(m *Manifest) { m.Schema.Inputs[0].Min = ptr(negInf()) }, "schema.inputs[0].min"},
		{"categories on float", baseONNX, func(m *Manifest) { m.Schema.Inputs[0].Categories = []string{"1"} }, "schema.inputs[0].categories"},
		{"categories duplicate", baseONNX, func(m *Manifest) { m.Schema.Inputs[1].Categories = []string{"a", "b", "a"} }, "schema.inputs[1].categories[2]"},
		{"int categories ok", baseONNX, func(m *Manifest) { m.Schema.Inputs[2].Categories = []string{"-128", "3", "127"} }, ""},
		{"int category out of range", baseONNX, func(m *Manifest) { m.Schema.Inputs[2].Categories = []string{"3", "128"} }, "schema.inputs[2].categories[1]"},
		{"int category not canonical", baseONNX, func(m *Manifest) { m.Schema.Inputs[2].Categories = []string{"03"} }, "schema.inputs[2].categories[0]"},
		{"int category word", baseONNX, func(m *Manifest) { m.Schema.Inputs[2].Categories = []string{"three"} }, "schema.inputs[2].categories[0]"},
		{"sample unknown key", baseONNX, func(m *Manifest) { m.SampleData[0]["y"] = 1.0 }, "sampleData[0].y"},
		{"sample missing required", baseONNX, func(m *Manifest) { delete(m.SampleData[0], "x") }, "sampleData[0].x"},
		{"sample null required", baseONNX, func(m *Manifest) { m.SampleData[0]["x"] = nil }, "sampleData[0].x"},
		{"sample nullable absent ok", baseONNX, func(m *Manifest) { delete(m.SampleData[0], "kind") }, ""},
		{"sample second row", baseONNX, func(m *Manifest) {
			m.SampleData = append(m.SampleData, map[string]any{"x": 1.0, "n": "3"})
		}, "sampleData[1].n"},
		{"sample too many rows", baseONNX, func(m *Manifest) {
			for range MaxSampleRows {
				m.SampleData = append(m.SampleData, m.SampleData[0])
			}
		}, "sampleData"},
		{"baseline ok", baseONNX, func(m *Manifest) {
			m.Baseline = &Baseline{Features: map[string]FeatureBaseline{
				"x":     {Edges: []float64{1, 2}, Counts: []float64{0, 5, 1}},
				"kind":  {Categories: map[string]float64{"a": 3}},
				"label": {Categories: map[string]float64{"0": 1}},
			}}
		}, ""},
		{"baseline unknown feature", baseONNX, func(m *Manifest) {
			m.Baseline = &Baseline{Features: map[string]FeatureBaseline{"zz": {Categories: map[string]float64{"a": 1}}}}
		}, "baseline.features.zz"},
		{"baseline empty feature", baseONNX, func(m *Manifest) {
			m.Baseline = &Baseline{Features: map[string]FeatureBaseline{"x": {}}}
		}, "baseline.features.x"},
		{"baseline edges not increasing", baseONNX, func(m *Manifest) {
			m.Baseline = &Baseline{Features: map[string]FeatureBaseline{"x": {Edges: []float64{1, 1}, Counts: []float64{0, 0, 0}}}}
		}, "baseline.features.x.edges[1]"},
		{"baseline counts length", baseONNX, func(m *Manifest) {
			m.Baseline = &Baseline{Features: map[string]FeatureBaseline{"x": {Edges: []float64{1, 2}, Counts: []float64{0, 0}}}}
		}, "baseline.features.x.counts"},
		{"baseline edges without counts", baseONNX, func(m *Manifest) {
			m.Baseline = &Baseline{Features: map[string]FeatureBaseline{"x": {Edges: []float64{1}}}}
		}, "baseline.features.x.counts"},
		{"baseline negative count", baseONNX, func(m *Manifest) {
			m.Baseline = &Baseline{Features: map[string]FeatureBaseline{"x": {Edges: []float64{1}, Counts: []float64{1, -1}}}}
		}, "baseline.features.x.counts[1]"},
		{"baseline edges on string", baseONNX, func(m *Manifest) {
			m.Baseline = &Baseline{Features: map[string]FeatureBaseline{"kind": {Edges: []float64{1}, Counts: []float64{1, 1}}}}
		}, "baseline.features.kind.edges"},
		{"baseline category count NaN", baseONNX, func(m *Manifest) {
			m.Baseline = &Baseline{Features: map[string]FeatureBaseline{"kind": {Categories: map[string]float64{"a b": nan()}}}}
		}, `baseline.features.kind.categories["a b"]`},
		{"labels ok", baseONNX, func(m *Manifest) { m.Labels = map[string]string{"app.example/tier": "gold", "x": ""} }, ""},
		{"label key", baseONNX, func(m *Manifest) { m.Labels = map[string]string{"a b": "x"} }, `labels["a b"]`},
		{"label value", baseONNX, func(m *Manifest) { m.Labels = map[string]string{"a": "-x"} }, "labels.a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.base()
			tt.edit(m)
			err := m.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if _, err := m.Canonical(); err != nil {
					t.Fatalf("Canonical of a valid manifest: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate succeeded, want an error at %q", tt.field)
			}
			if !errclass.Is(err, errclass.InvalidArgument) {
				t.Errorf("class %s, want invalid_argument (%v)", errclass.ClassOf(err), err)
			}
			if f := errclass.FieldOf(err); f != tt.field {
				t.Errorf("field %q, want %q (%v)", f, tt.field, err)
			}
			if _, err := m.Canonical(); err == nil {
				t.Errorf("Canonical of an invalid manifest succeeded")
			}
		})
	}
	var nilManifest *Manifest
	if err := nilManifest.Validate(); err == nil {
		t.Errorf("nil manifest validated")
	}
}

func TestValidateRow(t *testing.T) {
	schema := Schema{Inputs: []Field{
		{Name: "i8", Type: TypeInt8, Nullable: true},
		{Name: "u64", Type: TypeUint64, Nullable: true},
		{Name: "i64", Type: TypeInt64, Nullable: true, Categories: []string{"-9223372036854775808", "9223372036854775807", "5"}},
		{Name: "f16", Type: TypeFloat16, Nullable: true},
		{Name: "f32", Type: TypeFloat32, Nullable: true, Min: ptr(-1), Max: ptr(1)},
		{Name: "f64", Type: TypeFloat64, Nullable: true},
		{Name: "b", Type: TypeBool, Nullable: true},
		{Name: "s", Type: TypeString, Nullable: true, Categories: []string{"x", "y"}},
		{Name: "free text", Type: TypeString, Nullable: true},
		{Name: "img", Type: TypeUint8, Nullable: true, Shape: []int{2, 3}},
		{Name: "seq", Type: TypeInt32, Nullable: true, Shape: []int{-1, 2}},
		{Name: "req", Type: TypeString},
	}}
	n := func(s string) json.Number { return json.Number(s) }
	tests := []struct {
		name  string
		row   map[string]any
		field string // "" = valid
	}{
		{"minimal", map[string]any{"req": "r"}, ""},
		{"missing required", map[string]any{"i8": 1}, "req"},
		{"null required", map[string]any{"req": nil}, "req"},
		{"unknown key", map[string]any{"req": "r", "zz": 1}, "zz"},
		{"unknown key quoted", map[string]any{"req": "r", "a.b": 1}, `["a.b"]`},
		{"nulls ok", map[string]any{"req": "r", "i8": nil, "img": nil}, ""},
		{"int8 range ok", map[string]any{"req": "r", "i8": n("-128")}, ""},
		{"int8 overflow", map[string]any{"req": "r", "i8": n("128")}, "i8"},
		{"int8 go int overflow", map[string]any{"req": "r", "i8": 300}, "i8"},
		{"int8 fraction", map[string]any{"req": "r", "i8": 1.5}, "i8"},
		{"int8 integral float ok", map[string]any{"req": "r", "i8": n("1.0e1")}, ""},
		{"int8 string", map[string]any{"req": "r", "i8": "1"}, "i8"},
		{"uint64 max ok", map[string]any{"req": "r", "u64": n("18446744073709551615")}, ""},
		{"uint64 max go ok", map[string]any{"req": "r", "u64": uint64(1<<64 - 1)}, ""},
		{"uint64 overflow", map[string]any{"req": "r", "u64": n("18446744073709551616")}, "u64"},
		{"uint64 negative", map[string]any{"req": "r", "u64": n("-1")}, "u64"},
		{"uint64 negative zero ok", map[string]any{"req": "r", "u64": n("-0")}, ""},
		{"int64 category exact ok", map[string]any{"req": "r", "i64": n("9223372036854775807")}, ""},
		{"int64 category min ok", map[string]any{"req": "r", "i64": int64(-1 << 63)}, ""},
		{"int64 not a category", map[string]any{"req": "r", "i64": n("9223372036854775806")}, "i64"},
		{"int64 category from float ok", map[string]any{"req": "r", "i64": 5.0}, ""},
		{"float16 range", map[string]any{"req": "r", "f16": 70000.0}, "f16"},
		{"float16 ok", map[string]any{"req": "r", "f16": n("-65504")}, ""},
		{"float32 below min", map[string]any{"req": "r", "f32": n("-1.5")}, "f32"},
		{"float32 above max", map[string]any{"req": "r", "f32": float32(2)}, "f32"},
		{"float64 NaN", map[string]any{"req": "r", "f64": nan()}, "f64"},
		{"float64 invalid literal", map[string]any{"req": "r", "f64": n("0x10")}, "f64"},
		{"float64 NaN literal", map[string]any{"req": "r", "f64": n("NaN")}, "f64"},
		{"float64 big ok", map[string]any{"req": "r", "f64": n("1.7e308")}, ""},
		{"bool ok", map[string]any{"req": "r", "b": true}, ""},
		{"bool as number", map[string]any{"req": "r", "b": 1}, "b"},
		{"category ok", map[string]any{"req": "r", "s": "y"}, ""},
		{"category bad", map[string]any{"req": "r", "s": "z"}, "s"},
		{"string as number", map[string]any{"req": "r", "free text": 1.0}, `["free text"]`},
		{"string invalid utf8", map[string]any{"req": "r", "free text": "\xff"}, `["free text"]`},
		{"nested ok", map[string]any{"req": "r", "img": []any{[]any{0, 1, 2}, []any{3, 4, 255}}}, ""},
		{"flat ok", map[string]any{"req": "r", "img": []any{0, 1, 2, 3, 4, 5}}, ""},
		{"flat wrong count", map[string]any{"req": "r", "img": []any{0, 1, 2}}, "img"},
		{"nested wrong count", map[string]any{"req": "r", "img": []any{[]any{0, 1}, []any{3, 4}}}, "img[0]"},
		{"nested wrong rows", map[string]any{"req": "r", "img": []any{[]any{0, 1, 2}}}, "img"},
		{"nested element type", map[string]any{"req": "r", "img": []any{[]any{0, 1, 2}, []any{3, 4, 256}}}, "img[1][2]"},
		{"nested mixed", map[string]any{"req": "r", "img": []any{[]any{0, 1, 2}, 3}}, "img[1]"},
		{"flat element type", map[string]any{"req": "r", "img": []any{0, 1, 2, 3, 4, "5"}}, "img[5]"},
		{"flat null element", map[string]any{"req": "r", "img": []any{0, 1, 2, 3, 4, nil}}, "img[5]"},
		{"scalar for shaped", map[string]any{"req": "r", "img": 1}, "img"},
		{"array for scalar", map[string]any{"req": "r", "i8": []any{1}}, "i8"},
		{"too deep", map[string]any{"req": "r", "img": []any{[]any{[]any{0}, 1, 2}, []any{3, 4, 5}}}, "img[0][0]"},
		{"dynamic flat ok", map[string]any{"req": "r", "seq": []any{1, 2, 3, 4}}, ""},
		{"dynamic flat empty ok", map[string]any{"req": "r", "seq": []any{}}, ""},
		{"dynamic flat odd", map[string]any{"req": "r", "seq": []any{1, 2, 3}}, "seq"},
		{"dynamic nested ok", map[string]any{"req": "r", "seq": []any{[]any{1, 2}, []any{3, 4}, []any{5, 6}}}, ""},
		{"dynamic nested wrong inner", map[string]any{"req": "r", "seq": []any{[]any{1, 2}, []any{3}}}, "seq[1]"},
		{"object value", map[string]any{"req": "r", "f64": map[string]any{}}, "f64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateRow(schema, tt.row)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("ValidateRow: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateRow succeeded, want an error at %q", tt.field)
			}
			if f := errclass.FieldOf(err); f != tt.field || !errclass.Is(err, errclass.InvalidArgument) {
				t.Errorf("field %q class %s, want %q invalid_argument (%v)", f, errclass.ClassOf(err), tt.field, err)
			}
		})
	}
}

func TestValidateRowInvalidSchema(t *testing.T) {
	schema := Schema{Inputs: []Field{{Name: "a", Type: TypeInt8, Shape: []int{-1, 0}}, {Name: "b", Type: "nope"}}}
	for _, row := range []map[string]any{
		{"a": []any{1}, "b": 1}, {"a": []any{}, "b": 1}, {"a": []any{[]any{1}}}, {"b": "x"},
	} {
		_ = ValidateRow(schema, row) // must not panic
	}
	if err := ValidateRow(schema, map[string]any{"a": []any{}, "b": 1}); errclass.FieldOf(err) != "b" {
		t.Errorf("unknown type: %v, want an error at b", err)
	}
}

func TestNames(t *testing.T) {
	tests := []struct {
		s  string
		ok bool
	}{
		{"a", true}, {"0", true}, {"iris-v1.2_b", true}, {strings.Repeat("a", 63), true},
		{"", false}, {strings.Repeat("a", 64), false}, {"A", false}, {"-a", false}, {"a-", false},
		{"a.", false}, {"_a", false}, {"a b", false}, {"a/b", false}, {"é", false}, {"a\n", false},
	}
	for _, tt := range tests {
		if got := ValidName(tt.s); got != tt.ok {
			t.Errorf("ValidName(%q) = %v, want %v", tt.s, got, tt.ok)
		}
		err := CheckName("spec.name", tt.s)
		if (err == nil) != tt.ok {
			t.Errorf("CheckName(%q) = %v, want ok=%v", tt.s, err, tt.ok)
		}
		if err != nil && (errclass.FieldOf(err) != "spec.name" || !errclass.Is(err, errclass.InvalidArgument) ||
			!strings.Contains(err.Error(), "spec.name") || !strings.Contains(err.Error(), quoteForTest(tt.s))) {
			t.Errorf("CheckName(%q) error %v does not name the field and value", tt.s, err)
		}
	}
}

func quoteForTest(s string) string { b, _ := json.Marshal(s); return strings.Trim(string(b), `"`) }

func TestDataType(t *testing.T) {
	tests := []struct {
		t                       DataType
		valid, numeric, integer bool
	}{
		{TypeBool, true, false, false}, {TypeString, true, false, false},
		{TypeInt8, true, true, true}, {TypeInt64, true, true, true}, {TypeUint8, true, true, true}, {TypeUint64, true, true, true},
		{TypeFloat16, true, true, false}, {TypeFloat32, true, true, false}, {TypeFloat64, true, true, false},
		{"", false, false, false}, {"int", false, false, false}, {"FLOAT32", false, false, false},
	}
	for _, tt := range tests {
		if tt.t.Valid() != tt.valid || tt.t.IsNumeric() != tt.numeric || tt.t.IsInteger() != tt.integer {
			t.Errorf("%q: Valid %v IsNumeric %v IsInteger %v, want %v %v %v", tt.t,
				tt.t.Valid(), tt.t.IsNumeric(), tt.t.IsInteger(), tt.valid, tt.numeric, tt.integer)
		}
	}
	for _, dt := range DataTypes() {
		if !dt.Valid() {
			t.Errorf("DataTypes lists invalid %q", dt)
		}
	}
}

func TestApplyDefaults(t *testing.T) {
	m := baseExec()
	m.Models = append(m.Models, ModelRef{Name: "b", Version: 1, Path: "x/b.bin"})
	m.ApplyDefaults()
	if m.Models[0].Path != "iris" || m.Models[1].Path != "x/b.bin" {
		t.Errorf("exec model paths %q %q", m.Models[0].Path, m.Models[1].Path)
	}
	if m.Scoring.TimeoutMs != DefaultTimeoutMs || m.Scoring.Files[0].Mode != DefaultFileMode || m.Scoring.Files[1].Mode != 0o755 {
		t.Errorf("defaults not applied: %+v", m.Scoring)
	}
	o := baseONNX()
	o.ApplyDefaults()
	if o.Models[0].Path != "iris.onnx" {
		t.Errorf("onnx model path %q", o.Models[0].Path)
	}
}

func TestCanonicalNumbers(t *testing.T) {
	tests := []struct{ in, want string }{
		{"0", "0"}, {"-0", "0"}, {"-0.0", "0"}, {"1.0", "1"}, {"1e2", "100"}, {"1E+2", "100"},
		{"0.1", "0.1"}, {"1.5e300", "1.5e+300"}, {"1e19", "10000000000000000000"},
		{"18446744073709551615", "18446744073709551615"}, {"-9223372036854775808", "-9223372036854775808"},
		{"123456789012345678901234", "1.2345678901234569e+23"}, {"1e-7", "1e-07"},
	}
	for _, tt := range tests {
		got, ok := canonNumber(tt.in)
		if !ok || string(got) != tt.want {
			t.Errorf("canonNumber(%s) = %s %v, want %s", tt.in, got, ok, tt.want)
		}
		if again, _ := canonNumber(string(got)); again != got {
			t.Errorf("canonNumber not idempotent on %s: %s", got, again)
		}
		if !isJSONNumber(string(got)) {
			t.Errorf("canonNumber(%s) = %s is not a JSON number", tt.in, got)
		}
	}
}

func TestCanonicalProgrammatic(t *testing.T) {
	m := baseONNX()
	m.SampleData[0]["n"] = int8(3)
	m.SampleData[0]["x"] = float32(1.5)
	a, err := m.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	m.SampleData[0]["n"] = json.Number("3.0")
	m.SampleData[0]["x"] = 1.5
	b, err := m.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("same values in different Go types give different canonical forms:\n%s\n%s", a, b)
	}
	m.SampleData[0]["x"] = nan()
	if _, err := m.Canonical(); !errclass.Is(err, errclass.InvalidArgument) || errclass.FieldOf(err) != "sampleData[0].x" {
		t.Errorf("Canonical with NaN: %v", err)
	}
}

func BenchmarkParse(b *testing.B) {
	data := readFile(b, filepath.Join("testdata", "valid", "exec-python.json"))
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDigest(b *testing.B) {
	m, err := Parse(readFile(b, filepath.Join("testdata", "valid", "exec-python.json")))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := m.Digest(); err != nil {
			b.Fatal(err)
		}
	}
}
