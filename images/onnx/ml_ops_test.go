package onnx

// Unit tests of the ai.onnx.ml operators on hand-made single-node graphs.

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

func aInts(name string, v ...int64) *Attribute {
	return &Attribute{Name: name, Type: AttrInts, Ints: v}
}
func aFloats(name string, v ...float32) *Attribute {
	return &Attribute{Name: name, Type: AttrFloats, Floats: v}
}
func aStrings(name string, v ...string) *Attribute {
	a := &Attribute{Name: name, Type: AttrStrings}
	for _, s := range v {
		a.Strings = append(a.Strings, []byte(s))
	}
	return a
}
func aInt(name string, v int64) *Attribute { return &Attribute{Name: name, Type: AttrInt, I: v} }
func aFloat(name string, v float32) *Attribute {
	return &Attribute{Name: name, Type: AttrFloat, F: v}
}
func aString(name, v string) *Attribute {
	return &Attribute{Name: name, Type: AttrString, S: []byte(v)}
}

// mlModel makes a one-node ai.onnx.ml model with inputs X0.. and outputs Y0...
func mlModel(opset int, op string, attrs []*Attribute, nIn, nOut int) *Model {
	n := &Node{OpType: op, Domain: mlDomain, Name: op, Attributes: attrs}
	g := &Graph{Nodes: []*Node{n}}
	for i := 0; i < nIn; i++ {
		name := fmt.Sprintf("X%d", i)
		n.Inputs = append(n.Inputs, name)
		g.Inputs = append(g.Inputs, &ValueInfo{Name: name})
	}
	for i := 0; i < nOut; i++ {
		name := fmt.Sprintf("Y%d", i)
		n.Outputs = append(n.Outputs, name)
		g.Outputs = append(g.Outputs, &ValueInfo{Name: name})
	}
	return &Model{OpsetImports: []OpsetID{{"", 15}, {mlDomain, int64(opset)}}, Graph: g}
}

// runML builds and runs a one-node model, returning its outputs in order.
func runML(opset int, op string, attrs []*Attribute, nOut int, in ...*Tensor) ([]*Tensor, error) {
	s, err := NewSession(mlModel(opset, op, attrs, len(in), nOut))
	if err != nil {
		return nil, err
	}
	feed := map[string]*Tensor{}
	for i, t := range in {
		feed[fmt.Sprintf("X%d", i)] = t
	}
	got, err := s.Run(context.Background(), feed)
	if err != nil {
		return nil, err
	}
	out := make([]*Tensor, nOut)
	for i := range out {
		out[i] = got[fmt.Sprintf("Y%d", i)]
	}
	return out, nil
}

func wantFloats(t *testing.T, what string, got *Tensor, want ...float64) {
	t.Helper()
	g, err := got.AsFloat64s()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if len(g) != len(want) {
		t.Fatalf("%s = %v, want %v", what, g, want)
	}
	for i := range want {
		if !(math.IsNaN(want[i]) && math.IsNaN(g[i])) && math.Abs(g[i]-want[i]) > 1e-5 {
			t.Fatalf("%s = %v, want %v", what, g, want)
		}
	}
}

// stump is one tree: node 0 tests feature 0 against 2, node 1 (true) has
// weight 10, node 2 (false) weight 20.
func stump(mode string, missTrue int64, extra ...*Attribute) []*Attribute {
	return append([]*Attribute{
		aInts("nodes_treeids", 0, 0, 0), aInts("nodes_nodeids", 0, 1, 2),
		aInts("nodes_featureids", 0, 0, 0), aStrings("nodes_modes", mode, "LEAF", "LEAF"),
		aFloats("nodes_values", 2, 0, 0), aInts("nodes_truenodeids", 1, 0, 0),
		aInts("nodes_falsenodeids", 2, 0, 0), aInts("nodes_missing_value_tracks_true", missTrue, 0, 0),
		aInts("target_treeids", 0, 0), aInts("target_nodeids", 1, 2),
		aInts("target_ids", 0, 0), aFloats("target_weights", 10, 20),
	}, extra...)
}

