package onnx

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
)

// opCase runs one node at one opset. Inputs named "" are omitted optional inputs.
type opCase struct {
	name   string
	opset  int64
	op     string
	attrs  []*Attribute
	inputs []*Tensor // nil entries are omitted inputs
	want   []string  // fmt of each output: "shape data"
	errHas string    // expected error substring (load or run)
}

func ints(name string, v ...int64) *Attribute { return &Attribute{Name: name, Type: AttrInts, Ints: v} }
func intA(name string, v int64) *Attribute    { return &Attribute{Name: name, Type: AttrInt, I: v} }
func fltA(name string, v float32) *Attribute  { return &Attribute{Name: name, Type: AttrFloat, F: v} }
func fltsA(name string, v ...float32) *Attribute {
	return &Attribute{Name: name, Type: AttrFloats, Floats: v}
}
func strA(name, v string) *Attribute { return &Attribute{Name: name, Type: AttrString, S: []byte(v)} }

func f32(shape []int, v ...float32) *Tensor { return FromFloat32(v, shape...) }
func i64(shape []int, v ...int64) *Tensor   { return FromInt64(v, shape...) }

func iota32(shape ...int) *Tensor {
	v := make([]float32, shapeSize(shape))
	for i := range v {
		v[i] = float32(i)
	}
	return FromFloat32(v, shape...)
}

func fmtTensor(t *Tensor) string {
	if d, ok := t.Data.([]float32); ok {
		parts := make([]string, len(d))
		for i, v := range d {
			parts[i] = fmt.Sprintf("%.4g", v)
		}
		return fmt.Sprintf("%v [%s]", t.Shape, strings.Join(parts, " "))
	}
	return fmt.Sprintf("%v %v", t.Shape, t.Data)
}

