package onnx

import (
	"context"
	"math"
	"strconv"
	"strings"
	"testing"
)

// noFuse is the test-only option that keeps dense chains unfused.
func noFuse(c *sessionConfig) { c.noFuse = true }

func denseInit(name string, t *Tensor) *TensorProto { return &TensorProto{Name: name, Tensor: t} }

func seqF32(n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(math.Sin(float64(i)*0.37+0.1) * scale)
	}
	return v
}

// TestDenseFusion checks which chains are fused (the number of run-time
// steps) and that fused sessions give the unfused ones' outputs bit for bit.
func TestDenseFusion(t *testing.T) {
	const k, n = 5, 6
	w := FromFloat32(seqF32(k*n, 1), k, n)
	bias := FromFloat32(seqF32(n, 0.5), n)
	mm := func(out string) *Node {
		return &Node{Name: "mm", OpType: "MatMul", Inputs: []string{"x", "w"}, Outputs: []string{out}}
	}
	add := func(in ...string) *Node { return &Node{Name: "add", OpType: "Add", Inputs: in, Outputs: []string{"z"}} }
	relu := &Node{Name: "relu", OpType: "Relu", Inputs: []string{"z"}, Outputs: []string{"y"}}
	gemm := &Node{Name: "gemm", OpType: "Gemm", Inputs: []string{"x", "w", "b"}, Outputs: []string{"z"}}
	x2 := FromFloat32(seqF32(7*k, 2), 7, k)
	cases := []struct {
		name    string
		nodes   []*Node
		outputs []string
		bias    *Tensor // the initializer "b"; nil: "b" is a graph input
		x       *Tensor
		steps   int // run-time steps after fusion
	}{
		{name: "matmul add relu", nodes: []*Node{mm("m"), add("m", "b"), relu}, outputs: []string{"y"}, bias: bias, x: x2, steps: 1},
		{name: "bias first, no relu", nodes: []*Node{mm("m"), add("b", "m")}, outputs: []string{"z"}, bias: bias, x: x2, steps: 1},
		{name: "bias [1,n]", nodes: []*Node{mm("m"), add("m", "b"), relu}, outputs: []string{"y"}, bias: FromFloat32(seqF32(n, 0.5), 1, n), x: x2, steps: 1},
		{name: "scalar-like bias [1]", nodes: []*Node{mm("m"), add("m", "b"), relu}, outputs: []string{"y"}, bias: FromFloat32([]float32{0.25}, 1), x: x2, steps: 1},
		{name: "one row", nodes: []*Node{mm("m"), add("m", "b"), relu}, outputs: []string{"y"}, bias: bias, x: FromFloat32(seqF32(k, 3), 1, k), steps: 1},
		{name: "rank 3 input", nodes: []*Node{mm("m"), add("m", "b"), relu}, outputs: []string{"y"}, bias: bias, x: FromFloat32(seqF32(2*3*k, 1), 2, 3, k), steps: 1},
		{name: "rank 1 input runs the unfused kernels", nodes: []*Node{mm("m"), add("m", "b"), relu}, outputs: []string{"y"}, bias: bias, x: FromFloat32(seqF32(k, 1), k), steps: 1},
		{name: "product also an output: no fusion", nodes: []*Node{mm("m"), add("m", "b"), relu}, outputs: []string{"y", "m"}, bias: bias, x: x2, steps: 3},
		{name: "product read twice: no fusion", nodes: []*Node{mm("m"), add("m", "b"), relu, {Name: "neg", OpType: "Neg", Inputs: []string{"m"}, Outputs: []string{"mneg"}}}, outputs: []string{"y", "mneg"}, bias: bias, x: x2, steps: 4},
		{name: "sum read twice: relu not fused", nodes: []*Node{mm("m"), add("m", "b"), relu, {Name: "neg", OpType: "Neg", Inputs: []string{"z"}, Outputs: []string{"zneg"}}}, outputs: []string{"y", "zneg"}, bias: bias, x: x2, steps: 3},
		{name: "sum is an output: relu not fused", nodes: []*Node{mm("m"), add("m", "b"), relu}, outputs: []string{"y", "z"}, bias: bias, x: x2, steps: 2},
		{name: "bias not constant: no fusion", nodes: []*Node{mm("m"), add("m", "b"), relu}, outputs: []string{"y"}, x: x2, steps: 3},
		{name: "bias of full shape: no fusion", nodes: []*Node{mm("m"), add("m", "b"), relu}, outputs: []string{"y"}, bias: FromFloat32(seqF32(7*n, 1), 7, n), x: x2, steps: 3},
		{name: "gemm relu", nodes: []*Node{gemm, relu}, outputs: []string{"y"}, bias: bias, x: x2, steps: 1},
		{name: "gemm without relu", nodes: []*Node{gemm}, outputs: []string{"z"}, bias: bias, x: x2, steps: 1},
		{name: "gemm output read twice: no fusion", nodes: []*Node{gemm, relu, {Name: "neg", OpType: "Neg", Inputs: []string{"z"}, Outputs: []string{"zneg"}}}, outputs: []string{"y", "zneg"}, bias: bias, x: x2, steps: 3},
		{name: "gemm output is an output: no fusion", nodes: []*Node{gemm, relu}, outputs: []string{"y", "z"}, bias: bias, x: x2, steps: 2},
		{name: "product read by a subgraph: no fusion", nodes: []*Node{mm("m"), add("m", "b"), relu, {Name: "if", OpType: "If", Inputs: []string{"c"}, Outputs: []string{"sel"}, Attributes: []*Attribute{
			{Name: "then_branch", Type: AttrGraph, G: &Graph{Nodes: []*Node{{OpType: "Identity", Inputs: []string{"m"}, Outputs: []string{"t"}}}, Outputs: []*ValueInfo{{Name: "t"}}}},
			{Name: "else_branch", Type: AttrGraph, G: &Graph{Nodes: []*Node{{OpType: "Identity", Inputs: []string{"y"}, Outputs: []string{"e"}}}, Outputs: []*ValueInfo{{Name: "e"}}}},
		}}}, outputs: []string{"y", "sel"}, bias: bias, x: x2, steps: 4},
		{name: "add of two products: no fusion", nodes: []*Node{mm("m"), {Name: "mm2", OpType: "MatMul", Inputs: []string{"x", "w"}, Outputs: []string{"m2"}}, add("m", "m2")}, outputs: []string{"z"}, x: x2, steps: 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mk := func() *Model {
				inputs := []string{"x"}
				if tc.bias == nil {
					inputs = append(inputs, "b")
				}
				m := graphModel(13, tc.nodes, inputs, tc.outputs)
				m.Graph.Initializers = append(m.Graph.Initializers, denseInit("w", w), denseInit("c", FromBool([]bool{true})))
				if tc.bias != nil {
					m.Graph.Initializers = append(m.Graph.Initializers, denseInit("b", tc.bias))
				}
				return m
			}
			fused, err := NewSession(mk())
			if err != nil {
				t.Fatal(err)
			}
			plain, err := NewSession(mk(), noFuse)
			if err != nil {
				t.Fatal(err)
			}
			if len(fused.steps) != tc.steps {
				t.Errorf("%d run-time steps, want %d", len(fused.steps), tc.steps)
			}
			feed := map[string]*Tensor{"x": tc.x}
			if tc.bias == nil {
				feed["b"] = bias
			}
			for run := 0; run < 3; run++ { // recycled buffers too
				got, err := fused.Run(context.Background(), feed)
				if err != nil {
					t.Fatal(err)
				}
				want, err := plain.Run(context.Background(), feed)
				if err != nil {
					t.Fatal(err)
				}
				for name, w := range want {
					g := got[name]
					if g == nil || !sameShape(g.Shape, w.Shape) || g.DType != w.DType {
						t.Fatalf("output %s: got %v, want %s%v", name, g, w.DType, w.Shape)
					}
					gd, wd := g.Float32s(), w.Float32s()
					for i := range wd {
						if math.Float32bits(gd[i]) != math.Float32bits(wd[i]) {
							t.Fatalf("output %s[%d] = %v fused, %v unfused", name, i, gd[i], wd[i])
						}
					}
				}
			}
		})
	}
}