func TestTreeNodeModes(t *testing.T) {
	nan := math.NaN()
	cases := []struct {
		mode string
		miss int64
		want []float64 // for x = 1, 2, 3, NaN
	}{
		{"BRANCH_LEQ", 0, []float64{10, 10, 20, 20}},
		{"BRANCH_LT", 0, []float64{10, 20, 20, 20}},
		{"BRANCH_GTE", 0, []float64{20, 10, 10, 20}},
		{"BRANCH_GT", 0, []float64{20, 20, 10, 20}},
		{"BRANCH_EQ", 0, []float64{20, 10, 20, 20}},
		{"BRANCH_NEQ", 0, []float64{10, 20, 10, 10}},
		{"BRANCH_LEQ", 1, []float64{10, 10, 20, 10}},
		{"BRANCH_GT", 1, []float64{20, 20, 10, 10}},
		{"BRANCH_EQ", 1, []float64{20, 10, 20, 10}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/miss=%d", c.mode, c.miss), func(t *testing.T) {
			out, err := runML(3, "TreeEnsembleRegressor", stump(c.mode, c.miss), 1, FromFloat32([]float32{1, 2, 3, float32(nan)}, 4, 1))
			if err != nil {
				t.Fatal(err)
			}
			wantFloats(t, "Y", out[0], c.want...)
			if fmt.Sprint(out[0].Shape) != "[4 1]" {
				t.Errorf("shape %v, want [4 1]", out[0].Shape)
			}
		})
	}
}

func TestTreeDoubleInputAndTensorAttrs(t *testing.T) {
	attrs := stump("BRANCH_LEQ", 0)
	// Replace nodes_values by a double tensor between two float32 values.
	for i, a := range attrs {
		if a.Name == "nodes_values" {
			attrs[i] = &Attribute{Name: "nodes_values_as_tensor", Type: AttrTensor,
				T: &TensorProto{Tensor: FromFloat64([]float64{2.0000001, 0, 0}, 3)}}
		}
	}
	out, err := runML(3, "TreeEnsembleRegressor", attrs, 1, FromFloat64([]float64{2.0000001, 2.0000002}, 2, 1))
	if err != nil {
		t.Fatal(err)
	}
	wantFloats(t, "Y", out[0], 10, 20)
}

// leaves makes n one-leaf trees with the given weights for target 0, plus
// (if w1 is given) weights for target 1 on the first len(w1) trees.
func leaves(w0 []float32, w1 []float32, extra ...*Attribute) []*Attribute {
	var tree, node, feat, tr, fa []int64
	var modes []string
	var vals []float32
	var wt, wn, wi []int64
	var ww []float32
	for i := range w0 {
		tree = append(tree, int64(i))
		node, feat, tr, fa = append(node, 0), append(feat, 0), append(tr, 0), append(fa, 0)
		modes, vals = append(modes, "LEAF"), append(vals, 0)
		wt, wn, wi, ww = append(wt, int64(i)), append(wn, 0), append(wi, 0), append(ww, w0[i])
	}
	for i, w := range w1 {
		wt, wn, wi, ww = append(wt, int64(i)), append(wn, 0), append(wi, 1), append(ww, w)
	}
	return append([]*Attribute{
		aInts("nodes_treeids", tree...), aInts("nodes_nodeids", node...), aInts("nodes_featureids", feat...),
		aStrings("nodes_modes", modes...), aFloats("nodes_values", vals...), aInts("nodes_truenodeids", tr...),
		aInts("nodes_falsenodeids", fa...),
		aInts("target_treeids", wt...), aInts("target_nodeids", wn...), aInts("target_ids", wi...),
		aFloats("target_weights", ww...),
	}, extra...)
}

