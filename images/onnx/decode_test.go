package onnx

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

var update = flag.Bool("update", false, "rewrite golden files")

// richModel exercises every field the decoder reads: all attribute kinds,
// every TensorProto data field, shapes with dim_value and dim_param, a
// sequence-of-map output type, metadata, and unknown fields to skip.
func richModel() []byte {
	sub := &pbw{}
	sub.str(2, "then_branch")
	sub.msg(1, pbNode("c", "Constant", nil, []string{"k"}, (&pbw{}).str(1, "value").varint(20, int64(AttrTensor)).msg(5, pbTensorI64("", []int64{}, []int64{7}))))
	sub.msg(12, pbValueInfo("k", Int64))

	attrs := []*pbw{
		pbAttrFloat("f", 0.5),
		pbAttrInt("i", -3),
		(&pbw{}).str(1, "s").varint(20, int64(AttrString)).str(4, "hello"),
		(&pbw{}).str(1, "t").varint(20, int64(AttrTensor)).msg(5, pbTensorF32("tv", []int64{2}, []float32{1.5, -2}, false)),
		(&pbw{}).str(1, "g").varint(20, int64(AttrGraph)).msg(6, sub),
		(&pbw{}).str(1, "fs").varint(20, int64(AttrFloats)).packedF32(7, []float32{1, 2, 3}),
		// ints unpacked, to check the non-packed encoding
		(&pbw{}).str(1, "is").varint(20, int64(AttrInts)).varint(8, 4).varint(8, -5).varint(8, 6),
		(&pbw{}).str(1, "ss").varint(20, int64(AttrStrings)).str(9, "a").str(9, "b"),
		(&pbw{}).str(1, "ts").varint(20, int64(AttrTensors)).msg(10, pbTensorI64("t0", []int64{1}, []int64{1})).msg(10, pbTensorI64("t1", []int64{1}, []int64{2})),
		(&pbw{}).str(1, "gs").varint(20, int64(AttrGraphs)).msg(11, sub),
	}
	g := &pbw{}
	g.str(2, "rich")
	g.msg(1, pbNode("n0", "Identity", []string{"x"}, []string{"y"}, attrs...))
	g.msg(5, pbTensorF32("raw_f32", []int64{2, 2}, []float32{1, 2, 3, 4}, true))
	g.msg(5, pbTensorF32("data_f32", []int64{3}, []float32{0.25, -1, 1e6}, false))
	g.msg(5, pbTensorI64("data_i64", []int64{2}, []int64{-1, 1 << 40}))
	g.msg(5, (&pbw{}).packedInts(1, []int64{2}).varint(2, int64(Int32)).str(8, "data_i32").packedInts(5, []int64{-7, 9}))
	g.msg(5, (&pbw{}).packedInts(1, []int64{2}).varint(2, int64(Double)).str(8, "data_f64").packedF64(10, []float64{3.5, -0.125}))
	g.msg(5, (&pbw{}).packedInts(1, []int64{2}).varint(2, int64(Uint64)).str(8, "data_u64").packedInts(11, []int64{1, 2}))
	g.msg(5, (&pbw{}).packedInts(1, []int64{2}).varint(2, int64(String)).str(8, "data_str").str(6, "x").str(6, "yz"))
	g.msg(5, (&pbw{}).packedInts(1, []int64{3}).varint(2, int64(Bool)).str(8, "data_bool").packedInts(5, []int64{1, 0, 1}))
	g.msg(5, (&pbw{}).packedInts(1, []int64{2}).varint(2, int64(Float16)).str(8, "data_f16").packedInts(5, []int64{0x3c00, 0xc000}))
	g.msg(5, (&pbw{}).packedInts(1, []int64{2}).varint(2, int64(Int8)).str(8, "raw_i8").bytes(9, []byte{0xff, 0x02}))
	g.msg(11, pbValueInfo("x", Float, "N", 3))
	g.msg(12, pbValueInfo("y", Float, "N", 3))
	// seq(map(string, float)) output, as ZipMap produces
	mapT := (&pbw{}).varint(1, int64(String)).msg(2, (&pbw{}).msg(1, (&pbw{}).varint(1, int64(Float))))
	seqT := (&pbw{}).msg(1, (&pbw{}).msg(5, mapT))
	g.msg(12, (&pbw{}).str(1, "zip").msg(2, (&pbw{}).msg(4, seqT)))
	g.varint(99, 12345) // unknown field
	g.bytes(98, []byte("unknown bytes"))

	m := &pbw{}
	m.varint(1, 8).str(2, "mlfleet-test").str(3, "0.1").str(4, "ai.mlfleet").varint(5, 3).str(6, "a doc string")
	m.msg(8, (&pbw{}).str(1, "").varint(2, 13))
	m.msg(8, (&pbw{}).str(1, "ai.onnx.ml").varint(2, 3))
	m.msg(14, (&pbw{}).str(1, "author").str(2, "tests"))
	m.msg(7, g)
	m.f32(77, 1.0) // unknown fixed32 field
	return m.b
}