func runOpCase(t *testing.T, tc opCase) {
	t.Helper()
	node := &Node{Name: "n", OpType: tc.op, Attributes: tc.attrs}
	g := &Graph{Nodes: []*Node{node}}
	inputs := map[string]*Tensor{}
	for i, in := range tc.inputs {
		if in == nil {
			node.Inputs = append(node.Inputs, "")
			continue
		}
		name := fmt.Sprintf("in%d", i)
		node.Inputs = append(node.Inputs, name)
		g.Inputs = append(g.Inputs, &ValueInfo{Name: name})
		inputs[name] = in
	}
	for i := range tc.want {
		name := fmt.Sprintf("out%d", i)
		node.Outputs = append(node.Outputs, name)
		g.Outputs = append(g.Outputs, &ValueInfo{Name: name})
	}
	if len(tc.want) == 0 {
		node.Outputs = []string{"out0"}
		g.Outputs = []*ValueInfo{{Name: "out0"}}
	}
	m := &Model{OpsetImports: []OpsetID{{"", tc.opset}}, Graph: g}
	s, err := NewSession(m)
	var res map[string]*Tensor
	if err == nil {
		res, err = s.Run(context.Background(), inputs)
	}
	if tc.errHas != "" {
		if err == nil || !strings.Contains(err.Error(), tc.errHas) {
			t.Fatalf("err = %v, want one containing %q", err, tc.errHas)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	for i, w := range tc.want {
		if got := fmtTensor(res[fmt.Sprintf("out%d", i)]); got != w {
			t.Errorf("output %d = %s, want %s", i, got, w)
		}
	}
}

// TestOpsetSemantics checks the operators whose semantics changed between
// opsets 7 and 17 at both sides of each change.
func TestOpsetSemantics(t *testing.T) {
	x222 := f32([]int{2, 2, 2}, 0, 1, 2, 3, 4, 5, 6, 7)
	cases := []opCase{
		// Softmax: before 13 the input is coerced to 2-D at axis; from 13 only axis is normalized.
		{name: "Softmax-11 axis=1 coerces", opset: 11, op: "Softmax", attrs: []*Attribute{intA("axis", 1)}, inputs: []*Tensor{x222},
			want: []string{"[2 2 2] [0.03206 0.08714 0.2369 0.6439 0.03206 0.08714 0.2369 0.6439]"}},
		{name: "Softmax-13 axis=1 one axis", opset: 13, op: "Softmax", attrs: []*Attribute{intA("axis", 1)}, inputs: []*Tensor{x222},
			want: []string{"[2 2 2] [0.1192 0.1192 0.8808 0.8808 0.1192 0.1192 0.8808 0.8808]"}},
		{name: "Softmax-11 default axis is 1", opset: 11, op: "Softmax", inputs: []*Tensor{x222},
			want: []string{"[2 2 2] [0.03206 0.08714 0.2369 0.6439 0.03206 0.08714 0.2369 0.6439]"}},
		{name: "Softmax-13 default axis is -1", opset: 13, op: "Softmax", inputs: []*Tensor{x222},
			want: []string{"[2 2 2] [0.2689 0.7311 0.2689 0.7311 0.2689 0.7311 0.2689 0.7311]"}},
		{name: "LogSoftmax-11 coerces", opset: 11, op: "LogSoftmax", attrs: []*Attribute{intA("axis", 2)}, inputs: []*Tensor{f32([]int{1, 1, 2}, 0, 0)},
			want: []string{"[1 1 2] [-0.6931 -0.6931]"}},
		// Reshape: 0 copies, -1 infers; allowzero (14) keeps 0 as a real size.
		{name: "Reshape 0 and -1", opset: 13, op: "Reshape", inputs: []*Tensor{iota32(2, 3, 4), i64([]int{2}, 0, -1)}, want: []string{"[2 12] [0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23]"}},
		{name: "Reshape allowzero", opset: 14, op: "Reshape", attrs: []*Attribute{intA("allowzero", 1)}, inputs: []*Tensor{iota32(0, 3), i64([]int{2}, 3, 0)}, want: []string{"[3 0] []"}},
		{name: "Reshape bad", opset: 13, op: "Reshape", inputs: []*Tensor{iota32(2, 3), i64([]int{1}, 4)}, errHas: "cannot reshape"},
		// Slice: attributes before 10, inputs (with steps) from 10.
		{name: "Slice-9 attributes", opset: 9, op: "Slice", attrs: []*Attribute{ints("starts", 1), ints("ends", 1000), ints("axes", 1)}, inputs: []*Tensor{iota32(2, 3)},
			want: []string{"[2 2] [1 2 4 5]"}},
		{name: "Slice-13 inputs negative step", opset: 13, op: "Slice", inputs: []*Tensor{iota32(2, 4), i64([]int{1}, -1), i64([]int{1}, -1000), i64([]int{1}, 1), i64([]int{1}, -2)},
			want: []string{"[2 2] [3 1 7 5]"}},
		{name: "Slice-13 default axes", opset: 13, op: "Slice", inputs: []*Tensor{iota32(3, 2), i64([]int{2}, 1, 0), i64([]int{2}, 3, 1)},
			want: []string{"[2 1] [2 4]"}},
		// Squeeze/Unsqueeze: axes attribute before 13, input from 13.
		{name: "Squeeze-11 attr", opset: 11, op: "Squeeze", attrs: []*Attribute{ints("axes", 0)}, inputs: []*Tensor{iota32(1, 2, 1)}, want: []string{"[2 1] [0 1]"}},
		{name: "Squeeze-13 input", opset: 13, op: "Squeeze", inputs: []*Tensor{iota32(1, 2, 1), i64([]int{1}, -1)}, want: []string{"[1 2] [0 1]"}},
		{name: "Squeeze-13 all", opset: 13, op: "Squeeze", inputs: []*Tensor{iota32(1, 2, 1)}, want: []string{"[2] [0 1]"}},
		{name: "Unsqueeze-11 attr", opset: 11, op: "Unsqueeze", attrs: []*Attribute{ints("axes", 0, 3)}, inputs: []*Tensor{iota32(2, 1)}, want: []string{"[1 2 1 1] [0 1]"}},
		{name: "Unsqueeze-13 input", opset: 13, op: "Unsqueeze", inputs: []*Tensor{iota32(2), i64([]int{1}, -1)}, want: []string{"[2 1] [0 1]"}},
		// Clip: attributes before 11, optional inputs from 11.
		{name: "Clip-6 attrs", opset: 6, op: "Clip", attrs: []*Attribute{fltA("min", 1), fltA("max", 2)}, inputs: []*Tensor{iota32(4)}, want: []string{"[4] [1 1 2 2]"}},
		{name: "Clip-11 inputs", opset: 11, op: "Clip", inputs: []*Tensor{iota32(4), f32([]int{}, 1), f32([]int{}, 2)}, want: []string{"[4] [1 1 2 2]"}},
		{name: "Clip-11 max only", opset: 11, op: "Clip", inputs: []*Tensor{iota32(4), nil, f32([]int{}, 2)}, want: []string{"[4] [0 1 2 2]"}},
		// ReduceSum: axes attribute before 13, input from 13 (with noop_with_empty_axes).
		{name: "ReduceSum-11 attr", opset: 11, op: "ReduceSum", attrs: []*Attribute{ints("axes", 1), intA("keepdims", 0)}, inputs: []*Tensor{iota32(2, 3)}, want: []string{"[2] [3 12]"}},
		{name: "ReduceSum-13 input", opset: 13, op: "ReduceSum", inputs: []*Tensor{iota32(2, 3), i64([]int{1}, 0)}, want: []string{"[1 3] [3 5 7]"}},
		{name: "ReduceSum-13 no axes reduces all", opset: 13, op: "ReduceSum", inputs: []*Tensor{iota32(2, 3)}, want: []string{"[1 1] [15]"}},
		{name: "ReduceSum-13 noop", opset: 13, op: "ReduceSum", attrs: []*Attribute{intA("noop_with_empty_axes", 1)}, inputs: []*Tensor{iota32(2, 3)}, want: []string{"[2 3] [0 1 2 3 4 5]"}},
		{name: "ReduceMean-13 still attr", opset: 13, op: "ReduceMean", attrs: []*Attribute{ints("axes", -1)}, inputs: []*Tensor{iota32(2, 2)}, want: []string{"[2 1] [0.5 2.5]"}},
		{name: "ReduceMax-18 input", opset: 18, op: "ReduceMax", inputs: []*Tensor{iota32(2, 2), i64([]int{1}, 0)}, want: []string{"[1 2] [2 3]"}},
		// Split: split attribute before 13, input from 13.
		{name: "Split-11 attr", opset: 11, op: "Split", attrs: []*Attribute{ints("split", 1, 2)}, inputs: []*Tensor{iota32(3)}, want: []string{"[1] [0]", "[2] [1 2]"}},
		{name: "Split-13 input", opset: 13, op: "Split", inputs: []*Tensor{iota32(3), i64([]int{2}, 2, 1)}, want: []string{"[2] [0 1]", "[1] [2]"}},
		{name: "Split-13 equal", opset: 13, op: "Split", inputs: []*Tensor{iota32(4)}, want: []string{"[2] [0 1]", "[2] [2 3]"}},
		// Pad: attributes before 11, inputs from 11.
		{name: "Pad-2 attrs", opset: 2, op: "Pad", attrs: []*Attribute{ints("pads", 1, 0), fltA("value", 9)}, inputs: []*Tensor{iota32(2)}, want: []string{"[3] [9 0 1]"}},
		{name: "Pad-11 reflect", opset: 11, op: "Pad", attrs: []*Attribute{strA("mode", "reflect")}, inputs: []*Tensor{iota32(3), i64([]int{2}, 2, 1)}, want: []string{"[6] [2 1 0 1 2 1]"}},
		{name: "Pad-11 edge", opset: 11, op: "Pad", attrs: []*Attribute{strA("mode", "edge")}, inputs: []*Tensor{iota32(2), i64([]int{2}, 1, 2)}, want: []string{"[5] [0 0 1 1 1]"}},
		{name: "Pad-11 constant value", opset: 11, op: "Pad", inputs: []*Tensor{iota32(1), i64([]int{2}, 0, 1), f32([]int{}, -1)}, want: []string{"[2] [0 -1]"}},
		// TopK: k attribute at 1, input from 10; largest/sorted from 11.
		{name: "TopK-1 attr", opset: 1, op: "TopK", attrs: []*Attribute{intA("k", 2)}, inputs: []*Tensor{f32([]int{4}, 3, 1, 4, 1)}, want: []string{"[2] [4 3]", "[2] [2 0]"}},
		{name: "TopK-11 smallest", opset: 11, op: "TopK", attrs: []*Attribute{intA("largest", 0)}, inputs: []*Tensor{f32([]int{4}, 3, 1, 4, 1), i64([]int{1}, 2)}, want: []string{"[2] [1 1]", "[2] [1 3]"}},
		// Dropout is identity at inference; ratio moved to an input at 12.
		{name: "Dropout-7", opset: 7, op: "Dropout", attrs: []*Attribute{fltA("ratio", 0.5)}, inputs: []*Tensor{iota32(2)}, want: []string{"[2] [0 1]"}},
		{name: "Dropout-12 mask", opset: 12, op: "Dropout", inputs: []*Tensor{iota32(2), f32([]int{}, 0.5)}, want: []string{"[2] [0 1]", "[2] [true true]"}},
		// Upsample: scales attribute at 7, input at 9.
		{name: "Upsample-7 attr", opset: 7, op: "Upsample", attrs: []*Attribute{fltsA("scales", 1, 2)}, inputs: []*Tensor{iota32(1, 2)}, want: []string{"[1 4] [0 0 1 1]"}},
		{name: "Upsample-9 input", opset: 9, op: "Upsample", inputs: []*Tensor{iota32(1, 2), f32([]int{2}, 1, 2)}, want: []string{"[1 4] [0 0 1 1]"}},
		// Ops that do not exist before some opset are refused at load.
		{name: "Trilu needs 14", opset: 13, op: "Trilu", inputs: []*Tensor{iota32(2, 2)}, errHas: `unsupported operator "Trilu" (domain "ai.onnx", opset 13)`},
		{name: "LayerNormalization needs 17", opset: 16, op: "LayerNormalization", inputs: []*Tensor{iota32(2, 2), f32([]int{2}, 1, 1)}, errHas: "unsupported operator"},
		{name: "Mod float needs fmod", opset: 13, op: "Mod", inputs: []*Tensor{f32([]int{1}, 5), f32([]int{1}, 3)}, errHas: "fmod=1"},
		// Broadcasting and numpy semantics.
		{name: "Add broadcast", opset: 13, op: "Add", inputs: []*Tensor{iota32(2, 1, 3), iota32(2, 1)}, want: []string{"[2 2 3] [0 1 2 1 2 3 3 4 5 4 5 6]"}},
		{name: "Mod int sign of divisor", opset: 13, op: "Mod", inputs: []*Tensor{i64([]int{4}, -4, 7, 5, -3), i64([]int{4}, 3, -3, 3, -2)}, want: []string{"[4] [2 -2 2 -1]"}},
		{name: "Div int by zero", opset: 13, op: "Div", inputs: []*Tensor{i64([]int{2}, 7, 7), i64([]int{2}, 2, 0)}, want: []string{"[2] [3 0]"}},
		{name: "Where broadcast", opset: 16, op: "Where", inputs: []*Tensor{FromBool([]bool{true, false}, 2), f32([]int{1}, 1), f32([]int{2, 1}, 5, 6)}, want: []string{"[2 2] [1 5 1 6]"}},
		{name: "MatMul 1-D", opset: 13, op: "MatMul", inputs: []*Tensor{f32([]int{2}, 1, 2), iota32(2, 3)}, want: []string{"[3] [6 9 12]"}},
		{name: "MatMul batch broadcast", opset: 13, op: "MatMul", inputs: []*Tensor{iota32(2, 1, 2), iota32(2, 1)}, want: []string{"[2 1 1] [1 3]"}},
		{name: "Gemm trans alpha beta", opset: 13, op: "Gemm", attrs: []*Attribute{intA("transA", 1), intA("transB", 1), fltA("alpha", 2), fltA("beta", 0.5)},
			inputs: []*Tensor{iota32(2, 1), iota32(1, 2), f32([]int{1}, 2)}, want: []string{"[1 1] [3]"}},
		{name: "Cast float to int truncates", opset: 13, op: "Cast", attrs: []*Attribute{intA("to", int64(Int32))}, inputs: []*Tensor{f32([]int{3}, 1.7, -1.7, 0)}, want: []string{"[3] [1 -1 0]"}},
		{name: "Cast string to float", opset: 13, op: "Cast", attrs: []*Attribute{intA("to", int64(Float))}, inputs: []*Tensor{FromStrings([]string{"1.5", "-INF"}, 2)}, want: []string{"[2] [1.5 -Inf]"}},
		{name: "Gather negative", opset: 13, op: "Gather", attrs: []*Attribute{intA("axis", 1)}, inputs: []*Tensor{iota32(2, 3), i64([]int{1}, -1)}, want: []string{"[2 1] [2 5]"}},
		{name: "Gather out of range", opset: 13, op: "Gather", inputs: []*Tensor{iota32(2), i64([]int{1}, 2)}, errHas: "out of range"},
		{name: "Concat negative axis", opset: 13, op: "Concat", attrs: []*Attribute{intA("axis", -1)}, inputs: []*Tensor{iota32(2, 1), iota32(2, 2)}, want: []string{"[2 3] [0 0 1 1 2 3]"}},
		{name: "Transpose default reverses", opset: 13, op: "Transpose", inputs: []*Tensor{iota32(1, 2, 3)}, want: []string{"[3 2 1] [0 3 1 4 2 5]"}},
		{name: "Expand", opset: 13, op: "Expand", inputs: []*Tensor{iota32(2, 1), i64([]int{2}, 1, 2)}, want: []string{"[2 2] [0 0 1 1]"}},
		{name: "Expand too large", opset: 13, op: "Expand", inputs: []*Tensor{iota32(1), i64([]int{3}, 1<<20, 1<<20, 1<<20)}, errHas: "exceeds the limit"},
		{name: "ArgMax last index", opset: 13, op: "ArgMax", attrs: []*Attribute{intA("select_last_index", 1), intA("keepdims", 0)}, inputs: []*Tensor{f32([]int{3}, 1, 3, 3)}, want: []string{"[] [2]"}},
		{name: "Conv same upper stride", opset: 13, op: "Conv", attrs: []*Attribute{strA("auto_pad", "SAME_UPPER"), ints("strides", 2, 2)},
			inputs: []*Tensor{iota32(1, 1, 3, 3), f32([]int{1, 1, 2, 2}, 1, 1, 1, 1)}, want: []string{"[1 1 2 2] [8 7 13 8]"}},
		{name: "MaxPool indices", opset: 12, op: "MaxPool", attrs: []*Attribute{ints("kernel_shape", 2, 2)}, inputs: []*Tensor{iota32(1, 1, 2, 2)}, want: []string{"[1 1 1 1] [3]", "[1 1 1 1] [3]"}},
		{name: "AveragePool excludes pad", opset: 11, op: "AveragePool", attrs: []*Attribute{ints("kernel_shape", 2), ints("pads", 1, 0)}, inputs: []*Tensor{f32([]int{1, 1, 2}, 2, 4)}, want: []string{"[1 1 2] [2 3]"}},
		{name: "ReduceSum int64 exact", opset: 13, op: "ReduceSum", attrs: []*Attribute{intA("keepdims", 0)}, inputs: []*Tensor{i64([]int{2}, 1<<60, 1)}, want: []string{"[] [1152921504606846977]"}},
		{name: "ReduceMean int64 truncates", opset: 13, op: "ReduceMean", attrs: []*Attribute{intA("keepdims", 0)}, inputs: []*Tensor{i64([]int{2}, -2, -3)}, want: []string{"[] [-2]"}},
		{name: "ArgMax int64 exact", opset: 13, op: "ArgMax", attrs: []*Attribute{intA("keepdims", 0)}, inputs: []*Tensor{i64([]int{2}, 1<<60, 1<<60+1)}, want: []string{"[] [1]"}},
		{name: "LpNormalization p=2", opset: 13, op: "LpNormalization", inputs: []*Tensor{f32([]int{2, 2}, 3, 4, 0, 0)}, want: []string{"[2 2] [0.6 0.8 0 0]"}},
		{name: "LpNormalization p=1 axis 0", opset: 13, op: "LpNormalization", attrs: []*Attribute{intA("axis", 0), intA("p", 1)}, inputs: []*Tensor{f32([]int{2, 1}, 1, 3)}, want: []string{"[2 1] [0.25 0.75]"}},
		{name: "BatchNormalization", opset: 15, op: "BatchNormalization", inputs: []*Tensor{f32([]int{1, 2}, 1, 1), f32([]int{2}, 1, 2), f32([]int{2}, 0, 1), f32([]int{2}, 0, 1), f32([]int{2}, 1, 4)},
			want: []string{"[1 2] [1 1]"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runOpCase(t, tc) })
	}
}

func TestFloat16RoundTrip(t *testing.T) {
	for _, f := range []float32{0, 1, -2, 0.5, 65504, 6.1035156e-05, 5.9604645e-08, float32(math.Inf(1))} {
		if got := f16ToF32(f32ToF16(f)); got != f {
			t.Errorf("f16 round trip of %v = %v", f, got)
		}
	}
	if !math.IsNaN(float64(f16ToF32(f32ToF16(float32(math.NaN()))))) {
		t.Error("NaN did not survive")
	}
	if got := roundF16(1.0009765625 + 1e-4); got != 1.0009765625 {
		t.Errorf("roundF16 = %v", got)
	}
}

// TestElementIndicesBounds: GatherElements and ScatterElements refuse
// indices larger than the data outside the axis (they would address other
// elements, or none) and index values out of range.
func TestElementIndicesBounds(t *testing.T) {
	cases := []opCase{
		{name: "gather ok", opset: 13, op: "GatherElements", attrs: []*Attribute{intA("axis", 1)},
			inputs: []*Tensor{iota32(2, 3), i64([]int{2, 1}, 2, 0)}, want: []string{"[2 1] [2 3]"}},
		{name: "gather indices too tall", opset: 13, op: "GatherElements", attrs: []*Attribute{intA("axis", 1)},
			inputs: []*Tensor{iota32(2, 3), i64([]int{3, 1}, 0, 0, 0)}, errHas: "indices dimension 0 is 3, over the data's 2"},
		{name: "gather index out of range", opset: 13, op: "GatherElements", attrs: []*Attribute{intA("axis", 1)},
			inputs: []*Tensor{iota32(2, 3), i64([]int{2, 1}, 3, 0)}, errHas: "out of range"},
		{name: "scatter indices too wide", opset: 16, op: "ScatterElements", attrs: []*Attribute{intA("axis", 0)},
			inputs: []*Tensor{iota32(2, 2), i64([]int{1, 3}, 0, 1, 0), f32([]int{1, 3}, 9, 9, 9)}, errHas: "indices dimension 1 is 3, over the data's 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runOpCase(t, tc) })
	}
}
