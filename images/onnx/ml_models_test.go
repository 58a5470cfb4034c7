package onnx

// Runs every model of examples/testdata (made by make_models.py from fitted
// scikit-learn estimators) and compares with scikit-learn's own predictions.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const exampleDir = "../../examples/testdata"

// jsonTensor is one tensor of a NAME.inputs.json / NAME.expected.json file.
type jsonTensor struct {
	Name  string            `json:"name"`
	DType string            `json:"dtype"`
	Shape []int             `json:"shape"`
	Data  []json.RawMessage `json:"data"`
}

func exampleModels(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(exampleDir, "*.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no models in %s", exampleDir)
	}
	var names []string
	for _, f := range files {
		names = append(names, strings.TrimSuffix(filepath.Base(f), ".onnx"))
	}
	sort.Strings(names)
	return names
}

func readJSONTensors(t testing.TB, path, key string) []jsonTensor {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string][]jsonTensor
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return doc[key]
}

// jsonFloat decodes a number or one of the strings "NaN", "Inf", "-Inf".
func jsonFloat(raw json.RawMessage) (float64, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		switch s {
		case "NaN":
			return math.NaN(), nil
		case "Inf":
			return math.Inf(1), nil
		case "-Inf":
			return math.Inf(-1), nil
		}
		return 0, fmt.Errorf("bad float %q", s)
	}
	var f float64
	err := json.Unmarshal(raw, &f)
	return f, err
}

func (jt jsonTensor) tensor() (*Tensor, error) {
	n := len(jt.Data)
	switch jt.DType {
	case "float32", "float64":
		f32 := make([]float32, n)
		f64 := make([]float64, n)
		for i, r := range jt.Data {
			v, err := jsonFloat(r)
			if err != nil {
				return nil, fmt.Errorf("%s[%d]: %w", jt.Name, i, err)
			}
			f32[i], f64[i] = float32(v), v
		}
		if jt.DType == "float64" {
			return FromFloat64(f64, jt.Shape...), nil
		}
		return FromFloat32(f32, jt.Shape...), nil
	case "int64":
		d := make([]int64, n)
		for i, r := range jt.Data {
			if err := json.Unmarshal(r, &d[i]); err != nil {
				return nil, fmt.Errorf("%s[%d]: %w", jt.Name, i, err)
			}
		}
		return FromInt64(d, jt.Shape...), nil
	case "string":
		d := make([]string, n)
		for i, r := range jt.Data {
			if err := json.Unmarshal(r, &d[i]); err != nil {
				return nil, fmt.Errorf("%s[%d]: %w", jt.Name, i, err)
			}
		}
		return FromStrings(d, jt.Shape...), nil
	}
	return nil, fmt.Errorf("%s: unknown dtype %q", jt.Name, jt.DType)
}

func loadExample(t testing.TB, name string) (*Session, map[string]*Tensor) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(exampleDir, name+".onnx"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Decode(b)
	if err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
	s, err := NewSession(m)
	if err != nil {
		t.Fatalf("session %s: %v", name, err)
	}
	inputs := map[string]*Tensor{}
	for _, jt := range readJSONTensors(t, filepath.Join(exampleDir, name+".inputs.json"), "inputs") {
		x, err := jt.tensor()
		if err != nil {
			t.Fatal(err)
		}
		inputs[jt.Name] = x
	}
	return s, inputs
}

// closeEnough compares to 1e-5, relative for values larger than 1.
func closeEnough(got, want float64) bool {
	if math.IsNaN(want) {
		return math.IsNaN(got)
	}
	return math.Abs(got-want) <= 1e-5*max(1, math.Abs(want))
}