func TestTreeAggregates(t *testing.T) {
	w := []float32{1, 5, 3}
	cases := []struct {
		agg  string
		base []float32
		w1   []float32
		want []float64
	}{
		{"SUM", nil, nil, []float64{9}},
		{"AVERAGE", nil, nil, []float64{3}},
		{"MIN", nil, nil, []float64{1}},
		{"MAX", nil, nil, []float64{5}},
		{"SUM", []float32{10}, nil, []float64{19}},
		{"AVERAGE", []float32{10}, nil, []float64{13}},
		{"MAX", []float32{0.5, -1}, []float32{-4}, []float64{5.5, -5}},
		{"MIN", []float32{0, 0}, []float32{}, []float64{1, 0}}, // target 1 has no leaf: 0
		{"AVERAGE", nil, []float32{6}, []float64{3, 2}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/%v/%v", c.agg, c.base, c.w1), func(t *testing.T) {
			attrs := leaves(w, c.w1, aString("aggregate_function", c.agg), aInt("n_targets", int64(len(c.want))))
			if c.base != nil {
				attrs = append(attrs, aFloats("base_values", c.base...))
			}
			out, err := runML(3, "TreeEnsembleRegressor", attrs, 1, FromFloat32([]float32{0}, 1, 1))
			if err != nil {
				t.Fatal(err)
			}
			wantFloats(t, "Y", out[0], c.want...)
		})
	}
}

func TestTreeRegressorPostTransforms(t *testing.T) {
	// Two targets scoring 1 and 0.
	e := math.E
	cases := []struct {
		post string
		want []float64
	}{
		{"NONE", []float64{1, 0}},
		{"SOFTMAX", []float64{e / (e + 1), 1 / (e + 1)}},
		{"LOGISTIC", []float64{1 / (1 + 1/e), 0.5}},
		{"SOFTMAX_ZERO", []float64{1, 0}},
	}
	for _, c := range cases {
		t.Run(c.post, func(t *testing.T) {
			attrs := leaves([]float32{1}, []float32{0}, aString("post_transform", c.post), aInt("n_targets", 2))
			out, err := runML(3, "TreeEnsembleRegressor", attrs, 1, FromFloat32([]float32{0}, 1, 1))
			if err != nil {
				t.Fatal(err)
			}
			wantFloats(t, "Y", out[0], c.want...)
		})
	}
	out, err := runML(3, "TreeEnsembleRegressor", leaves([]float32{0.975}, nil, aString("post_transform", "PROBIT")), 1, FromFloat32([]float32{0}, 1))
	if err != nil {
		t.Fatal(err)
	}
	wantFloats(t, "probit", out[0], 1.959963984540054)
}

// classStump is stump() with class weights: each leaf gets the given (class, weight) pairs.
func classStump(trueW, falseW [][2]float32, extra ...*Attribute) []*Attribute {
	var tr, nd, id []int64
	var w []float32
	for _, p := range trueW {
		tr, nd, id, w = append(tr, 0), append(nd, 1), append(id, int64(p[0])), append(w, p[1])
	}
	for _, p := range falseW {
		tr, nd, id, w = append(tr, 0), append(nd, 2), append(id, int64(p[0])), append(w, p[1])
	}
	return append([]*Attribute{
		aInts("nodes_treeids", 0, 0, 0), aInts("nodes_nodeids", 0, 1, 2),
		aInts("nodes_featureids", 0, 0, 0), aStrings("nodes_modes", "BRANCH_LEQ", "LEAF", "LEAF"),
		aFloats("nodes_values", 2, 0, 0), aInts("nodes_truenodeids", 1, 0, 0),
		aInts("nodes_falsenodeids", 2, 0, 0),
		aInts("class_treeids", tr...), aInts("class_nodeids", nd...),
		aInts("class_ids", id...), aFloats("class_weights", w...),
	}, extra...)
}

