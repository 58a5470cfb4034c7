package modelfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// onnxTestdata is where Debian's libonnx-testdata puts the ONNX backend
// test models.
const onnxTestdata = "/usr/share/libonnx-testdata/data"

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInspectONNXGolden(t *testing.T) {
	tests := []struct {
		golden string // file name under testdata/
		model  string // model path
	}{
		{"affine.golden", "testdata/affine.onnx"},
		{"node_abs.golden", onnxTestdata + "/node/test_abs/model.onnx"},
		{"node_gemm_default_matrix_bias.golden", onnxTestdata + "/node/test_gemm_default_matrix_bias/model.onnx"},
		// Initializers listed among the graph inputs (IR 3).
		{"pytorch_batchnorm2d_eval.golden", onnxTestdata + "/pytorch-converted/test_BatchNorm2d_eval/model.onnx"},
		// Sequence inputs and outputs, initializers.
		{"simple_sequence_model1.golden", onnxTestdata + "/simple/test_sequence_model1/model.onnx"},
		// Two opset domains.
		{"simple_gradient_of_add.golden", onnxTestdata + "/simple/test_gradient_of_add/model.onnx"},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			f, err := os.Open(tt.model)
			if errors.Is(err, os.ErrNotExist) && strings.HasPrefix(tt.model, onnxTestdata) {
				t.Skipf("%s absent (Debian package libonnx-testdata)", tt.model)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			info, err := InspectONNX(f)
			if err != nil {
				t.Fatalf("InspectONNX(%s): %v", tt.model, err)
			}
			got, err := json.MarshalIndent(info, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want := readFile(t, golden)
			if !bytes.Equal(got, want) {
				t.Errorf("InspectONNX(%s) =\n%s\nwant (%s)\n%s", tt.model, got, golden, want)
			}
		})
	}
}

// TestInspectONNXBackendModels runs every model of the ONNX backend test
// data through InspectONNX and checks its inputs and outputs against an
// independent decode of the graph.
func TestInspectONNXBackendModels(t *testing.T) {
	models, _ := filepath.Glob(onnxTestdata + "/*/*/model.onnx")
	if len(models) == 0 {
		t.Skipf("no models under %s (Debian package libonnx-testdata)", onnxTestdata)
	}
	withInits := 0
	for _, path := range models {
		raw := readFile(t, path)
		info, err := InspectONNX(bytes.NewReader(raw))
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		g, err := decodeGraph(raw)
		if err != nil {
			t.Fatalf("%s: test decoder: %v", path, err)
		}
		var wantIn []string
		for _, in := range g.inputs {
			if !g.inits[in] {
				wantIn = append(wantIn, in)
			}
		}
		if len(g.inits) > 0 && len(wantIn) < len(g.inputs) {
			withInits++
		}
		var gotIn, gotOut []string
		for _, f := range info.Inputs {
			gotIn = append(gotIn, f.Name)
		}
		for _, f := range info.Outputs {
			gotOut = append(gotOut, f.Name)
		}
		if !reflect.DeepEqual(gotIn, wantIn) {
			t.Errorf("%s: inputs %q, want %q (graph inputs %q minus initializers)", path, gotIn, wantIn, g.inputs)
		}
		if !reflect.DeepEqual(gotOut, g.outputs) {
			t.Errorf("%s: outputs %q, want %q", path, gotOut, g.outputs)
		}
		if len(info.Ops) == 0 || info.IRVersion == 0 || len(info.Opsets) == 0 {
			t.Errorf("%s: incomplete info %+v", path, info)
		}
	}
	t.Logf("%d models inspected, %d with initializers among their graph inputs", len(models), withInits)
	if withInits == 0 && len(models) > 500 {
		t.Error("no model exercised the initializer filter")
	}
}

// graph is what decodeGraph finds: the test's own, in-memory decode.
type graph struct {
	inputs, outputs []string
	inits           map[string]bool
}

// decodeGraph decodes a whole ModelProto held in memory, independently of
// the streaming decoder under test.
func decodeGraph(model []byte) (graph, error) {
	g := graph{inits: map[string]bool{}}
	nameOf := func(msg []byte, field uint64) string {
		var name string
		_ = fields(msg, func(num, wt uint64, v []byte) {
			if num == field && wt == 2 {
				name = string(v)
			}
		})
		return name
	}
	var inner error
	err := fields(model, func(num, wt uint64, v []byte) {
		if num != 7 || wt != 2 {
			return
		}
		inner = fields(v, func(num, wt uint64, v []byte) {
			if wt != 2 {
				return
			}
			switch num {
			case 5:
				g.inits[nameOf(v, 8)] = true
			case 11:
				g.inputs = append(g.inputs, nameOf(v, 1))
			case 12:
				g.outputs = append(g.outputs, nameOf(v, 1))
			}
		})
	})
	if err == nil {
		err = inner
	}
	return g, err
}