func compareOutput(t *testing.T, want jsonTensor, got *Tensor) {
	t.Helper()
	if strings.HasPrefix(want.DType, "seq_map_") {
		compareZipMap(t, want, got)
		return
	}
	wt, err := want.tensor()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got.Shape) != fmt.Sprint(wt.Shape) {
		t.Fatalf("output %s: shape %v, want %v", want.Name, got.Shape, wt.Shape)
	}
	switch want.DType {
	case "float32", "float64":
		g, err := got.AsFloat64s()
		if err != nil {
			t.Fatalf("output %s: %v", want.Name, err)
		}
		w, _ := wt.AsFloat64s()
		if want.DType == "float64" {
			w = wt.Float64s()
		}
		bad, maxDiff := 0, 0.0
		for i := range w {
			if d := math.Abs(g[i] - w[i]); d > maxDiff {
				maxDiff = d
			}
			if !closeEnough(g[i], w[i]) {
				if bad < 5 {
					t.Errorf("output %s[%d] = %.9g, want %.9g (diff %.3g)", want.Name, i, g[i], w[i], g[i]-w[i])
				}
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("output %s: %d of %d values differ", want.Name, bad, len(w))
		}
		t.Logf("output %s: %d values, largest difference from scikit-learn %.3g", want.Name, len(w), maxDiff)
	case "int64":
		g, err := got.AsInt64s()
		if err != nil {
			t.Fatalf("output %s: %v", want.Name, err)
		}
		for i, w := range wt.Int64s() {
			if g[i] != w {
				t.Errorf("output %s[%d] = %d, want %d", want.Name, i, g[i], w)
			}
		}
	case "string":
		g := got.Strings()
		if g == nil {
			t.Fatalf("output %s has type %s, want string", want.Name, got.DType)
		}
		for i, w := range wt.Strings() {
			if g[i] != w {
				t.Errorf("output %s[%d] = %q, want %q", want.Name, i, g[i], w)
			}
		}
	}
}

func compareZipMap(t *testing.T, want jsonTensor, got *Tensor) {
	t.Helper()
	if got.Kind != KindSequence || len(got.Seq) != len(want.Data) {
		t.Fatalf("output %s: got %v, want a sequence of %d maps", want.Name, got, len(want.Data))
	}
	for r, raw := range want.Data {
		var row map[string]float64
		if err := json.Unmarshal(raw, &row); err != nil {
			t.Fatal(err)
		}
		m := got.Seq[r]
		if m.Kind != KindMap || m.Keys.Len() != len(row) {
			t.Fatalf("output %s[%d]: got %v, want a map of %d entries", want.Name, r, m, len(row))
		}
		vals := m.Values.Float32s()
		for i := 0; i < m.Keys.Len(); i++ {
			var k string
			if ks := m.Keys.Int64s(); ks != nil {
				k = strconv.FormatInt(ks[i], 10)
			} else {
				k = m.Keys.Strings()[i]
			}
			w, ok := row[k]
			if !ok {
				t.Errorf("output %s[%d]: unexpected key %s", want.Name, r, k)
				continue
			}
			if !closeEnough(float64(vals[i]), w) {
				t.Errorf("output %s[%d][%s] = %g, want %g", want.Name, r, k, vals[i], w)
			}
		}
	}
}

func TestExampleModels(t *testing.T) {
	for _, name := range exampleModels(t) {
		t.Run(name, func(t *testing.T) {
			s, inputs := loadExample(t, name)
			got, err := s.Run(context.Background(), inputs)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			wants := readJSONTensors(t, filepath.Join(exampleDir, name+".expected.json"), "outputs")
			if len(wants) != len(got) {
				t.Errorf("got %d outputs, want %d", len(got), len(wants))
			}
			for _, w := range wants {
				g, ok := got[w.Name]
				if !ok {
					t.Errorf("missing output %s", w.Name)
					continue
				}
				compareOutput(t, w, g)
			}
		})
	}
}

// TestExampleModelsConcurrent runs each session from several goroutines at
// once (run it with -race): kernels must not share mutable state.
func TestExampleModelsConcurrent(t *testing.T) {
	for _, name := range exampleModels(t) {
		t.Run(name, func(t *testing.T) {
			s, inputs := loadExample(t, name)
			want, err := s.Run(context.Background(), inputs)
			if err != nil {
				t.Fatal(err)
			}
			errs := make(chan error, 4)
			for g := 0; g < 4; g++ {
				go func() {
					for i := 0; i < 10; i++ {
						got, err := s.Run(context.Background(), inputs)
						if err != nil {
							errs <- err
							return
						}
						for k, w := range want {
							if !sameValue(got[k], w) {
								errs <- fmt.Errorf("output %s = %v, want %v", k, got[k], w)
								return
							}
						}
					}
					errs <- nil
				}()
			}
			for g := 0; g < 4; g++ {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// sameValue compares two values exactly, through sequences and maps.
func sameValue(a, b *Tensor) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Kind != b.Kind || a.DType != b.DType || !reflect.DeepEqual(a.Shape, b.Shape) || len(a.Seq) != len(b.Seq) {
		return false
	}
	if fmt.Sprintf("%v", a.Data) != fmt.Sprintf("%v", b.Data) { // %v prints NaN equal to NaN
		return false
	}
	for i := range a.Seq {
		if !sameValue(a.Seq[i], b.Seq[i]) {
			return false
		}
	}
	if a.Kind == KindMap {
		return sameValue(a.Keys, b.Keys) && sameValue(a.Values, b.Values)
	}
	return true
}