func TestTreeClassifier(t *testing.T) {
	x := FromFloat32([]float32{1, 3}, 2, 1)
	cases := []struct {
		name       string
		attrs      []*Attribute
		wantLabels any
		wantScores []float64
	}{
		{"strings multiclass",
			classStump([][2]float32{{0, 0.2}, {2, 0.8}}, [][2]float32{{1, 0.6}, {0, 0.4}},
				aStrings("classlabels_strings", "a", "b", "c")),
			[]string{"c", "b"}, []float64{0.2, 0, 0.8, 0.4, 0.6, 0}},
		{"ints softmax",
			classStump([][2]float32{{0, 1}, {1, 0}}, [][2]float32{{1, 2}},
				aInts("classlabels_int64s", 7, 9), aString("post_transform", "SOFTMAX")),
			[]int64{7, 9}, []float64{1 / (1 + math.Exp(-1)), 1 - 1/(1+math.Exp(-1)), math.Exp(-2) / (1 + math.Exp(-2)), 1 / (1 + math.Exp(-2))}},
		{"binary positive weights",
			classStump([][2]float32{{0, 0.3}}, [][2]float32{{0, 0.9}}, aInts("classlabels_int64s", 0, 1)),
			[]int64{0, 1}, []float64{0.7, 0.3, 0.1, 0.9}},
		{"binary mixed weights",
			classStump([][2]float32{{1, -1.5}}, [][2]float32{{1, 2}}, aInts("classlabels_int64s", 0, 1)),
			[]int64{0, 1}, []float64{1.5, -1.5, -2, 2}},
		{"binary logistic with base",
			classStump([][2]float32{{0, -1}}, [][2]float32{{0, 1}}, aStrings("classlabels_strings", "ok", "fault"),
				aString("post_transform", "LOGISTIC"), aFloats("base_values", 0.5)),
			[]string{"ok", "fault"}, []float64{1 - logistic(-0.5), logistic(-0.5), 1 - logistic(1.5), logistic(1.5)}},
		{"base values multiclass",
			classStump([][2]float32{{0, 1}}, [][2]float32{{0, 1}}, aInts("classlabels_int64s", 1, 2, 3),
				aFloats("base_values", 0, 5, 0)),
			[]int64{2, 2}, []float64{1, 5, 0, 1, 5, 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := runML(3, "TreeEnsembleClassifier", c.attrs, 2, x)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(out[0].Data); got != fmt.Sprint(c.wantLabels) {
				t.Errorf("labels %s, want %v", got, c.wantLabels)
			}
			wantFloats(t, "scores", out[1], c.wantScores...)
		})
	}
}

// replaceAttr returns attrs with the attribute of a's name replaced by a.
func replaceAttr(attrs []*Attribute, a *Attribute) []*Attribute {
	out := append([]*Attribute{}, attrs...)
	for i, x := range out {
		if x.Name == a.Name {
			out[i] = a
		}
	}
	return out
}

func TestTreeBuildErrors(t *testing.T) {
	base := func(trueIDs, falseIDs []int64, nodeIDs []int64) []*Attribute {
		return []*Attribute{
			aInts("nodes_treeids", 0, 0, 0), aInts("nodes_nodeids", nodeIDs...),
			aInts("nodes_featureids", 0, 0, 0), aStrings("nodes_modes", "BRANCH_LEQ", "BRANCH_LEQ", "LEAF"),
			aFloats("nodes_values", 2, 0, 0), aInts("nodes_truenodeids", trueIDs...),
			aInts("nodes_falsenodeids", falseIDs...),
			aInts("target_treeids", 0), aInts("target_nodeids", 2), aInts("target_ids", 0), aFloats("target_weights", 1),
		}
	}
	cases := []struct {
		name  string
		attrs []*Attribute
	}{
		{"cycle", base([]int64{1, 0, 0}, []int64{2, 2, 0}, []int64{0, 1, 2})},
		{"missing child", base([]int64{1, 7, 0}, []int64{2, 2, 0}, []int64{0, 1, 2})},
		{"duplicate node", base([]int64{1, 2, 0}, []int64{2, 2, 0}, []int64{0, 1, 1})},
		{"bad mode", stump("BRANCH_XX", 0)},
		{"target out of range", append(stump("BRANCH_LEQ", 0), aInt("n_targets", 0))},
		{"bad aggregate", stump("BRANCH_LEQ", 0, aString("aggregate_function", "MEDIAN"))},
		{"bad post transform", stump("BRANCH_LEQ", 0, aString("post_transform", "TANH"))},
		{"short array", replaceAttr(stump("BRANCH_LEQ", 0), aFloats("nodes_values", 1))},
		{"negative feature", replaceAttr(stump("BRANCH_LEQ", 0), aInts("nodes_featureids", -1, 0, 0))},
		{"weight on a branch", replaceAttr(stump("BRANCH_LEQ", 0), aInts("target_nodeids", 0, 2))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewSession(mlModel(3, "TreeEnsembleRegressor", c.attrs, 1, 1))
			if err == nil {
				t.Fatal("NewSession succeeded, want an error")
			}
			if !errclass.Is(err, errclass.InvalidArgument) {
				t.Errorf("error %v has class %s, want invalid_argument", err, errclass.ClassOf(err))
			}
		})
	}
	// A feature the input does not have fails at run time, not with a panic.
	attrs := stump("BRANCH_LEQ", 0)
	attrs[2] = aInts("nodes_featureids", 3, 0, 0)
	_, err := runML(3, "TreeEnsembleRegressor", attrs, 1, FromFloat32([]float32{1, 2}, 1, 2))
	if !errclass.Is(err, errclass.InvalidArgument) {
		t.Errorf("run with too few features: err %v, want invalid_argument", err)
	}
}