// fields calls fn for each field of a protobuf message; v is the value of
// length-delimited fields, nil for others.
func fields(msg []byte, fn func(num, wt uint64, v []byte)) error {
	uvarint := func() (uint64, error) {
		var x uint64
		for i := 0; i < 10 && len(msg) > 0; i++ {
			b := msg[0]
			msg = msg[1:]
			x |= uint64(b&0x7f) << (7 * i)
			if b < 0x80 {
				return x, nil
			}
		}
		return 0, errors.New("bad varint")
	}
	for len(msg) > 0 {
		tag, err := uvarint()
		if err != nil {
			return err
		}
		var v []byte
		switch tag & 7 {
		case 0:
			if _, err := uvarint(); err != nil {
				return err
			}
		case 1, 5:
			n := 8
			if tag&7 == 5 {
				n = 4
			}
			if len(msg) < n {
				return errors.New("short fixed field")
			}
			msg = msg[n:]
		case 2:
			n, err := uvarint()
			if err != nil || n > uint64(len(msg)) {
				return errors.New("bad length")
			}
			v, msg = msg[:n], msg[n:]
		default:
			return errors.New("bad wire type")
		}
		fn(tag>>3, tag&7, v)
	}
	return nil
}

// Protobuf writers for the synthetic models below.

func appendVarint(b []byte, x uint64) []byte {
	for x >= 0x80 {
		b = append(b, byte(x)|0x80)
		x >>= 7
	}
	return append(b, byte(x))
}

func appendTag(b []byte, num, wt uint64) []byte { return appendVarint(b, num<<3|wt) }

