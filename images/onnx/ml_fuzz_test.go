package onnx

// Fuzz targets for the ai.onnx.ml operators: model files are untrusted
// input, and the operators' Build functions are their parsers.

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// fuzzInputs makes small inputs for a graph from its declared types.
func fuzzInputs(s *Session) map[string]*Tensor {
	vals := []float32{0, 1.5, -2, float32(math.NaN()), 3, 0.25, 7, -0.5}
	feed := map[string]*Tensor{}
	for _, in := range s.Inputs() {
		shape := []int{2, 4}
		if in.Shape != nil {
			shape = make([]int, len(in.Shape))
			for i, d := range in.Shape {
				switch {
				case d < 0:
					shape[i] = 2
				case d > 64:
					shape[i] = 64
				default:
					shape[i] = d
				}
			}
		}
		n := shapeSize(shape)
		if n > 4096 {
			return nil
		}
		switch in.DType {
		case Int64:
			d := make([]int64, n)
			for i := range d {
				d[i] = int64(i % 5)
			}
			feed[in.Name] = FromInt64(d, shape...)
		case String:
			d := make([]string, n)
			for i := range d {
				d[i] = []string{"cold", "hot", "", "normal"}[i%4]
			}
			feed[in.Name] = FromStrings(d, shape...)
		case Float, Undefined:
			d := make([]float32, n)
			for i := range d {
				d[i] = vals[i%len(vals)]
			}
			feed[in.Name] = FromFloat32(d, shape...)
		default:
			return nil
		}
	}
	return feed
}

// FuzzMLModels decodes, plans and runs mutated example models: whatever
// the bytes, the engine must fail cleanly (no panic, no hang).
func FuzzMLModels(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(exampleDir, "*.onnx"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err == nil && len(b) < 8000 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		// A hang never returns: crash with every goroutine's stack instead.
		watchdog := time.AfterFunc(10*time.Second, func() {
			buf := make([]byte, 1<<20)
			panic("input hangs:\n" + string(buf[:runtime.Stack(buf, true)]))
		})
		defer watchdog.Stop()
		t0 := time.Now()
		m, err := Decode(b)
		if d := time.Since(t0); d > 2*time.Second {
			t.Fatalf("decode took %v", d)
		}
		if err != nil {
			return
		}
		t0 = time.Now()
		s, err := NewSession(m)
		if d := time.Since(t0); d > 2*time.Second {
			t.Fatalf("new session took %v", d)
		}
		if err != nil {
			return
		}
		feed := fuzzInputs(s)
		if feed == nil {
			return
		}
		start := time.Now()
		if _, err := s.Run(context.Background(), feed); err != nil && strings.Contains(err.Error(), "internal error") {
			t.Fatalf("run panicked: %v", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("run took %v", d)
		}
	})
}

// FuzzTreeEnsemble builds tree ensembles from arbitrary node tables (ids,
// modes, children, features, missing tracks) and runs them on rows with
// NaNs: building must reject bad tables and running must terminate.
func FuzzTreeEnsemble(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 1, 2, 0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0})
	f.Add([]byte{0, 0, 1, 0, 1, 1, 0, 1, 3, 2, 0, 0})                   // cycle
	f.Add([]byte{0, 0, 6, 3, 5, 2, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0}) // two trees
	f.Fuzz(func(t *testing.T, b []byte) {
		const rec = 6
		n := min(len(b)/rec, 64)
		if n == 0 {
			return
		}
		modes := []string{"LEAF", "BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ", "BRANCH_X"}
		var tree, node, feat, tr, fa, miss, wt, wn, wi []int64
		var md []string
		var vals, ww []float32
		for i := 0; i < n; i++ {
			r := b[i*rec : (i+1)*rec]
			tree = append(tree, int64(r[0]%3))
			node = append(node, int64(r[1]%16))
			md = append(md, modes[r[2]%8])
			feat = append(feat, int64(r[3]%5)-int64(r[3]/250))
			tr = append(tr, int64(r[4]%16))
			fa = append(fa, int64(r[5]%16))
			miss = append(miss, int64(r[2]/128))
			vals = append(vals, float32(r[4])/16)
			if md[i] == "LEAF" {
				wt, wn, wi, ww = append(wt, tree[i]), append(wn, node[i]), append(wi, int64(r[5]%3)), append(ww, float32(r[3])/10-5)
			}
		}
		attrs := []*Attribute{
			aInts("nodes_treeids", tree...), aInts("nodes_nodeids", node...), aInts("nodes_featureids", feat...),
			aStrings("nodes_modes", md...), aFloats("nodes_values", vals...), aInts("nodes_truenodeids", tr...),
			aInts("nodes_falsenodeids", fa...), aInts("nodes_missing_value_tracks_true", miss...),
		}
		x := FromFloat32([]float32{0.5, float32(math.NaN()), 3, -1, 9, 2, 0, 1, 1, 4}, 2, 5)
		reg := append(append([]*Attribute{}, attrs...), aInts("target_treeids", wt...), aInts("target_nodeids", wn...),
			aInts("target_ids", wi...), aFloats("target_weights", ww...), aInt("n_targets", 3),
			aString("aggregate_function", []string{"SUM", "AVERAGE", "MIN", "MAX"}[len(b)%4]))
		if _, err := runML(3, "TreeEnsembleRegressor", reg, 1, x); err != nil && strings.Contains(err.Error(), "internal error") {
			t.Fatalf("regressor panicked: %v", err)
		}
		cls := append(append([]*Attribute{}, attrs...), aInts("class_treeids", wt...), aInts("class_nodeids", wn...),
			aInts("class_ids", wi...), aFloats("class_weights", ww...), aInts("classlabels_int64s", []int64{0, 1, 2}[:2+len(b)%2]...))
		if _, err := runML(3, "TreeEnsembleClassifier", cls, 2, x); err != nil && strings.Contains(err.Error(), "internal error") {
			t.Fatalf("classifier panicked: %v", err)
		}
	})
}