// dumpModel renders a decoded model deterministically for golden files.
func dumpModel(m *Model) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "ir_version: %d\nproducer: %q %q\ndomain: %q\nmodel_version: %d\ndoc: %q\n", m.IRVersion, m.ProducerName, m.ProducerVersion, m.Domain, m.ModelVersion, m.DocString)
	for _, o := range m.OpsetImports {
		fmt.Fprintf(&sb, "opset: %q %d\n", o.Domain, o.Version)
	}
	for _, kv := range m.Metadata {
		fmt.Fprintf(&sb, "metadata: %q=%q\n", kv.Key, kv.Value)
	}
	dumpGraph(&sb, m.Graph, "")
	return sb.String()
}

func dumpGraph(sb *strings.Builder, g *Graph, ind string) {
	fmt.Fprintf(sb, "%sgraph %q\n", ind, g.Name)
	for _, vi := range g.Inputs {
		fmt.Fprintf(sb, "%s  input %q: %s\n", ind, vi.Name, vi.Type)
	}
	for _, vi := range g.Outputs {
		fmt.Fprintf(sb, "%s  output %q: %s\n", ind, vi.Name, vi.Type)
	}
	inits := append([]*TensorProto(nil), g.Initializers...)
	sort.Slice(inits, func(i, j int) bool { return inits[i].Name < inits[j].Name })
	for _, t := range inits {
		fmt.Fprintf(sb, "%s  initializer %q: %s %v %v\n", ind, t.Name, t.Tensor.DType, t.Tensor.Shape, t.Tensor.Data)
	}
	for _, n := range g.Nodes {
		fmt.Fprintf(sb, "%s  node %q %s domain=%q in=%q out=%q\n", ind, n.Name, n.OpType, n.Domain, n.Inputs, n.Outputs)
		for _, a := range n.Attributes {
			fmt.Fprintf(sb, "%s    attr %q %s:", ind, a.Name, a.Type)
			switch a.Type {
			case AttrFloat:
				fmt.Fprintf(sb, " %v\n", a.F)
			case AttrInt:
				fmt.Fprintf(sb, " %v\n", a.I)
			case AttrString:
				fmt.Fprintf(sb, " %q\n", a.S)
			case AttrTensor:
				fmt.Fprintf(sb, " %q %s %v %v\n", a.T.Name, a.T.Tensor.DType, a.T.Tensor.Shape, a.T.Tensor.Data)
			case AttrGraph:
				sb.WriteString("\n")
				dumpGraph(sb, a.G, ind+"      ")
			case AttrFloats:
				fmt.Fprintf(sb, " %v\n", a.Floats)
			case AttrInts:
				fmt.Fprintf(sb, " %v\n", a.Ints)
			case AttrStrings:
				fmt.Fprintf(sb, " %q\n", a.Strings)
			case AttrTensors:
				for _, t := range a.Tensors {
					fmt.Fprintf(sb, " %q=%v", t.Name, t.Tensor.Data)
				}
				sb.WriteString("\n")
			case AttrGraphs:
				sb.WriteString("\n")
				for _, sg := range a.Graphs {
					dumpGraph(sb, sg, ind+"      ")
				}
			default:
				sb.WriteString(" ?\n")
			}
		}
	}
}

