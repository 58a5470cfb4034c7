package onnx

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// nodeTestDir is where Debian's libonnx-testdata installs the ONNX backend
// node tests; MLFLEET_ONNX_TESTDATA overrides it.
func nodeTestDir() string {
	if d := os.Getenv("MLFLEET_ONNX_TESTDATA"); d != "" {
		return d
	}
	return "/usr/share/libonnx-testdata/data/node"
}

type nodeResult struct {
	name   string
	ops    []string
	status string // "pass", "fail", "unsupported"
	reason string // grouping key
	detail string
}

func loadKnownFailures(t *testing.T) map[string]string {
	f, err := os.Open(filepath.Join("testdata", "known_failures.txt"))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	known := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, reason, _ := strings.Cut(line, " ")
		known[name] = strings.TrimSpace(reason)
	}
	return known
}

func TestNodeSuite(t *testing.T) {
	dir := nodeTestDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.Getenv("MLFLEET_REQUIRE_ONNX_TESTDATA") == "1" {
			t.Fatalf("ONNX node tests required but not readable at %s: %v (apt-get install libonnx-testdata)", dir, err)
		}
		t.Skipf("ONNX node tests not installed at %s: %v", dir, err)
	}
	known := loadKnownFailures(t)
	var results []nodeResult
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		results = append(results, runNodeTest(filepath.Join(dir, e.Name())))
	}
	var pass, fail, unsup int
	groups := map[string][]string{}
	perOp := map[string]*[3]int{}
	var unexpected []string
	for _, r := range results {
		for _, op := range r.ops {
			c := perOp[op]
			if c == nil {
				c = &[3]int{}
				perOp[op] = c
			}
			switch r.status {
			case "pass":
				c[0]++
			case "fail":
				c[1]++
			default:
				c[2]++
			}
		}
		switch r.status {
		case "pass":
			pass++
			if _, ok := known[r.name]; ok {
				t.Logf("%s passes but is listed in testdata/known_failures.txt; remove it", r.name)
			}
		case "fail":
			fail++
			groups[r.reason] = append(groups[r.reason], r.name)
			if _, ok := known[r.name]; !ok {
				unexpected = append(unexpected, fmt.Sprintf("%s: %s: %s", r.name, r.reason, r.detail))
			}
		default:
			unsup++
			groups[r.reason] = append(groups[r.reason], r.name)
		}
	}
	summary := fmt.Sprintf("onnx node tests: %d passed, %d failed, %d unsupported", pass, fail, unsup)
	fmt.Println(summary)
	t.Log(summary)
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if len(groups[keys[i]]) != len(groups[keys[j]]) {
			return len(groups[keys[i]]) > len(groups[keys[j]])
		}
		return keys[i] < keys[j]
	})
	for _, k := range keys {
		names := groups[k]
		show := names
		if len(show) > 6 && !testing.Verbose() {
			show = append(show[:6:6], "...")
		}
		t.Logf("%4d  %s: %s", len(names), k, strings.Join(show, " "))
	}
	if testing.Verbose() {
		ops := make([]string, 0, len(perOp))
		for op := range perOp {
			ops = append(ops, op)
		}
		sort.Strings(ops)
		for _, op := range ops {
			c := perOp[op]
			t.Logf("op %-28s %3d passed %3d failed %3d unsupported", op, c[0], c[1], c[2])
		}
	}
	for _, u := range unexpected {
		t.Errorf("node test failed (not in testdata/known_failures.txt): %s", u)
	}
}