func appendBytes(b []byte, num uint64, v []byte) []byte {
	b = appendTag(b, num, 2)
	b = appendVarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendUint(b []byte, num, v uint64) []byte { return appendVarint(appendTag(b, num, 0), v) }

// valueInfoProto builds a float tensor ValueInfoProto [batch, dims...].
func valueInfoProto(name string, dims ...uint64) []byte {
	var shape []byte
	shape = appendBytes(shape, 1, appendBytes(nil, 2, []byte("batch"))) // dim_param
	for _, d := range dims {
		shape = appendBytes(shape, 1, appendUint(nil, 1, d))
	}
	tensor := appendUint(nil, 1, 1) // FLOAT
	tensor = appendBytes(tensor, 2, shape)
	return appendBytes(appendBytes(nil, 1, []byte(name)), 2, appendBytes(nil, 1, tensor))
}

func TestInspectONNXBadInput(t *testing.T) {
	affine := readFile(t, "testdata/affine.onnx")
	rnd := rand.New(rand.NewSource(1))
	random := make([]byte, 4096)
	rnd.Read(random)

	tests := []struct {
		name  string
		input []byte
		field string // field named by the error, "" = don't care
	}{
		{name: "empty", input: nil, field: "format"},
		{name: "random bytes", input: random, field: "format"},
		{name: "zero bytes", input: make([]byte, 100)},
		{name: "text", input: []byte("this is not a model\n")},
		{name: "json", input: []byte(`{"irVersion": 8, "graph": {}}`)},
		{name: "zip header", input: []byte("PK\x03\x04\x14\x00\x00\x00\x08\x00")},
		{name: "varint overflow", input: bytes.Repeat([]byte{0xff}, 11)},
		{name: "group wire type", input: []byte{0x0b, 0x0c}},
		{name: "field number 0", input: []byte{0x00, 0x01}},
		{
			// A well-formed protobuf that is not a ModelProto: a TensorProto.
			name:  "non-ONNX protobuf (TensorProto)",
			input: appendBytes(appendUint(appendUint(nil, 1, 3), 2, 1), 8, []byte("w")),
			field: "format",
		},
		{
			// A well-formed protobuf with a graph-like field 7 but no ir_version.
			name:  "no ir_version",
			input: appendBytes(nil, 7, appendBytes(nil, 2, []byte("g"))),
			field: "format",
		},
		{
			name:  "ir_version 8 without opset_import",
			input: appendBytes(appendUint(nil, 1, 8), 7, appendBytes(nil, 2, []byte("g"))),
			field: "opset_import",
		},
		{
			name:  "graph longer than the file",
			input: append(appendVarint(appendTag(appendUint(nil, 1, 8), 7, 2), 1<<39), 0x0a),
		},
		{
			name:  "length beyond 1 TB",
			input: appendVarint(appendTag(appendUint(nil, 1, 8), 7, 2), 1<<45),
		},
		{
			name:  "producer larger than any name",
			input: append(appendVarint(appendTag(appendUint(nil, 1, 8), 2, 2), 1<<30), 'x'),
		},
		{
			name:  "node without op_type",
			input: appendBytes(appendBytes(appendUint(nil, 1, 8), 7, appendBytes(nil, 1, appendBytes(nil, 3, []byte("n")))), 8, appendUint(nil, 2, 13)),
		},
		{
			name: "node longer than its graph",
			input: appendBytes(appendUint(nil, 1, 8), 7,
				append(appendVarint(appendTag(nil, 1, 2), 50), appendBytes(nil, 4, []byte("Abs"))...)),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := InspectONNX(bytes.NewReader(tt.input))
			checkBad(t, info, err)
			if tt.field != "" && errclass.FieldOf(err) != tt.field {
				t.Errorf("field %q, want %q (%v)", errclass.FieldOf(err), tt.field, err)
			}
		})
	}
	t.Run("every truncation of affine.onnx", func(t *testing.T) {
		for n := 0; n < len(affine); n++ {
			info, err := InspectONNX(bytes.NewReader(affine[:n]))
			if err == nil {
				t.Errorf("prefix of %d/%d bytes accepted: %+v", n, len(affine), info)
				continue
			}
			checkBad(t, info, err)
		}
	})
	t.Run("every single-byte corruption of affine.onnx", func(t *testing.T) {
		// Must never panic; errors must be classified. Some corruptions
		// still parse (e.g. a changed name), which is fine.
		b := bytes.Clone(affine)
		for i := range b {
			for _, x := range []byte{0x00, 0x7f, 0x80, 0xff} {
				old := b[i]
				b[i] = x
				if info, err := InspectONNX(bytes.NewReader(b)); err != nil {
					checkBad(t, info, err)
				}
				b[i] = old
			}
		}
	})
	t.Run("reader error", func(t *testing.T) {
		r := io.MultiReader(bytes.NewReader(affine[:40]), errReader{})
		info, err := InspectONNX(r)
		checkBad(t, info, err)
	})
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func checkBad(t *testing.T, info *Info, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, info %+v", info)
	}
	if info != nil {
		t.Errorf("info %+v returned with error %v", info, err)
	}
	if c := errclass.ClassOf(err); c != errclass.InvalidArgument {
		t.Errorf("class %s, want %s (%v)", c, errclass.InvalidArgument, err)
	}
	if errclass.FieldOf(err) == "" {
		t.Errorf("error %q names no field", err)
	}
}

// TestInspectONNXHugeLengthNotAllocated feeds short streams that declare
// huge fields and checks that what they declare is never allocated.
func TestInspectONNXHugeLengthNotAllocated(t *testing.T) {
	head := appendUint(nil, 1, 8)
	tests := []struct {
		name  string
		input []byte
	}{
		// A name of maxField bytes is allowed, but the stream holds 1 byte of it.
		{"producer of 16 MB declared", append(appendVarint(appendTag(head, 2, 2), maxField), 'x')},
		// A graph claiming 1 TB holding a node claiming 16 MB.
		{"node of 16 MB declared", append(appendVarint(appendTag(appendVarint(appendTag(head, 7, 2), 1<<39), 1, 2), maxField), 0x22)},
		// An initializer name claiming 16 MB.
		{"initializer name of 16 MB declared", append(appendVarint(appendTag(appendVarint(appendTag(appendVarint(appendTag(head, 7, 2), 1<<39), 5, 2), 1<<38), 8, 2), maxField), 'w')},
		// Weights claiming 1 TB.
		{"raw_data of 1 TB declared", appendVarint(appendTag(appendVarint(appendTag(appendVarint(appendTag(head, 7, 2), 1<<40), 5, 2), 1<<40-8), 9, 2), 1<<40-16)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alloc := allocated(func() {
				info, err := InspectONNX(bytes.NewReader(tt.input))
				checkBad(t, info, err)
			})
			if alloc > 1<<20 {
				t.Errorf("allocated %d bytes for a %d-byte input", alloc, len(tt.input))
			}
		})
	}
}