func TestLinearOps(t *testing.T) {
	x := FromFloat32([]float32{1, 2, -3, 0}, 2, 2)
	cases := []struct {
		name       string
		op         string
		attrs      []*Attribute
		wantLabels any
		wantScores []float64
	}{
		{"regressor 2 targets", "LinearRegressor",
			[]*Attribute{aFloats("coefficients", 1, 1, 2, 0), aFloats("intercepts", 0.5, -1), aInt("targets", 2)},
			nil, []float64{3.5, 1, -2.5, -7}},
		{"regressor no intercept", "LinearRegressor",
			[]*Attribute{aFloats("coefficients", 1, 1)}, nil, []float64{3, -3}},
		{"classifier strings", "LinearClassifier",
			[]*Attribute{aFloats("coefficients", 1, 0, 0, 1, -1, -1), aFloats("intercepts", 0, 0, 0.5),
				aStrings("classlabels_strings", "x", "y", "z")},
			[]string{"y", "z"}, []float64{1, 2, -2.5, -3, 0, 3.5}},
		{"classifier binary none", "LinearClassifier",
			[]*Attribute{aFloats("coefficients", 1, 1), aFloats("intercepts", 0), aInts("classlabels_ints", 4, 5)},
			[]int64{5, 4}, []float64{-3, 3, 3, -3}},
		{"classifier binary logistic", "LinearClassifier",
			[]*Attribute{aFloats("coefficients", 1, 1), aFloats("intercepts", 0), aInts("classlabels_ints", 0, 1),
				aString("post_transform", "LOGISTIC")},
			[]int64{1, 0}, []float64{logistic(-3), logistic(3), logistic(3), logistic(-3)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := 1
			if c.wantLabels != nil {
				n = 2
			}
			out, err := runML(1, c.op, c.attrs, n, x)
			if err != nil {
				t.Fatal(err)
			}
			if c.wantLabels != nil {
				if got := fmt.Sprint(out[0].Data); got != fmt.Sprint(c.wantLabels) {
					t.Errorf("labels %s, want %v", got, c.wantLabels)
				}
				wantFloats(t, "scores", out[1], c.wantScores...)
			} else {
				wantFloats(t, "Y", out[0], c.wantScores...)
			}
		})
	}
	if _, err := runML(1, "LinearRegressor", []*Attribute{aFloats("coefficients", 1, 1, 1)}, 1, x); !errclass.Is(err, errclass.InvalidArgument) {
		t.Errorf("3 coefficients for 2 features: err %v, want invalid_argument", err)
	}
}