func TestDecodeGolden(t *testing.T) {
	cases := []struct {
		name  string
		model func() []byte
	}{
		{"rich", richModel},
		{"mlp", func() []byte { return mlpModel(4, 3, 2) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			onnxPath := filepath.Join("testdata", tc.name+".onnx")
			goldenPath := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(onnxPath, tc.model(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			b, err := os.ReadFile(onnxPath)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(b, tc.model()) {
				t.Errorf("%s differs from what the test encoder writes; run with -update if the change is intended", onnxPath)
			}
			m, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			got := dumpModel(m)
			if *update {
				if err := os.WriteFile(goldenPath, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(goldenPath)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("decoded model differs from %s:\n--- got\n%s\n--- want\n%s", goldenPath, got, want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	ext := (&pbw{}).packedInts(1, []int64{1}).varint(2, int64(Float)).str(8, "w").msg(13, (&pbw{}).str(1, "location").str(2, "w.bin"))
	g := (&pbw{}).msg(5, ext).msg(12, pbValueInfo("w", Float, 1))
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "no graph"},
		{"external data", pbModel(13, g).b, `tensor "w" uses external data, which is not supported`},
		{"truncated varint", []byte{0x08, 0x80}, "truncated"},
		{"length past end", []byte{0x3a, 0x10, 0x01}, "exceeds"},
		{"bad wire type", []byte{0x0f}, "wire type"},
		{"field zero", []byte{0x00, 0x01}, "invalid field number"},
		{"wrong wire type for graph", []byte{0x38, 0x01}, "wire type"},
		{"huge dims no data", pbModel(13, (&pbw{}).msg(5, (&pbw{}).packedInts(1, []int64{1 << 20, 1 << 20}).varint(2, int64(Float)).str(8, "big"))).b, "more than"},
		{"huge dim", pbModel(13, (&pbw{}).msg(5, (&pbw{}).packedInts(1, []int64{0, 1 << 40}).varint(2, int64(Float)).str(8, "big"))).b, "larger than"},
		{"dims mismatch", pbModel(13, (&pbw{}).msg(5, pbTensorF32("w", []int64{3}, []float32{1, 2}, true))).b, "need 3 elements"},
		{"unsupported dtype", pbModel(13, (&pbw{}).msg(5, (&pbw{}).varint(2, int64(Complex64)).str(8, "c"))).b, "data_type 14"},
		{"negative dim_value", pbModel(13, (&pbw{}).msg(11, pbValueInfo("x", Float, -1))).b, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.b)
			if err == nil {
				t.Fatalf("Decode succeeded, want error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if !errclass.Is(err, errclass.InvalidArgument) {
				t.Errorf("error class %s, want invalid_argument", errclass.ClassOf(err))
			}
		})
	}
}

func TestDecodeTruncations(t *testing.T) {
	for _, b := range [][]byte{richModel(), mlpModel(4, 3, 2)} {
		if _, err := Decode(b); err != nil {
			t.Fatal(err)
		}
		for n := 0; n < len(b); n++ {
			m, err := Decode(b[:n])
			if err == nil && m.Graph == nil {
				t.Fatalf("prefix %d decoded without a graph and without error", n)
			}
		}
	}
}

func TestLoadLimit(t *testing.T) {
	b := mlpModel(4, 3, 2)
	if _, err := Load(bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatalf("Load at exact limit: %v", err)
	}
	_, err := Load(bytes.NewReader(b), int64(len(b)-1))
	if !errclass.Is(err, errclass.TooLarge) {
		t.Fatalf("Load over limit: err %v, want too_large", err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(richModel())
	f.Add(mlpModel(4, 3, 2))
	f.Add(mlpModel(4, 3, 2)[:57])
	f.Add([]byte{0x3a, 0x02, 0x0a, 0x00})
	for _, name := range []string{"test_add", "test_conv_with_strides_padding", "test_gemm_all_attributes"} {
		if b, err := os.ReadFile(filepath.Join(nodeTestDir(), name, "model.onnx")); err == nil {
			f.Add(b)
			f.Add(b[:len(b)/2])
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, ierr := Inspect(b)
		m, err := Decode(b)
		if (ierr == nil) != (err == nil) && (err != nil || !strings.Contains(ierr.Error(), "no outputs")) {
			t.Fatalf("Inspect and Decode disagree: %v vs %v", ierr, err)
		}
		_ = info
		if err != nil {
			return
		}
		// Whatever decodes must also inspect and plan without panicking.
		if _, err := InspectModel(m); err != nil {
			return
		}
		_, _ = NewSession(m)
	})
}

func FuzzDecodeTensor(f *testing.F) {
	f.Add(pbTensorF32("t", []int64{2, 2}, []float32{1, 2, 3, 4}, true).b)
	f.Add(pbTensorF32("t", []int64{3}, []float32{1, 2, 3}, false).b)
	f.Add(pbTensorI64("t", []int64{2}, []int64{-1, 5}).b)
	f.Add((&pbw{}).packedInts(1, []int64{2}).varint(2, int64(String)).str(6, "a").str(6, "b").b)
	f.Add((&pbw{}).packedInts(1, []int64{1 << 30, 0}).varint(2, int64(Float)).b)
	f.Fuzz(func(t *testing.T, b []byte) {
		tp, err := DecodeTensor(b)
		if err != nil {
			return
		}
		tt := tp.Tensor
		if !dataMatches(tt.DType, tt.Data) || shapeSize(tt.Shape) != tt.Len() {
			t.Fatalf("decoded tensor is inconsistent: %s%v with %d elements of %T", tt.DType, tt.Shape, tt.Len(), tt.Data)
		}
	})
}