// allocated returns the bytes allocated while fn ran.
func allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// syntheticModel returns a reader producing an ONNX model of about size
// bytes: y = x * w with w an initializer whose raw_data fills the file. The
// weights are generated as they are read, never held in memory. It returns
// the exact length too.
func syntheticModel(size int64) (func() io.Reader, int64) {
	// GraphProto, in the order exporters write it: node, name, initializer,
	// inputs, outputs. The initializer's raw_data is streamed in between.
	node := appendBytes(nil, 1, []byte("x"))
	node = appendBytes(node, 1, []byte("w"))
	node = appendBytes(node, 2, []byte("y"))
	node = appendBytes(node, 4, []byte("Mul"))
	graphHead := appendBytes(nil, 1, node)
	graphHead = appendBytes(graphHead, 2, []byte("big"))

	weights := uint64(size)
	initHead := appendUint(nil, 1, weights/4) // dims
	initHead = appendUint(initHead, 2, 1)     // FLOAT
	initHead = appendBytes(initHead, 8, []byte("w"))
	initHead = appendVarint(appendTag(initHead, 9, 2), weights) // raw_data header
	initLen := uint64(len(initHead)) + weights

	graphTail := appendBytes(nil, 11, valueInfoProto("x", weights/4))
	graphTail = appendBytes(graphTail, 11, valueInfoProto("w", weights/4))
	graphTail = appendBytes(graphTail, 12, valueInfoProto("y", weights/4))

	initTag := appendVarint(appendTag(nil, 5, 2), initLen)
	graphLen := uint64(len(graphHead)+len(initTag)) + initLen + uint64(len(graphTail))

	head := appendUint(nil, 1, 8)
	head = appendBytes(head, 2, []byte("synthetic"))
	head = appendVarint(appendTag(head, 7, 2), graphLen)
	head = append(head, graphHead...)
	head = append(head, initTag...)
	head = append(head, initHead...)
	tail := append(bytes.Clone(graphTail), appendBytes(nil, 8, appendUint(nil, 2, 13))...)

	total := int64(len(head)) + int64(weights) + int64(len(tail))
	return func() io.Reader {
		return io.MultiReader(bytes.NewReader(head), &patternReader{left: int64(weights)}, bytes.NewReader(tail))
	}, total
}

// patternReader generates left bytes of a repeating pattern.
type patternReader struct{ left int64 }

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	for i := range p {
		p[i] = byte(i)
	}
	r.left -= int64(len(p))
	return len(p), nil
}

func TestInspectONNXStreams64MB(t *testing.T) {
	newReader, size := syntheticModel(64 << 20)
	var info *Info
	var err error
	alloc := allocated(func() { info, err = InspectONNX(newReader()) })
	if err != nil {
		t.Fatalf("InspectONNX: %v", err)
	}
	t.Logf("%d-byte model inspected with %d bytes allocated", size, alloc)
	if alloc > 1<<20 {
		t.Errorf("allocated %d bytes for a %d-byte model, want well under 8 MB (1 MB)", alloc, size)
	}
	if len(info.Inputs) != 1 || info.Inputs[0].Name != "x" || !reflect.DeepEqual(info.Inputs[0].Shape, []int{16 << 20}) {
		t.Errorf("inputs %+v, want x of shape [%d] (w is an initializer)", info.Inputs, 16<<20)
	}
	if len(info.Outputs) != 1 || info.Outputs[0].Name != "y" {
		t.Errorf("outputs %+v", info.Outputs)
	}
	if !reflect.DeepEqual(info.Ops, []string{":Mul"}) || info.Opsets[""] != 13 || info.Producer != "synthetic" {
		t.Errorf("info %+v", info)
	}
}

func BenchmarkInspect64MB(b *testing.B) {
	newReader, size := syntheticModel(64 << 20)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := InspectONNX(newReader()); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzInspectONNX(f *testing.F) {
	affine, err := os.ReadFile("testdata/affine.onnx")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(affine)
	for _, n := range []int{0, 1, 2, 20, 21, 22, 40, 100, len(affine) - 5, len(affine) - 1} {
		f.Add(affine[:n])
	}
	for _, name := range []string{"node/test_abs", "simple/test_sequence_model1", "pytorch-converted/test_BatchNorm2d_eval"} {
		if b, err := os.ReadFile(filepath.Join(onnxTestdata, name, "model.onnx")); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := InspectONNX(bytes.NewReader(data))
		if err != nil {
			checkBad(t, info, err)
			return
		}
		if info.IRVersion == 0 || len(info.Opsets) == 0 {
			t.Errorf("accepted without ir_version or opsets: %+v", info)
		}
	})
}