func TestSVMKernels(t *testing.T) {
	x := FromFloat32([]float32{1, 2}, 1, 2)
	sv := []float32{1, 0, 0, 1}
	dot := []float64{1, 2}
	cases := []struct {
		kernel string
		k      func(d float64, dist2 float64) float64
	}{
		{"LINEAR", func(d, _ float64) float64 { return d }},
		{"POLY", func(d, _ float64) float64 { return math.Pow(0.5*d+1, 3) }},
		{"RBF", func(_, d2 float64) float64 { return math.Exp(-0.5 * d2) }},
		{"SIGMOID", func(d, _ float64) float64 { return math.Tanh(0.5*d + 1) }},
	}
	dist2 := []float64{4, 2} // |x-sv0|^2, |x-sv1|^2
	for _, c := range cases {
		t.Run(c.kernel, func(t *testing.T) {
			attrs := []*Attribute{aString("kernel_type", c.kernel), aFloats("kernel_params", 0.5, 1, 3),
				aFloats("support_vectors", sv...), aInt("n_supports", 2), aFloats("coefficients", 2, -1), aFloats("rho", 0.25)}
			out, err := runML(1, "SVMRegressor", attrs, 1, x)
			if err != nil {
				t.Fatal(err)
			}
			want := 2*c.k(dot[0], dist2[0]) - c.k(dot[1], dist2[1]) + 0.25
			wantFloats(t, "Y", out[0], want)
		})
	}
	// Linear mode: no support vectors.
	out, err := runML(1, "SVMRegressor", []*Attribute{aFloats("coefficients", 3, -1), aFloats("rho", 1)}, 1, x)
	if err != nil {
		t.Fatal(err)
	}
	wantFloats(t, "linear", out[0], 2)
	out, err = runML(1, "SVMRegressor", []*Attribute{aFloats("coefficients", 3, -1), aFloats("rho", -5), aInt("one_class", 1)}, 1, x)
	if err != nil {
		t.Fatal(err)
	}
	wantFloats(t, "one class", out[0], -1)
}

func TestSVMClassifier(t *testing.T) {
	// Two classes, one support vector each, linear kernel: d = x.sv0*c0 + x.sv1*c1 + rho.
	base := []*Attribute{aString("kernel_type", "LINEAR"), aFloats("support_vectors", 1, 0, 0, 1),
		aInts("vectors_per_class", 1, 1), aFloats("coefficients", 1, -1), aFloats("rho", 0),
		aStrings("classlabels_strings", "pos", "neg")}
	x := FromFloat32([]float32{2, 1, 1, 3}, 2, 2) // d = 1, -2
	out, err := runML(1, "SVMClassifier", base, 2, x)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(out[0].Data); got != "[pos neg]" {
		t.Errorf("labels %s, want [pos neg]", got)
	}
	wantFloats(t, "scores", out[1], -1, 1, 2, -2)

	// With probabilities: two classes couple to the pairwise probability.
	withProb := append(append([]*Attribute{}, base...), aFloats("prob_a", -2), aFloats("prob_b", 0))
	out, err = runML(1, "SVMClassifier", withProb, 2, x)
	if err != nil {
		t.Fatal(err)
	}
	p1 := 1 - logistic(-2*1) // P(first class) for d = 1
	p2 := 1 - logistic(-2*-2)
	wantFloats(t, "probabilities", out[1], p1, 1-p1, p2, 1-p2)

	// Three classes with probabilities sum to 1 and follow the votes.
	three := []*Attribute{aString("kernel_type", "RBF"), aFloats("kernel_params", 0.5, 0, 3),
		aFloats("support_vectors", 0, 0, 4, 0, 0, 4), aInts("vectors_per_class", 1, 1, 1),
		aFloats("coefficients", 1, -1, -1, 1, 1, -1), aFloats("rho", 0, 0, 0),
		aFloats("prob_a", -3, -3, -3), aFloats("prob_b", 0, 0, 0), aInts("classlabels_ints", 10, 20, 30)}
	out, err = runML(1, "SVMClassifier", three, 2, FromFloat32([]float32{0.1, 0, 3.9, 0, 0, 3.8}, 3, 2))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(out[0].Data); got != "[10 20 30]" {
		t.Errorf("labels %s, want [10 20 30]", got)
	}
	p := out[1].Float32s()
	for r := 0; r < 3; r++ {
		s := p[3*r] + p[3*r+1] + p[3*r+2]
		if math.Abs(float64(s)-1) > 1e-5 || p[3*r+r] < 0.5 {
			t.Errorf("row %d probabilities %v: want a sum of 1 and class %d most likely", r, p[3*r:3*r+3], r)
		}
	}
}