func runNodeTest(dir string) (r nodeResult) {
	r.name = filepath.Base(dir)
	defer func() {
		if p := recover(); p != nil {
			r.status, r.reason, r.detail = "fail", "panic", fmt.Sprint(p)
		}
	}()
	b, err := os.ReadFile(filepath.Join(dir, "model.onnx"))
	if err != nil {
		return nodeResult{name: r.name, status: "fail", reason: "load error", detail: err.Error()}
	}
	m, err := Decode(b)
	if err != nil {
		r.status, r.reason, r.detail = "fail", "load error: decode", err.Error()
		return r
	}
	seen := map[string]bool{}
	for _, n := range m.Graph.Nodes {
		if !seen[n.OpType] {
			seen[n.OpType] = true
			r.ops = append(r.ops, n.OpType)
		}
	}
	s, err := NewSession(m)
	if err != nil {
		var ue *UnsupportedError
		if errors.As(err, &ue) {
			r.status = "unsupported"
			if ue.Detail != "" {
				r.reason = fmt.Sprintf("unsupported use of %s", ue.Op)
			} else {
				r.reason = fmt.Sprintf("unsupported op %s", ue.Op)
			}
			r.detail = err.Error()
			return r
		}
		r.status, r.reason, r.detail = "fail", "load error", err.Error()
		return r
	}
	sets, _ := filepath.Glob(filepath.Join(dir, "test_data_set_*"))
	if len(sets) == 0 {
		r.status, r.reason = "fail", "load error: no test data"
		return r
	}
	var inNames []string
	inits := map[string]bool{}
	for _, in := range m.Graph.Initializers {
		inits[in.Name] = true
	}
	var inTypes []*TypeInfo
	for _, in := range m.Graph.Inputs {
		if !inits[in.Name] {
			inNames = append(inNames, in.Name)
			inTypes = append(inTypes, in.Type)
		}
	}
	for _, set := range sets {
		inputs := map[string]*Tensor{}
		for i, name := range inNames {
			p := filepath.Join(set, fmt.Sprintf("input_%d.pb", i))
			tb, err := os.ReadFile(p)
			if errors.Is(err, os.ErrNotExist) {
				continue // an omitted optional input
			}
			if err != nil {
				r.status, r.reason, r.detail = "fail", "load error: test data", err.Error()
				return r
			}
			v, err := decodeTestValue(tb, inTypes[i])
			if err != nil {
				r.status, r.reason, r.detail = "fail", "load error: test data", fmt.Sprintf("%s: %v", p, err)
				return r
			}
			inputs[name] = v
		}
		// Run twice: the second run reuses recycled buffers, which exposes
		// kernels that keep or share buffers they should not.
		var got map[string]*Tensor
		for rep := 0; rep < 2; rep++ {
			if got, err = s.Run(context.Background(), inputs); err != nil {
				r.status, r.reason, r.detail = "fail", "run error", err.Error()
				return r
			}
		}
		for i, o := range m.Graph.Outputs {
			p := filepath.Join(set, fmt.Sprintf("output_%d.pb", i))
			tb, err := os.ReadFile(p)
			if err != nil {
				r.status, r.reason, r.detail = "fail", "load error: test data", err.Error()
				return r
			}
			want, err := decodeTestValue(tb, o.Type)
			if err != nil {
				r.status, r.reason, r.detail = "fail", "load error: test data", fmt.Sprintf("%s: %v", p, err)
				return r
			}
			if msg := compareValues(got[o.Name], want); msg != "" {
				r.status, r.reason, r.detail = "fail", "wrong result", fmt.Sprintf("output %q: %s", o.Name, msg)
				return r
			}
		}
	}
	r.status = "pass"
	return r
}

// decodeTestValue decodes a test data file: a TensorProto, or a
// SequenceProto of tensors when the declared type is a sequence.
func decodeTestValue(b []byte, typ *TypeInfo) (*Tensor, error) {
	if typ == nil || typ.Kind != KindSequence || typ.Optional {
		if typ != nil && typ.Optional {
			return nil, fmt.Errorf("optional values are not supported")
		}
		tp, err := DecodeTensor(b)
		if err != nil {
			return nil, err
		}
		return tp.Tensor, nil
	}
	seq := NewSequence()
	w := wire{b: b}
	for !w.done() {
		f, typ, err := w.tag()
		if err != nil {
			return nil, err
		}
		if f != 3 {
			if f == 5 || f == 6 || f == 7 {
				return nil, fmt.Errorf("nested sequences, maps and optionals are not supported")
			}
			if err := w.skip(typ); err != nil {
				return nil, err
			}
			continue
		}
		sub, err := w.bytesField(f, typ)
		if err != nil {
			return nil, err
		}
		tp, err := DecodeTensor(sub)
		if err != nil {
			return nil, err
		}
		seq.Seq = append(seq.Seq, tp.Tensor)
	}
	return seq, nil
}