// TestDenseFusionFallback: inputs off the fast path run the original
// kernels, with their results and errors.
func TestDenseFusionFallback(t *testing.T) {
	nodes := []*Node{
		{Name: "mm", OpType: "MatMul", Inputs: []string{"x", "w"}, Outputs: []string{"m"}},
		{Name: "add", OpType: "Add", Inputs: []string{"m", "b"}, Outputs: []string{"z"}},
		{Name: "relu", OpType: "Relu", Inputs: []string{"z"}, Outputs: []string{"y"}},
	}
	t.Run("double", func(t *testing.T) {
		m := graphModel(13, nodes, []string{"x"}, []string{"y"})
		m.Graph.Initializers = []*TensorProto{
			denseInit("w", FromFloat64([]float64{1, -2, 3, 4}, 2, 2)),
			denseInit("b", FromFloat64([]float64{0.5, -10}, 2)),
		}
		s, err := NewSession(m)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.steps) != 1 {
			t.Fatalf("%d steps, want 1", len(s.steps))
		}
		res, err := s.Run(context.Background(), map[string]*Tensor{"x": FromFloat64([]float64{1, 1, -1, 2}, 2, 2)})
		if err != nil {
			t.Fatal(err)
		}
		// [1 1]*W = [4 2] + b = [4.5 -8] -> [4.5 0]; [-1 2]*W = [5 10] + b -> [5.5 0]
		if got := fmtTensor(res["y"]); got != "[2 2] [4.5 0 5.5 0]" {
			t.Errorf("y = %s", got)
		}
	})
	t.Run("bias does not broadcast", func(t *testing.T) {
		m := graphModel(13, nodes, []string{"x"}, []string{"y"})
		m.Graph.Initializers = []*TensorProto{
			denseInit("w", FromFloat32([]float32{1, 2, 3, 4}, 2, 2)),
			denseInit("b", FromFloat32([]float32{1, 2, 3}, 3)),
		}
		s, err := NewSession(m)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Run(context.Background(), map[string]*Tensor{"x": FromFloat32([]float32{1, 1}, 1, 2)})
		if err == nil || !strings.Contains(err.Error(), `"add"`) {
			t.Errorf("error %v, want one naming node add", err)
		}
	})
	t.Run("inner dimensions differ", func(t *testing.T) {
		m := graphModel(13, nodes, []string{"x"}, []string{"y"})
		m.Graph.Initializers = []*TensorProto{
			denseInit("w", FromFloat32([]float32{1, 2, 3, 4}, 2, 2)),
			denseInit("b", FromFloat32([]float32{1, 2}, 2)),
		}
		s, err := NewSession(m)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Run(context.Background(), map[string]*Tensor{"x": FromFloat32([]float32{1, 1, 1}, 1, 3)})
		if err == nil || !strings.Contains(err.Error(), "inner dimensions") {
			t.Errorf("error %v, want a shape mismatch", err)
		}
	})
}