func TestTransformOps(t *testing.T) {
	nan := float32(math.NaN())
	cases := []struct {
		name  string
		op    string
		opset int
		attrs []*Attribute
		in    []*Tensor
		check func(t *testing.T, y *Tensor)
	}{
		{"normalizer max", "Normalizer", 1, []*Attribute{aString("norm", "MAX")},
			[]*Tensor{FromFloat32([]float32{1, 4, -2, 0, 0, 0}, 2, 3)},
			func(t *testing.T, y *Tensor) { wantFloats(t, "Y", y, 0.25, 1, -0.5, 0, 0, 0) }},
		{"normalizer l1", "Normalizer", 1, []*Attribute{aString("norm", "L1")},
			[]*Tensor{FromFloat32([]float32{1, -3}, 2)},
			func(t *testing.T, y *Tensor) { wantFloats(t, "Y", y, 0.25, -0.75) }},
		{"scaler broadcast", "Scaler", 1, []*Attribute{aFloats("offset", 1), aFloats("scale", 2, 3)},
			[]*Tensor{FromInt64([]int64{1, 2, 3, 4}, 2, 2)},
			func(t *testing.T, y *Tensor) { wantFloats(t, "Y", y, 0, 3, 4, 9) }},
		{"binarizer nan", "Binarizer", 1, []*Attribute{aFloat("threshold", 1)},
			[]*Tensor{FromFloat32([]float32{0, 1, 2, nan}, 4)},
			func(t *testing.T, y *Tensor) { wantFloats(t, "Y", y, 0, 0, 1, math.NaN()) }},
		{"imputer int64", "Imputer", 1, []*Attribute{aInts("imputed_value_int64s", 7, 8), aInt("replaced_value_int64", -1)},
			[]*Tensor{FromInt64([]int64{-1, 2, 3, -1}, 2, 2)},
			func(t *testing.T, y *Tensor) { wantFloats(t, "Y", y, 7, 2, 3, 8) }},
		{"imputer value", "Imputer", 1, []*Attribute{aFloats("imputed_value_floats", 5), aFloat("replaced_value_float", 0)},
			[]*Tensor{FromFloat32([]float32{0, 2, nan}, 1, 3)},
			func(t *testing.T, y *Tensor) { wantFloats(t, "Y", y, 5, 2, math.NaN()) }},
		{"array feature extractor 1-D strings", "ArrayFeatureExtractor", 1, nil,
			[]*Tensor{FromStrings([]string{"a", "b", "c"}, 3), FromInt64([]int64{2, 0}, 2)},
			func(t *testing.T, y *Tensor) {
				if fmt.Sprint(y.Shape, y.Data) != "[1 2] [c a]" {
					t.Errorf("Y = %v %v, want [1 2] [c a]", y.Shape, y.Data)
				}
			}},
		{"feature vectorizer pad and cut", "FeatureVectorizer", 1, []*Attribute{aInts("inputdimensions", 3, 1)},
			[]*Tensor{FromInt32([]int32{1, 2, 3, 4}, 2, 2), FromFloat64([]float64{5, 6, 7, 8}, 2, 2)},
			func(t *testing.T, y *Tensor) { wantFloats(t, "Y", y, 1, 2, 0, 5, 3, 4, 0, 7) }},
		{"onehot strings", "OneHotEncoder", 1, []*Attribute{aStrings("cats_strings", "r", "g", "b")},
			[]*Tensor{FromStrings([]string{"g", "x"}, 2)},
			func(t *testing.T, y *Tensor) {
				wantFloats(t, "Y", y, 0, 1, 0, 0, 0, 0)
				if fmt.Sprint(y.Shape) != "[2 3]" {
					t.Errorf("shape %v, want [2 3]", y.Shape)
				}
			}},
		{"onehot float input", "OneHotEncoder", 1, []*Attribute{aInts("cats_int64s", 1, 3)},
			[]*Tensor{FromFloat32([]float32{3, 1}, 1, 2)},
			func(t *testing.T, y *Tensor) { wantFloats(t, "Y", y, 0, 1, 1, 0) }},
		{"labelencoder v1 ints to strings", "LabelEncoder", 1, []*Attribute{aStrings("classes_strings", "a", "b"), aString("default_string", "?")},
			[]*Tensor{FromInt64([]int64{1, 5, 0}, 3)},
			func(t *testing.T, y *Tensor) {
				if fmt.Sprint(y.Data) != "[b ? a]" {
					t.Errorf("Y = %v, want [b ? a]", y.Data)
				}
			}},
		{"labelencoder v2 floats nan key and default", "LabelEncoder", 2,
			[]*Attribute{aFloats("keys_floats", 1.5, nan), aInts("values_int64s", 10, 20), aInt("default_int64", 99)},
			[]*Tensor{FromFloat32([]float32{nan, 1.5, 2}, 3)},
			func(t *testing.T, y *Tensor) { wantFloats(t, "Y", y, 20, 10, 99) }},
		{"labelencoder v2 strings to floats", "LabelEncoder", 2,
			[]*Attribute{aStrings("keys_strings", "lo", "hi"), aFloats("values_floats", 0.1, 0.9), aFloat("default_float", -1)},
			[]*Tensor{FromStrings([]string{"hi", "mid"}, 2)},
			func(t *testing.T, y *Tensor) { wantFloats(t, "Y", y, 0.9, -1) }},
		{"zipmap strings", "ZipMap", 1, []*Attribute{aStrings("classlabels_strings", "no", "yes")},
			[]*Tensor{FromFloat32([]float32{0.25, 0.75}, 1, 2)},
			func(t *testing.T, y *Tensor) {
				if y.Kind != KindSequence || len(y.Seq) != 1 {
					t.Fatalf("Z = %v, want a sequence of 1 map", y)
				}
				m := y.Seq[0]
				if fmt.Sprint(m.Keys.Data, m.Values.Data) != "[no yes] [0.25 0.75]" {
					t.Errorf("map = %v %v", m.Keys.Data, m.Values.Data)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := runML(c.opset, c.op, c.attrs, 1, c.in...)
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, out[0])
		})
	}
}

