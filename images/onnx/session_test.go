package onnx

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

func mustSession(t testing.TB, b []byte) *Session {
	t.Helper()
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSession(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// mlpReference computes the MLP of mlpModel in float64.
func mlpReference(x []float32, rows, in, hidden, out int) []float64 {
	w1 := make([]float64, in*hidden)
	for i := range w1 {
		w1[i] = float64(float32(math.Sin(float64(i))) * 0.1)
	}
	w2 := make([]float64, hidden*out)
	for i := range w2 {
		w2[i] = float64(float32(math.Cos(float64(i))) * 0.1)
	}
	res := make([]float64, rows*out)
	for r := 0; r < rows; r++ {
		h := make([]float64, hidden)
		for j := range h {
			s := float64(float32(j%7) * 0.01)
			for k := 0; k < in; k++ {
				s += float64(x[r*in+k]) * w1[k*hidden+j]
			}
			h[j] = math.Max(s, 0)
		}
		var sum float64
		for j := 0; j < out; j++ {
			s := float64(float32(j) * 0.02)
			for k := 0; k < hidden; k++ {
				s += h[k] * w2[k*out+j]
			}
			res[r*out+j] = math.Exp(s)
			sum += res[r*out+j]
		}
		for j := 0; j < out; j++ {
			res[r*out+j] /= sum
		}
	}
	return res
}

func TestSessionMLP(t *testing.T) {
	const in, hidden, out = 8, 16, 3
	s := mustSession(t, mlpModel(in, hidden, out))
	for _, rows := range []int{1, 5} {
		x := make([]float32, rows*in)
		for i := range x {
			x[i] = float32(i%11) - 5
		}
		res, err := s.Run(context.Background(), map[string]*Tensor{"x": FromFloat32(x, rows, in)})
		if err != nil {
			t.Fatal(err)
		}
		got := res["probs"]
		if !sameShape(got.Shape, []int{rows, out}) || got.DType != Float {
			t.Fatalf("probs is %s%v, want float32[%d %d]", got.DType, got.Shape, rows, out)
		}
		want := mlpReference(x, rows, in, hidden, out)
		for i, v := range got.Float32s() {
			if math.Abs(float64(v)-want[i]) > 1e-5 {
				t.Fatalf("rows=%d: probs[%d]=%v, want %v", rows, i, v, want[i])
			}
		}
	}
}

func TestSessionIO(t *testing.T) {
	s := mustSession(t, mlpModel(4, 3, 2))
	in, out := s.Inputs(), s.Outputs()
	if len(in) != 1 || in[0].Name != "x" || in[0].DType != Float || fmt.Sprint(in[0].Shape) != "[-1 4]" || in[0].DimNames[0] != "N" {
		t.Errorf("Inputs() = %+v", in)
	}
	if len(out) != 1 || out[0].Name != "probs" || fmt.Sprint(out[0].Shape) != "[-1 2]" {
		t.Errorf("Outputs() = %+v", out)
	}
}

func TestSessionInputErrors(t *testing.T) {
	s := mustSession(t, mlpModel(4, 3, 2))
	cases := []struct {
		name   string
		inputs map[string]*Tensor
		field  string
		want   string
	}{
		{"missing", map[string]*Tensor{}, "x", `missing input "x"`},
		{"nil", map[string]*Tensor{"x": nil}, "x", `missing input "x"`},
		{"unknown", map[string]*Tensor{"x": FromFloat32(make([]float32, 4), 1, 4), "z": FromFloat32(nil, 0)}, "z", `unknown input "z"`},
		{"dtype", map[string]*Tensor{"x": FromFloat64(make([]float64, 4), 1, 4)}, "x", "has type float64, want float32"},
		{"rank", map[string]*Tensor{"x": FromFloat32(make([]float32, 4), 4)}, "x", "want rank 2"},
		{"static dim", map[string]*Tensor{"x": FromFloat32(make([]float32, 5), 1, 5)}, "x", "want dimension 1 to be 4"},
		{"data length", map[string]*Tensor{"x": FromFloat32(make([]float32, 3), 1, 4)}, "x", "needs 4 elements"},
		{"data type", map[string]*Tensor{"x": {DType: Float, Shape: []int{1, 4}, Data: make([]int32, 4)}}, "x", "data is []int32"},
		{"negative dim", map[string]*Tensor{"x": FromFloat32(nil, -1, 4)}, "x", "negative dimension"},
		{"overflowing dims", map[string]*Tensor{"x": FromFloat32(nil, 1<<30, 4)}, "x", "more than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Run(context.Background(), tc.inputs)
			if err == nil {
				t.Fatal("Run succeeded")
			}
			if !errclass.Is(err, errclass.InvalidArgument) || errclass.FieldOf(err) != tc.field {
				t.Errorf("err %v: class %s field %q, want invalid_argument %q", err, errclass.ClassOf(err), errclass.FieldOf(err), tc.field)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %q does not contain %q", err, tc.want)
			}
		})
	}
}

func graphModel(opset int64, nodes []*Node, inputs, outputs []string) *Model {
	g := &Graph{Nodes: nodes}
	for _, n := range inputs {
		g.Inputs = append(g.Inputs, &ValueInfo{Name: n})
	}
	for _, n := range outputs {
		g.Outputs = append(g.Outputs, &ValueInfo{Name: n})
	}
	return &Model{OpsetImports: []OpsetID{{"", opset}}, Graph: g}
}

func TestNewSessionErrors(t *testing.T) {
	cases := []struct {
		name string
		m    *Model
		want string
	}{
		{"unknown op", graphModel(13, []*Node{{Name: "n3", OpType: "Foo", Inputs: []string{"x"}, Outputs: []string{"y"}}}, []string{"x"}, []string{"y"}),
			`unsupported operator "Foo" (domain "ai.onnx", opset 13) at node "n3"`},
		{"op too new for opset", graphModel(13, []*Node{{Name: "hs", OpType: "HardSwish", Inputs: []string{"x"}, Outputs: []string{"y"}}}, []string{"x"}, []string{"y"}),
			`unsupported operator "HardSwish" (domain "ai.onnx", opset 13) at node "hs"`},
		{"ml domain", &Model{OpsetImports: []OpsetID{{"", 13}, {"ai.onnx.ml", 3}}, Graph: &Graph{Nodes: []*Node{{Name: "t", OpType: "NoSuchMLOp", Domain: "ai.onnx.ml", Inputs: []string{"x"}, Outputs: []string{"y"}}}, Inputs: []*ValueInfo{{Name: "x"}}, Outputs: []*ValueInfo{{Name: "y"}}}},
			`unsupported operator "NoSuchMLOp" (domain "ai.onnx.ml", opset 3) at node "t"`},
		{"bad attribute type", graphModel(13, []*Node{{Name: "c", OpType: "Concat", Inputs: []string{"x"}, Outputs: []string{"y"}, Attributes: []*Attribute{{Name: "axis", Type: AttrFloat, F: 1}}}}, []string{"x"}, []string{"y"}),
			`attribute "axis" has type float, want int`},
		{"missing attribute", graphModel(13, []*Node{{Name: "c", OpType: "Concat", Inputs: []string{"x"}, Outputs: []string{"y"}}}, []string{"x"}, []string{"y"}),
			"attribute axis is required"},
		{"bad input count", graphModel(13, []*Node{{Name: "a", OpType: "Add", Inputs: []string{"x"}, Outputs: []string{"y"}}}, []string{"x"}, []string{"y"}),
			"has 1 inputs, want 2"},
		{"dangling input", graphModel(13, []*Node{{Name: "r", OpType: "Relu", Inputs: []string{"nope"}, Outputs: []string{"y"}}}, []string{"x"}, []string{"y"}),
			`reads "nope"`},
		{"cycle", graphModel(13, []*Node{{Name: "a", OpType: "Relu", Inputs: []string{"b"}, Outputs: []string{"a"}}, {Name: "b", OpType: "Relu", Inputs: []string{"a"}, Outputs: []string{"b"}}}, []string{"x"}, []string{"a"}),
			"cycle"},
		{"missing output", graphModel(13, []*Node{{Name: "r", OpType: "Relu", Inputs: []string{"x"}, Outputs: []string{"y"}}}, []string{"x"}, []string{"zz"}),
			`graph output "zz"`},
		{"no graph", &Model{}, "no graph"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewSession(tc.m)
			if err == nil {
				t.Fatal("NewSession succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %q does not contain %q", err, tc.want)
			}
			if !errclass.Is(err, errclass.InvalidArgument) {
				t.Errorf("class %s, want invalid_argument", errclass.ClassOf(err))
			}
		})
	}
	var ue *UnsupportedError
	_, err := NewSession(cases[0].m)
	if !errors.As(err, &ue) || ue.Op != "Foo" || ue.Node != "n3" || ue.Opset != 13 {
		t.Errorf("UnsupportedError not reachable with errors.As: %#v", ue)
	}
}

