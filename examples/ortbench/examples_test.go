package ortbench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/mlfleet/mlfleet/images/onnx"
)

// testdataDir holds the example models (relative to this package).
const testdataDir = "../testdata"

// example is one example model with the inputs of its NAME.inputs.json.
type example struct {
	name   string
	path   string // of the .onnx file
	inputs []column
}

// column is one model input: rows along its first dimension. Exactly one of
// the typed slices is set, by dtype.
type column struct {
	name  string
	dtype string // float32, float64, int64, string
	shape []int  // shape[0] is the number of rows
	f32   []float32
	f64   []float64
	i64   []int64
	str   []string
}

func (c *column) rows() int { return c.shape[0] }

// rowLen is the number of elements of one row.
func (c *column) rowLen() int {
	n := 1
	for _, d := range c.shape[1:] {
		n *= d
	}
	return n
}

// exampleNames lists the models of testdataDir that have inputs, sorted.
func exampleNames(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testdataDir, "*.inputs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".inputs.json")
		if _, err := os.Stat(filepath.Join(testdataDir, name+".onnx")); err == nil {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		t.Fatalf("no example models under %s", testdataDir)
	}
	sort.Strings(names)
	return names
}

// loadExample reads NAME.inputs.json (see ../testdata/README.md).
func loadExample(name string) (*example, error) {
	path := filepath.Join(testdataDir, name+".inputs.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("example %s: %w", name, err)
	}
	var doc struct {
		Inputs []struct {
			Name  string            `json:"name"`
			DType string            `json:"dtype"`
			Shape []int             `json:"shape"`
			Data  []json.RawMessage `json:"data"`
		} `json:"inputs"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("example %s: %s: %w", name, path, err)
	}
	ex := &example{name: name, path: filepath.Join(testdataDir, name+".onnx")}
	for i, in := range doc.Inputs {
		c := column{name: in.Name, dtype: in.DType, shape: in.Shape}
		if len(c.shape) == 0 || c.shape[0] < 1 {
			return nil, fmt.Errorf("example %s: %s: inputs[%d].shape %v has no rows", name, path, i, in.Shape)
		}
		if n := c.rows() * c.rowLen(); n != len(in.Data) {
			return nil, fmt.Errorf("example %s: %s: inputs[%d].shape %v wants %d values, data has %d", name, path, i, in.Shape, n, len(in.Data))
		}
		for j, raw := range in.Data {
			if err := c.appendValue(raw); err != nil {
				return nil, fmt.Errorf("example %s: %s: inputs[%d].data[%d]: %w", name, path, i, j, err)
			}
		}
		ex.inputs = append(ex.inputs, c)
	}
	if len(ex.inputs) == 0 {
		return nil, fmt.Errorf("example %s: %s: inputs is empty", name, path)
	}
	return ex, nil
}

func (c *column) appendValue(raw json.RawMessage) error {
	switch c.dtype {
	case "float32", "float64":
		var f float64
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			switch s {
			case "NaN":
				f = math.NaN()
			case "Inf":
				f = math.Inf(1)
			case "-Inf":
				f = math.Inf(-1)
			default:
				return fmt.Errorf("bad float %q", s)
			}
		} else if err := json.Unmarshal(raw, &f); err != nil {
			return err
		}
		if c.dtype == "float32" {
			c.f32 = append(c.f32, float32(f))
		} else {
			c.f64 = append(c.f64, f)
		}
	case "int64":
		v, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil {
			return err
		}
		c.i64 = append(c.i64, v)
	case "string":
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return err
		}
		c.str = append(c.str, s)
	default:
		return fmt.Errorf("dtype %q is not one of float32, float64, int64, string", c.dtype)
	}
	return nil
}

// tile returns the column with n rows: row i is the example's row i mod rows.
func (c *column) tile(n int) column {
	out := column{name: c.name, dtype: c.dtype, shape: append([]int{n}, c.shape[1:]...)}
	k, src := c.rowLen(), c.rows()
	for i := range n {
		lo, hi := (i%src)*k, (i%src+1)*k
		switch {
		case c.f32 != nil:
			out.f32 = append(out.f32, c.f32[lo:hi]...)
		case c.f64 != nil:
			out.f64 = append(out.f64, c.f64[lo:hi]...)
		case c.i64 != nil:
			out.i64 = append(out.i64, c.i64[lo:hi]...)
		default:
			out.str = append(out.str, c.str[lo:hi]...)
		}
	}
	return out
}

// feed is the example's inputs tiled to n rows.
func (ex *example) feed(n int) []column {
	out := make([]column, len(ex.inputs))
	for i := range ex.inputs {
		out[i] = ex.inputs[i].tile(n)
	}
	return out
}

// engineFeed wraps columns (not copied) as the engine's inputs.
func engineFeed(cols []column) map[string]*onnx.Tensor {
	m := make(map[string]*onnx.Tensor, len(cols))
	for _, c := range cols {
		switch {
		case c.f32 != nil:
			m[c.name] = onnx.FromFloat32(c.f32, c.shape...)
		case c.f64 != nil:
			m[c.name] = onnx.FromFloat64(c.f64, c.shape...)
		case c.i64 != nil:
			m[c.name] = onnx.FromInt64(c.i64, c.shape...)
		default:
			m[c.name] = onnx.FromStrings(c.str, c.shape...)
		}
	}
	return m
}

// engineSession loads the example's model in the engine.
func engineSession(ex *example) (*onnx.Session, error) {
	b, err := os.ReadFile(ex.path)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", ex.name, err)
	}
	m, err := onnx.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("model %s: decode %s: %w", ex.name, ex.path, err)
	}
	s, err := onnx.NewSession(m)
	if err != nil {
		return nil, fmt.Errorf("model %s: new session: %w", ex.name, err)
	}
	return s, nil
}

// value is an output in a form both engines' outputs convert to: numbers
// (all float and integer types), strings, or a sequence of maps (ZipMap)
// with keys printed as text.
type value struct {
	shape []int // nil for sequences
	nums  []float64
	ints  bool // nums came from an integer type: compare exactly
	strs  []string
	maps  []map[string]float64
}

// engineValue converts an engine output.
func engineValue(t *onnx.Tensor) (value, error) {
	switch t.Kind {
	case onnx.KindTensor:
		v := value{shape: slices.Clone(t.Shape)}
		switch d := t.Data.(type) {
		case []string:
			v.strs = d
		case []float32, []float64:
			nums, err := t.AsFloat64s()
			if err != nil {
				return value{}, err
			}
			v.nums = nums
		case []int64, []int32, []int16, []int8, []uint8, []uint16, []uint32, []uint64:
			ints, err := t.AsInt64s()
			if err != nil {
				return value{}, err
			}
			for _, x := range ints {
				v.nums = append(v.nums, float64(x))
			}
			v.ints = true
		case []bool:
			for _, x := range d {
				f := 0.0
				if x {
					f = 1
				}
				v.nums = append(v.nums, f)
			}
			v.ints = true
		default:
			return value{}, fmt.Errorf("element type %s is not compared", t.DType)
		}
		return v, nil
	case onnx.KindSequence:
		v := value{maps: make([]map[string]float64, 0, len(t.Seq))}
		for i, e := range t.Seq {
			if e.Kind != onnx.KindMap {
				return value{}, fmt.Errorf("sequence element %d is not a map", i)
			}
			if e.Keys == nil || e.Values == nil {
				return value{}, fmt.Errorf("sequence element %d is a map without keys or values", i)
			}
			vals, err := e.Values.AsFloat64s()
			if err != nil {
				return value{}, fmt.Errorf("sequence element %d: %w", i, err)
			}
			keys := e.Keys.Strings()
			if keys == nil {
				ints, err := e.Keys.AsInt64s()
				if err != nil {
					return value{}, fmt.Errorf("sequence element %d: %w", i, err)
				}
				for _, k := range ints {
					keys = append(keys, strconv.FormatInt(k, 10))
				}
			}
			if len(keys) != len(vals) {
				return value{}, fmt.Errorf("sequence element %d: %d keys, %d values", i, len(keys), len(vals))
			}
			m := make(map[string]float64, len(keys))
			for j, k := range keys {
				m[k] = vals[j]
			}
			v.maps = append(v.maps, m)
		}
		return v, nil
	}
	return value{}, fmt.Errorf("kind %d is not compared", t.Kind)
}

// tolerance of the comparison: absolute up to 1, relative above.
const tolerance = 1e-4

func near(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	if a == b {
		return true
	}
	return math.Abs(a-b) <= tolerance*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

// agree reports the first difference between two values of output name.
func agree(name string, want, got value) error {
	switch {
	case want.maps != nil || got.maps != nil:
		if len(want.maps) != len(got.maps) {
			return fmt.Errorf("output %s: %d maps vs %d", name, len(want.maps), len(got.maps))
		}
		for i := range want.maps {
			if len(want.maps[i]) != len(got.maps[i]) {
				return fmt.Errorf("output %s[%d]: %d keys vs %d", name, i, len(want.maps[i]), len(got.maps[i]))
			}
			for k, w := range want.maps[i] {
				g, ok := got.maps[i][k]
				if !ok || !near(w, g) {
					return fmt.Errorf("output %s[%d][%s]: %v vs %v", name, i, k, w, g)
				}
			}
		}
		return nil
	case !slices.Equal(want.shape, got.shape):
		return fmt.Errorf("output %s: shape %v vs %v", name, want.shape, got.shape)
	case want.strs != nil || got.strs != nil:
		if !slices.Equal(want.strs, got.strs) {
			return fmt.Errorf("output %s: strings %q vs %q", name, want.strs, got.strs)
		}
		return nil
	}
	if len(want.nums) != len(got.nums) {
		return fmt.Errorf("output %s: %d values vs %d", name, len(want.nums), len(got.nums))
	}
	for i := range want.nums {
		if (want.ints || got.ints) && want.nums[i] != got.nums[i] || !near(want.nums[i], got.nums[i]) {
			return fmt.Errorf("output %s[%d]: %v vs %v", name, i, want.nums[i], got.nums[i])
		}
	}
	return nil
}

// runEngine runs the session once and converts its outputs.
func runEngine(s *onnx.Session, in map[string]*onnx.Tensor) (map[string]value, error) {
	out, err := s.Run(context.Background(), in)
	if err != nil {
		return nil, err
	}
	vals := make(map[string]value, len(out))
	for name, t := range out {
		v, err := engineValue(t)
		if err != nil {
			return nil, fmt.Errorf("output %s: %w", name, err)
		}
		vals[name] = v
	}
	return vals, nil
}

// agreeAll compares every output of want with got.
func agreeAll(want, got map[string]value) error {
	var errs []string
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		g, ok := got[name]
		if !ok {
			errs = append(errs, fmt.Sprintf("output %s is missing", name))
			continue
		}
		if err := agree(name, want[name], g); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(got) != len(want) {
		errs = append(errs, fmt.Sprintf("%d outputs vs %d", len(want), len(got)))
	}
	if errs != nil {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// sampleFeatures returns the keys of the first row of NAME.sample.json in
// file order (the schema order of the model's features), and the rows.
func sampleFeatures(name string) ([]string, []map[string]any, error) {
	path := filepath.Join(testdataDir, name+".sample.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("example %s: %w", name, err)
	}
	var rows []map[string]any
	if err := json.Unmarshal(b, &rows); err != nil || len(rows) == 0 {
		return nil, nil, fmt.Errorf("example %s: %s is not a non-empty list of rows (%v)", name, path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	var keys []string
	depth := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("example %s: %s: %w", name, path, err)
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				depth++
			} else {
				depth--
			}
			if d == '}' && depth == 1 {
				return keys, rows, nil
			}
			continue
		}
		if s, ok := tok.(string); ok && depth == 2 {
			keys = append(keys, s)
			var skip any
			if err := dec.Decode(&skip); err != nil {
				return nil, nil, fmt.Errorf("example %s: %s: %w", name, path, err)
			}
		}
	}
}