func TestTransformErrors(t *testing.T) {
	cases := []struct {
		name  string
		op    string
		opset int
		attrs []*Attribute
		in    []*Tensor
	}{
		{"array feature extractor index out of range", "ArrayFeatureExtractor", 1, nil,
			[]*Tensor{FromFloat32([]float32{1, 2}, 1, 2), FromInt64([]int64{2}, 1)}},
		{"onehot unknown with zeros=0", "OneHotEncoder", 1, []*Attribute{aInts("cats_int64s", 1), aInt("zeros", 0)},
			[]*Tensor{FromInt64([]int64{2}, 1)}},
		{"scaler width", "Scaler", 1, []*Attribute{aFloats("scale", 1, 2, 3)},
			[]*Tensor{FromFloat32([]float32{1, 2}, 1, 2)}},
		{"labelencoder wrong key type", "LabelEncoder", 2, []*Attribute{aStrings("keys_strings", "a"), aInts("values_int64s", 1)},
			[]*Tensor{FromInt64([]int64{1}, 1)}},
		{"zipmap width", "ZipMap", 1, []*Attribute{aInts("classlabels_int64s", 1, 2, 3)},
			[]*Tensor{FromFloat32([]float32{1, 2}, 1, 2)}},
		{"normalizer bad norm", "Normalizer", 1, []*Attribute{aString("norm", "L3")},
			[]*Tensor{FromFloat32([]float32{1}, 1)}},
		{"labelencoder two key kinds", "LabelEncoder", 2, []*Attribute{aStrings("keys_strings", "a"), aInts("keys_int64s", 1), aInts("values_int64s", 1)},
			[]*Tensor{FromStrings([]string{"a"}, 1)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := runML(c.opset, c.op, c.attrs, 1, c.in...)
			if err == nil {
				t.Fatal("no error")
			}
			if !errclass.Is(err, errclass.InvalidArgument) {
				t.Errorf("error %v has class %s, want invalid_argument", err, errclass.ClassOf(err))
			}
		})
	}
}