// irisLikeMLP is the graph shape of examples/testdata/iris_mlp.onnx (sklearn
// MLPClassifier exported with core ops): [N,4] -> 16 -> 8 -> 3 with
// MatMul, Add, Relu, then Softmax and ArgMax.
func irisLikeMLP() *Model {
	sizes := []int{4, 16, 8, 3}
	var nodes []*Node
	var inits []*TensorProto
	cur := "x"
	for l := 0; l+1 < len(sizes); l++ {
		w, b := "w"+string(rune('0'+l)), "b"+string(rune('0'+l))
		inits = append(inits,
			denseInit(w, FromFloat32(seqF32(sizes[l]*sizes[l+1], 0.8), sizes[l], sizes[l+1])),
			denseInit(b, FromFloat32(seqF32(sizes[l+1], 0.3), sizes[l+1])))
		mm, z := "mm"+w, "z"+w
		nodes = append(nodes,
			&Node{Name: mm, OpType: "MatMul", Inputs: []string{cur, w}, Outputs: []string{mm}},
			&Node{Name: z, OpType: "Add", Inputs: []string{mm, b}, Outputs: []string{z}})
		cur = z
		if l+2 < len(sizes) {
			h := "h" + w
			nodes = append(nodes, &Node{Name: h, OpType: "Relu", Inputs: []string{z}, Outputs: []string{h}})
			cur = h
		}
	}
	nodes = append(nodes,
		&Node{Name: "sm", OpType: "Softmax", Inputs: []string{cur}, Outputs: []string{"probabilities"}, Attributes: []*Attribute{intA("axis", 1)}},
		&Node{Name: "am", OpType: "ArgMax", Inputs: []string{"probabilities"}, Outputs: []string{"label"}, Attributes: []*Attribute{intA("axis", 1), intA("keepdims", 0)}})
	m := graphModel(13, nodes, []string{"x"}, []string{"label", "probabilities"})
	m.Graph.Initializers = inits
	return m
}