func compareValues(got, want *Tensor) string {
	if got == nil {
		return "missing"
	}
	if want.Kind == KindSequence {
		if got.Kind != KindSequence {
			return fmt.Sprintf("got a %s, want a sequence", kindName(got.Kind))
		}
		if len(got.Seq) != len(want.Seq) {
			return fmt.Sprintf("sequence of %d, want %d", len(got.Seq), len(want.Seq))
		}
		for i := range want.Seq {
			if msg := compareTensors(got.Seq[i], want.Seq[i]); msg != "" {
				return fmt.Sprintf("element %d: %s", i, msg)
			}
		}
		return ""
	}
	return compareTensors(got, want)
}

// compareTensors compares like ONNX's backend tests: floats with rtol 1e-3
// and atol 1e-5 (NaN equals NaN), everything else exactly.
func compareTensors(got, want *Tensor) string {
	if got == nil {
		return "missing"
	}
	if got.Kind != KindTensor {
		return fmt.Sprintf("got a %s, want a tensor", kindName(got.Kind))
	}
	if got.DType != want.DType {
		return fmt.Sprintf("type %s, want %s", got.DType, want.DType)
	}
	if !sameShape(got.Shape, want.Shape) {
		return fmt.Sprintf("shape %v, want %v", got.Shape, want.Shape)
	}
	if got.Len() != want.Len() {
		return fmt.Sprintf("%d elements, want %d", got.Len(), want.Len())
	}
	const rtol, atol = 1e-3, 1e-5
	closeF := func(g, w float64) bool {
		if math.IsNaN(w) {
			return math.IsNaN(g)
		}
		if math.IsInf(w, 0) {
			return g == w
		}
		return math.Abs(g-w) <= atol+rtol*math.Abs(w)
	}
	switch w := want.Data.(type) {
	case []float32:
		g := got.Data.([]float32)
		for i := range w {
			if !closeF(float64(g[i]), float64(w[i])) {
				return fmt.Sprintf("element %d is %v, want %v", i, g[i], w[i])
			}
		}
	case []float64:
		g := got.Data.([]float64)
		for i := range w {
			if !closeF(g[i], w[i]) {
				return fmt.Sprintf("element %d is %v, want %v", i, g[i], w[i])
			}
		}
	default:
		gs, ws := fmt.Sprint(got.Data), fmt.Sprint(want.Data)
		if gs != ws {
			if len(gs) > 200 {
				gs = gs[:200] + "..."
			}
			if len(ws) > 200 {
				ws = ws[:200] + "..."
			}
			return fmt.Sprintf("got %s, want %s", gs, ws)
		}
	}
	return ""
}

// TestNodeSuiteConcurrent runs every supported node test from several
// goroutines sharing one session, checking each result: buffers recycled by
// one run must never leak into another.
func TestNodeSuiteConcurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	dir := nodeTestDir()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Skipf("ONNX node tests not installed: %v", err)
	}
	known := loadKnownFailures(t)
	for _, e := range entries {
		if _, ok := known[e.Name()]; ok {
			continue
		}
		d := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(filepath.Join(d, "model.onnx"))
		if err != nil {
			continue
		}
		m, err := Decode(b)
		if err != nil {
			continue
		}
		s, err := NewSession(m)
		if err != nil {
			continue
		}
		inputs := map[string]*Tensor{}
		for i, info := range s.Inputs() {
			tb, err := os.ReadFile(filepath.Join(d, "test_data_set_0", fmt.Sprintf("input_%d.pb", i)))
			if err != nil {
				continue
			}
			v, err := decodeTestValue(tb, info.Type)
			if err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
			inputs[info.Name] = v
		}
		want := map[string]*Tensor{}
		for i, o := range m.Graph.Outputs {
			tb, err := os.ReadFile(filepath.Join(d, "test_data_set_0", fmt.Sprintf("output_%d.pb", i)))
			if err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
			v, err := decodeTestValue(tb, o.Type)
			if err != nil {
				t.Fatalf("%s: %v", e.Name(), err)
			}
			want[o.Name] = v
		}
		var wg sync.WaitGroup
		errs := make(chan string, 4)
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for it := 0; it < 3; it++ {
					got, err := s.Run(context.Background(), inputs)
					if err != nil {
						errs <- err.Error()
						return
					}
					for name, w := range want {
						if msg := compareValues(got[name], w); msg != "" {
							errs <- fmt.Sprintf("output %q: %s", name, msg)
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for msg := range errs {
			t.Errorf("%s: %s", e.Name(), msg)
			break
		}
	}
}