func TestSessionConcurrentRuns(t *testing.T) {
	const in, hidden, out = 8, 16, 3
	s := mustSession(t, mlpModel(in, hidden, out))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rows := 1 + w%3
			x := make([]float32, rows*in)
			for i := range x {
				x[i] = float32((i+w)%5) - 2
			}
			want := mlpReference(x, rows, in, hidden, out)
			for it := 0; it < 50; it++ {
				res, err := s.Run(context.Background(), map[string]*Tensor{"x": FromFloat32(x, rows, in)})
				if err != nil {
					errs <- err
					return
				}
				for i, v := range res["probs"].Float32s() {
					if math.Abs(float64(v)-want[i]) > 1e-5 {
						errs <- fmt.Errorf("worker %d iteration %d: probs[%d]=%v want %v", w, it, i, v, want[i])
						return
					}
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestSessionOutputsAreCallerOwned(t *testing.T) {
	s := mustSession(t, mlpModel(4, 3, 2))
	x := FromFloat32([]float32{1, 2, 3, 4}, 1, 4)
	r1, err := s.Run(context.Background(), map[string]*Tensor{"x": x})
	if err != nil {
		t.Fatal(err)
	}
	keep := append([]float32(nil), r1["probs"].Float32s()...)
	for i := 0; i < 5; i++ {
		if _, err := s.Run(context.Background(), map[string]*Tensor{"x": FromFloat32([]float32{-9, 9, -9, 9}, 1, 4)}); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(keep) != fmt.Sprint(r1["probs"].Float32s()) {
		t.Fatalf("a later run overwrote an earlier run's output: %v != %v", r1["probs"].Float32s(), keep)
	}
	if fmt.Sprint(x.Float32s()) != "[1 2 3 4]" {
		t.Fatalf("input modified: %v", x.Float32s())
	}
}

func TestSessionCanceled(t *testing.T) {
	s := mustSession(t, mlpModel(4, 3, 2))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Run(ctx, map[string]*Tensor{"x": FromFloat32([]float32{1, 2, 3, 4}, 1, 4)})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

func TestSessionRunErrorNamesNode(t *testing.T) {
	m := graphModel(13, []*Node{{Name: "mm", OpType: "MatMul", Inputs: []string{"a", "b"}, Outputs: []string{"y"}}}, []string{"a", "b"}, []string{"y"})
	s, err := NewSession(m)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Run(context.Background(), map[string]*Tensor{"a": FromFloat32(make([]float32, 6), 2, 3), "b": FromFloat32(make([]float32, 8), 4, 2)})
	if err == nil || !strings.Contains(err.Error(), `node "mm" (MatMul)`) || !errclass.Is(err, errclass.InvalidArgument) {
		t.Fatalf("err %v, want an invalid_argument error naming node mm", err)
	}
}

func TestOptionalInitializerInput(t *testing.T) {
	m := graphModel(13, []*Node{{Name: "add", OpType: "Add", Inputs: []string{"x", "bias"}, Outputs: []string{"y"}}}, []string{"x", "bias"}, []string{"y"})
	m.Graph.Initializers = []*TensorProto{{Name: "bias", Tensor: FromFloat32([]float32{10}, 1)}}
	s, err := NewSession(m)
	if err != nil {
		t.Fatal(err)
	}
	if in := s.Inputs(); len(in) != 2 || !in[1].Optional {
		t.Fatalf("Inputs() = %+v, want bias optional", in)
	}
	for _, tc := range []struct {
		inputs map[string]*Tensor
		want   string
	}{
		{map[string]*Tensor{"x": FromFloat32([]float32{1, 2}, 2)}, "[11 12]"},
		{map[string]*Tensor{"x": FromFloat32([]float32{1, 2}, 2), "bias": FromFloat32([]float32{1}, 1)}, "[2 3]"},
	} {
		res, err := s.Run(context.Background(), tc.inputs)
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(res["y"].Float32s()); got != tc.want {
			t.Errorf("y = %s, want %s", got, tc.want)
		}
	}
}

func TestInspect(t *testing.T) {
	info, err := Inspect(richModel())
	if err != nil {
		t.Fatal(err)
	}
	if info.ProducerName != "mlfleet-test" || len(info.Opsets) != 2 || len(info.Inputs) != 1 || len(info.Outputs) != 2 {
		t.Fatalf("Inspect = %+v", info)
	}
	zip := info.Outputs[1]
	if zip.Kind != KindSequence || zip.Type.SeqElem.Kind != KindMap || zip.Type.SeqElem.MapKey != String {
		t.Errorf("zip output = %+v, want seq(map(string, float))", zip)
	}
	if len(info.Unsupported) != 0 {
		t.Errorf("Unsupported = %v", info.Unsupported)
	}
	// Unsupported operators are listed, including those inside subgraphs.
	g := &pbw{}
	g.str(2, "g")
	then := (&pbw{}).str(2, "then")
	then.msg(1, pbNode("inner", "NoSuchOp", []string{"x"}, []string{"y"}))
	then.msg(12, pbValueInfo("y", Float, 1))
	g.msg(1, pbNode("if", "If", []string{"c"}, []string{"z"}, (&pbw{}).str(1, "then_branch").varint(20, int64(AttrGraph)).msg(6, then)))
	g.msg(1, pbNode("foo", "Foo", []string{"z"}, []string{"w"}))
	g.msg(11, pbValueInfo("c", Bool))
	g.msg(11, pbValueInfo("x", Float, 1))
	g.msg(12, pbValueInfo("w", Float, 1))
	info, err = Inspect(pbModel(13, g).b)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(info.Unsupported); got != "[ai.onnx:NoSuchOp@13 ai.onnx:Foo@13]" {
		t.Errorf("Unsupported = %s", got)
	}
	if _, err := Inspect([]byte("not a model at all")); !errclass.Is(err, errclass.InvalidArgument) {
		t.Errorf("Inspect(garbage) err = %v, want invalid_argument", err)
	}
}

func TestConstantFolding(t *testing.T) {
	// Shape -> Gather -> Unsqueeze -> Concat -> Reshape: only Shape's input is dynamic.
	m := graphModel(13, []*Node{
		{OpType: "Constant", Outputs: []string{"minus1"}, Attributes: []*Attribute{{Name: "value", Type: AttrTensor, T: &TensorProto{Tensor: FromInt64([]int64{-1}, 1)}}}},
		{OpType: "Reshape", Inputs: []string{"x", "minus1"}, Outputs: []string{"y"}},
	}, []string{"x"}, []string{"y"})
	s, err := NewSession(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.steps) != 1 {
		t.Errorf("%d run-time steps, want 1 (Constant folded)", len(s.steps))
	}
	res, err := s.Run(context.Background(), map[string]*Tensor{"x": FromFloat32([]float32{1, 2, 3, 4}, 2, 2)})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(res["y"].Shape) != "[4]" {
		t.Errorf("y shape %v", res["y"].Shape)
	}
}

func TestSubgraphOuterScope(t *testing.T) {
	// y = If(c) then (x + k) else (x - k), where x and k live in the outer graph.
	branch := func(name, op string) *Graph {
		return &Graph{Name: name,
			Nodes:   []*Node{{Name: name + "_op", OpType: op, Inputs: []string{"x", "k"}, Outputs: []string{name + "_out"}}},
			Outputs: []*ValueInfo{{Name: name + "_out"}}}
	}
	m := graphModel(13, []*Node{{Name: "if", OpType: "If", Inputs: []string{"c"}, Outputs: []string{"y"}, Attributes: []*Attribute{
		{Name: "then_branch", Type: AttrGraph, G: branch("then", "Add")},
		{Name: "else_branch", Type: AttrGraph, G: branch("else", "Sub")},
	}}}, []string{"c", "x"}, []string{"y"})
	m.Graph.Initializers = []*TensorProto{{Name: "k", Tensor: FromFloat32([]float32{10}, 1)}}
	s, err := NewSession(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cond bool
		want string
	}{{true, "[11 12]"}, {false, "[-9 -8]"}} {
		res, err := s.Run(context.Background(), map[string]*Tensor{"c": FromBool([]bool{tc.cond}), "x": FromFloat32([]float32{1, 2}, 2)})
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(res["y"].Float32s()); got != tc.want {
			t.Errorf("cond=%v: y = %s, want %s", tc.cond, got, tc.want)
		}
	}

	// An unsupported op inside a branch is named with its own node.
	bad := branch("then", "NoSuchOp")
	m.Graph.Nodes[0].Attributes[0].G = bad
	_, err = NewSession(m)
	if err == nil || !strings.Contains(err.Error(), `unsupported operator "NoSuchOp" (domain "ai.onnx", opset 13) at node "then_op"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestSequenceIO(t *testing.T) {
	m := graphModel(13, []*Node{
		{OpType: "SequenceLength", Inputs: []string{"seq"}, Outputs: []string{"n"}},
		{OpType: "SequenceInsert", Inputs: []string{"seq", "x"}, Outputs: []string{"seq2"}},
	}, []string{"seq", "x"}, []string{"n", "seq2"})
	m.Graph.Inputs[0].Type = &TypeInfo{Kind: KindSequence, SeqElem: &TypeInfo{Kind: KindTensor, Elem: Float}}
	s, err := NewSession(m)
	if err != nil {
		t.Fatal(err)
	}
	in := NewSequence(FromFloat32([]float32{1}, 1), FromFloat32([]float32{2, 3}, 2))
	res, err := s.Run(context.Background(), map[string]*Tensor{"seq": in, "x": FromFloat32([]float32{4}, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(res["n"].Int64s()); got != "[2]" {
		t.Errorf("n = %s", got)
	}
	if seq := res["seq2"]; seq.Kind != KindSequence || len(seq.Seq) != 3 || fmt.Sprint(seq.Seq[2].Float32s()) != "[4]" {
		t.Errorf("seq2 = %v", seq)
	}
	// Bad elements and wrong kinds are refused naming the input.
	for _, tc := range []struct {
		name string
		v    *Tensor
		want string
	}{
		{"tensor for sequence", FromFloat32([]float32{1}, 1), "is a tensor, want a sequence"},
		{"bad element", NewSequence(&Tensor{DType: Float, Shape: []int{2}, Data: []float32{1}}), "sequence element 0"},
	} {
		_, err := s.Run(context.Background(), map[string]*Tensor{"seq": tc.v, "x": FromFloat32([]float32{4}, 1)})
		if err == nil || !strings.Contains(err.Error(), tc.want) || errclass.FieldOf(err) != "seq" {
			t.Errorf("%s: err = %v", tc.name, err)
		}
	}
}

func TestRunAllocationLimit(t *testing.T) {
	m := graphModel(13, []*Node{{Name: "cos", OpType: "ConstantOfShape", Inputs: []string{"shape"}, Outputs: []string{"y"}}}, []string{"shape"}, []string{"y"})
	s, err := NewSession(m)
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Run(context.Background(), map[string]*Tensor{"shape": FromInt64([]int64{1 << 20, 1 << 20}, 2)})
	if err == nil || !errclass.Is(err, errclass.InvalidArgument) || !strings.Contains(err.Error(), `node "cos"`) {
		t.Fatalf("err = %v, want an invalid_argument error naming node cos", err)
	}
	// The session still works afterwards.
	res, err := s.Run(context.Background(), map[string]*Tensor{"shape": FromInt64([]int64{2}, 1)})
	if err != nil || fmt.Sprint(res["y"].Float32s()) != "[0 0]" {
		t.Fatalf("after the failure: %v %v", res, err)
	}
}

func TestSteadyStateAllocations(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counting is unreliable in -short and -race runs (sync.Pool drops items under -race)")
	}
	s := mustSession(t, mlpModel(32, 64, 4))
	inputs := map[string]*Tensor{"x": FromFloat32(make([]float32, 256*32), 256, 32)}
	ctx := context.Background()
	if _, err := s.Run(ctx, inputs); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := s.Run(ctx, inputs); err != nil {
			t.Fatal(err)
		}
	})
	// The output tensor, its map and a few headers; intermediate buffers are recycled.
	if allocs > 16 {
		t.Errorf("%.0f allocations per run, want at most 16", allocs)
	}
}

func TestLoopLimits(t *testing.T) {
	body := &Graph{Name: "body",
		Inputs: []*ValueInfo{{Name: "i"}, {Name: "c"}, {Name: "x"}},
		Nodes: []*Node{
			{OpType: "Identity", Inputs: []string{"c"}, Outputs: []string{"c_out"}},
			{OpType: "Add", Inputs: []string{"x", "one"}, Outputs: []string{"x_out"}},
		},
		Outputs: []*ValueInfo{{Name: "c_out"}, {Name: "x_out"}},
	}
	m := graphModel(13, []*Node{{Name: "loop", OpType: "Loop", Inputs: []string{"M", "", "x0"}, Outputs: []string{"x"},
		Attributes: []*Attribute{{Name: "body", Type: AttrGraph, G: body}}}}, []string{"M", "x0"}, []string{"x"})
	m.Graph.Initializers = []*TensorProto{{Name: "one", Tensor: FromFloat32([]float32{1}, 1)}}
	s, err := NewSession(m, WithMaxLoopIterations(100))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		m      int64
		want   string
		errHas string
		errCls errclass.Class
	}{
		{m: 5, want: "[5]"},
		{m: 0, want: "[0]"},
		{m: -3, want: "[0]"},
		{m: 100, want: "[100]"},
		{m: 101, errHas: "limit of 100 iterations", errCls: errclass.InvalidArgument},
		{m: 1 << 40, errHas: "limit of 100 iterations", errCls: errclass.InvalidArgument},
	} {
		res, err := s.Run(context.Background(), map[string]*Tensor{"M": FromInt64([]int64{tc.m}), "x0": FromFloat32([]float32{0}, 1)})
		if tc.errHas != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errHas) || !errclass.Is(err, tc.errCls) {
				t.Errorf("M=%d: err = %v", tc.m, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("M=%d: %v", tc.m, err)
		}
		if got := fmt.Sprint(res["x"].Float32s()); got != tc.want {
			t.Errorf("M=%d: x = %s, want %s", tc.m, got, tc.want)
		}
	}
}