func TestIrisLikeMLPFusion(t *testing.T) {
	fused, err := NewSession(irisLikeMLP())
	if err != nil {
		t.Fatal(err)
	}
	plain, err := NewSession(irisLikeMLP(), noFuse)
	if err != nil {
		t.Fatal(err)
	}
	if len(fused.steps) != 5 || len(plain.steps) != 10 {
		t.Errorf("%d fused and %d unfused steps, want 5 and 10", len(fused.steps), len(plain.steps))
	}
	feed := map[string]*Tensor{"x": FromFloat32(seqF32(33*4, 3), 33, 4)}
	got, err := fused.Run(context.Background(), feed)
	if err != nil {
		t.Fatal(err)
	}
	want, err := plain.Run(context.Background(), feed)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := fmtTensor(got["probabilities"]), fmtTensor(want["probabilities"]); g != w {
		t.Errorf("probabilities: fused %s, unfused %s", g, w)
	}
	if g, w := fmtTensor(got["label"]), fmtTensor(want["label"]); g != w {
		t.Errorf("label: fused %s, unfused %s", g, w)
	}
}

// BenchmarkMLP runs the iris-shaped MLP (the ortbench goal: 256 rows within
// 3x onnxruntime, one row at or below it) fused and unfused.
func BenchmarkMLP(b *testing.B) {
	for _, mode := range []struct {
		name string
		opts []Option
	}{{"fused", nil}, {"unfused", []Option{noFuse}}} {
		s, err := NewSession(irisLikeMLP(), mode.opts...)
		if err != nil {
			b.Fatal(err)
		}
		for _, rows := range []int{1, 256} {
			feed := map[string]*Tensor{"x": FromFloat32(seqF32(rows*4, 3), rows, 4)}
			b.Run(mode.name+"/rows="+strconv.Itoa(rows), func(b *testing.B) {
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := s.Run(ctx, feed); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkOps times single operators of the MLP on [256, 16] inputs.
func BenchmarkOps(b *testing.B) {
	x := FromFloat32(seqF32(256*16, 5), 256, 16)
	cases := []struct {
		op    string
		attrs []*Attribute
	}{
		{"Relu", nil},
		{"Softmax", []*Attribute{intA("axis", 1)}},
		{"ArgMax", []*Attribute{intA("axis", 1), intA("keepdims", 0)}},
	}
	for _, tc := range cases {
		m := graphModel(13, []*Node{{Name: "n", OpType: tc.op, Inputs: []string{"x"}, Outputs: []string{"y"}, Attributes: tc.attrs}}, []string{"x"}, []string{"y"})
		s, err := NewSession(m)
		if err != nil {
			b.Fatal(err)
		}
		feed := map[string]*Tensor{"x": x}
		b.Run(tc.op, func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				if _, err := s.Run(ctx, feed); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
