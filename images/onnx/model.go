package onnx

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// Model is a decoded ModelProto.
type Model struct {
	IRVersion       int64
	OpsetImports    []OpsetID
	ProducerName    string
	ProducerVersion string
	Domain          string
	ModelVersion    int64
	DocString       string
	Graph           *Graph
	Metadata        []KeyValue
}

// OpsetID is an OperatorSetIdProto.
type OpsetID struct {
	Domain  string
	Version int64
}

// KeyValue is a StringStringEntryProto.
type KeyValue struct {
	Key, Value string
}

// Graph is a decoded GraphProto.
type Graph struct {
	Name         string
	Nodes        []*Node
	Initializers []*TensorProto
	Inputs       []*ValueInfo
	Outputs      []*ValueInfo
	ValueInfo    []*ValueInfo
	DocString    string
}

// Node is a decoded NodeProto.
type Node struct {
	Name       string
	OpType     string
	Domain     string
	Inputs     []string
	Outputs    []string
	Attributes []*Attribute
	DocString  string
}

// AttrType is an AttributeProto.AttributeType.
type AttrType int32

// The attribute types.
const (
	AttrUndefined AttrType = 0
	AttrFloat     AttrType = 1
	AttrInt       AttrType = 2
	AttrString    AttrType = 3
	AttrTensor    AttrType = 4
	AttrGraph     AttrType = 5
	AttrFloats    AttrType = 6
	AttrInts      AttrType = 7
	AttrStrings   AttrType = 8
	AttrTensors   AttrType = 9
	AttrGraphs    AttrType = 10
	AttrSparse    AttrType = 11
)

func (a AttrType) String() string {
	switch a {
	case AttrFloat:
		return "float"
	case AttrInt:
		return "int"
	case AttrString:
		return "string"
	case AttrTensor:
		return "tensor"
	case AttrGraph:
		return "graph"
	case AttrFloats:
		return "floats"
	case AttrInts:
		return "ints"
	case AttrStrings:
		return "strings"
	case AttrTensors:
		return "tensors"
	case AttrGraphs:
		return "graphs"
	}
	return fmt.Sprintf("attrtype(%d)", int32(a))
}

// Attribute is a decoded AttributeProto.
type Attribute struct {
	Name    string
	Type    AttrType
	F       float32
	I       int64
	S       []byte
	T       *TensorProto
	G       *Graph
	Floats  []float32
	Ints    []int64
	Strings [][]byte
	Tensors []*TensorProto
	Graphs  []*Graph
	RefName string // ref_attr_name, for attributes inside functions
}

// TensorProto is a decoded TensorProto: its Tensor holds the data.
type TensorProto struct {
	Name      string
	DocString string
	Tensor    *Tensor
}

// ValueInfo is a decoded ValueInfoProto.
type ValueInfo struct {
	Name      string
	Type      *TypeInfo
	DocString string
}

// TypeInfo is a decoded TypeProto: a tensor type, a sequence or a map.
type TypeInfo struct {
	Kind     Kind
	Elem     DType     // tensor element type (KindTensor)
	Shape    []Dim     // nil when the shape is unknown (KindTensor)
	HasShape bool      // whether the shape field was present (a present, empty shape is a scalar)
	SeqElem  *TypeInfo // KindSequence
	MapKey   DType     // KindMap
	MapValue *TypeInfo // KindMap
	Optional bool      // an optional_type wrapper was unwrapped
}

// Dim is one dimension of a shape: a fixed Value, or a symbolic Param, or
// unknown (Value -1, Param "").
type Dim struct {
	Value int64
	Param string
}

func (t *TypeInfo) String() string {
	if t == nil {
		return "unknown"
	}
	switch t.Kind {
	case KindSequence:
		return "seq(" + t.SeqElem.String() + ")"
	case KindMap:
		return "map(" + t.MapKey.String() + "," + t.MapValue.String() + ")"
	}
	s := "tensor(" + t.Elem.String() + ")"
	if t.HasShape {
		s += fmt.Sprint(t.Shape)
	}
	return s
}

// maxDepth bounds the nesting of graphs and types, so that hostile input
// cannot exhaust the stack.
const maxDepth = 32

// Decode decodes an ONNX model file. Errors are classified InvalidArgument.
func Decode(b []byte) (*Model, error) {
	return decode(b, false)
}

func decode(b []byte, lite bool) (*Model, error) {
	m, err := decoder{lite: lite}.model(b)
	if err != nil {
		return nil, errclass.Wrap(errclass.InvalidArgument, err, "decode onnx model")
	}
	if m.Graph == nil {
		return nil, errclass.Invalid("graph", "decode onnx model: the model has no graph")
	}
	return m, nil
}

// Load reads at most limit bytes from r and decodes them. A file larger than
// limit is refused with a TooLarge error.
func Load(r io.Reader, limit int64) (*Model, error) {
	if limit <= 0 {
		return nil, errclass.Invalid("limit", "load onnx model: limit %d must be positive", limit)
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("load onnx model: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, errclass.New(errclass.TooLarge, "", "load onnx model: the file is larger than the limit of %d bytes", limit)
	}
	return Decode(b)
}

// decoder decodes the messages of a model. depth is how deeply the message
// being decoded is nested in messages of its own kind (graphs in graph
// attributes, or types in types); lite is Inspect's mode, which checks
// initializers' data but does not copy it.
type decoder struct {
	depth int
	lite  bool
}

func (d decoder) model(b []byte) (*Model, error) {
	m := &Model{}
	w := wire{b: b}
	err := w.fields(func(f, t int) (err error) {
		switch f {
		case 1:
			m.IRVersion, err = w.int64Field(f, t)
		case 2:
			m.ProducerName, err = w.stringField(f, t)
		case 3:
			m.ProducerVersion, err = w.stringField(f, t)
		case 4:
			m.Domain, err = w.stringField(f, t)
		case 5:
			m.ModelVersion, err = w.int64Field(f, t)
		case 6:
			m.DocString, err = w.stringField(f, t)
		case 7:
			m.Graph, err = message(&w, f, t, func(b []byte) (*Graph, error) {
				g, err := d.graph(b)
				if err != nil {
					return nil, fmt.Errorf("graph: %w", err)
				}
				return g, nil
			})
		case 8:
			err = appendMessage(&w, f, t, &m.OpsetImports, decodeOpset)
		case 14:
			err = appendMessage(&w, f, t, &m.Metadata, decodeKV)
		default:
			err = w.skip(t)
		}
		return err
	}, func(f int, err error) error {
		return fmt.Errorf("model field %d: %w", f, err)
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

func decodeOpset(b []byte) (OpsetID, error) {
	var o OpsetID
	w := wire{b: b}
	err := w.fields(func(f, t int) (err error) {
		switch f {
		case 1:
			o.Domain, err = w.stringField(f, t)
		case 2:
			o.Version, err = w.int64Field(f, t)
		default:
			err = w.skip(t)
		}
		return err
	}, func(_ int, err error) error {
		return fmt.Errorf("opset_import: %w", err)
	})
	return o, err
}

func decodeKV(b []byte) (KeyValue, error) {
	var kv KeyValue
	w := wire{b: b}
	err := w.fields(func(f, t int) (err error) {
		switch f {
		case 1:
			kv.Key, err = w.stringField(f, t)
		case 2:
			kv.Value, err = w.stringField(f, t)
		default:
			err = w.skip(t)
		}
		return err
	}, nil)
	return kv, err
}

func (d decoder) graph(b []byte) (*Graph, error) {
	if d.depth > maxDepth {
		return nil, fmt.Errorf("graphs nested deeper than %d", maxDepth)
	}
	g := &Graph{}
	w := wire{b: b}
	err := w.fields(func(f, t int) (err error) {
		switch f {
		case 1:
			err = appendMessage(&w, f, t, &g.Nodes, d.node)
		case 2:
			g.Name, err = w.stringField(f, t)
		case 5:
			err = appendMessage(&w, f, t, &g.Initializers, d.tensor)
		case 10:
			g.DocString, err = w.stringField(f, t)
		case 11:
			err = appendMessage(&w, f, t, &g.Inputs, decodeValueInfo)
		case 12:
			err = appendMessage(&w, f, t, &g.Outputs, decodeValueInfo)
		case 13:
			err = appendMessage(&w, f, t, &g.ValueInfo, decodeValueInfo)
		case 15:
			_, err = w.bytesField(f, t)
			if err == nil {
				err = fmt.Errorf("sparse initializers are not supported")
			}
		default:
			err = w.skip(t)
		}
		return err
	}, func(f int, err error) error {
		return fmt.Errorf("graph %q field %d: %w", g.Name, f, err)
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

func (d decoder) node(b []byte) (*Node, error) {
	n := &Node{}
	w := wire{b: b}
	err := w.fields(func(f, t int) (err error) {
		var s string
		switch f {
		case 1:
			if s, err = w.stringField(f, t); err == nil {
				n.Inputs = append(n.Inputs, s)
			}
		case 2:
			if s, err = w.stringField(f, t); err == nil {
				n.Outputs = append(n.Outputs, s)
			}
		case 3:
			n.Name, err = w.stringField(f, t)
		case 4:
			n.OpType, err = w.stringField(f, t)
		case 5:
			err = appendMessage(&w, f, t, &n.Attributes, d.attribute)
		case 6:
			n.DocString, err = w.stringField(f, t)
		case 7:
			n.Domain, err = w.stringField(f, t)
		default:
			err = w.skip(t)
		}
		return err
	}, func(f int, err error) error {
		return fmt.Errorf("node %q (%s) field %d: %w", n.Name, n.OpType, f, err)
	})
	if err != nil {
		return nil, err
	}
	return n, nil
}

func (d decoder) attribute(b []byte) (*Attribute, error) {
	a := &Attribute{}
	// Attribute tensors are always decoded in full (operators read them
	// when a session is planned), and subgraphs are one level deeper.
	full := decoder{}
	sub := decoder{depth: d.depth + 1, lite: d.lite}
	w := wire{b: b}
	err := w.fields(func(f, t int) (err error) {
		switch f {
		case 1:
			a.Name, err = w.stringField(f, t)
		case 2:
			a.F, err = w.float32Field(f, t)
		case 3:
			a.I, err = w.int64Field(f, t)
		case 4:
			a.S, err = w.bytesField(f, t)
		case 5:
			a.T, err = message(&w, f, t, full.tensor)
		case 6:
			a.G, err = message(&w, f, t, sub.graph)
		case 7:
			a.Floats, err = w.appendFloat32s(a.Floats, f, t)
		case 8:
			a.Ints, err = w.appendVarints(a.Ints, f, t)
		case 9:
			var s []byte
			if s, err = w.bytesField(f, t); err == nil {
				a.Strings = append(a.Strings, s)
			}
		case 10:
			err = appendMessage(&w, f, t, &a.Tensors, full.tensor)
		case 11:
			err = appendMessage(&w, f, t, &a.Graphs, sub.graph)
		case 20:
			var v int64
			v, err = w.int64Field(f, t)
			a.Type = AttrType(v)
		case 21:
			a.RefName, err = w.stringField(f, t)
		default:
			err = w.skip(t)
		}
		return err
	}, func(f int, err error) error {
		return fmt.Errorf("attribute %q field %d: %w", a.Name, f, err)
	})
	if err != nil {
		return nil, err
	}
	if a.Type == AttrUndefined {
		// Very old writers leave the type out; infer it from what is set.
		switch {
		case a.G != nil:
			a.Type = AttrGraph
		case a.T != nil:
			a.Type = AttrTensor
		case a.S != nil:
			a.Type = AttrString
		case len(a.Floats) > 0:
			a.Type = AttrFloats
		case len(a.Ints) > 0:
			a.Type = AttrInts
		case len(a.Strings) > 0:
			a.Type = AttrStrings
		case len(a.Tensors) > 0:
			a.Type = AttrTensors
		case len(a.Graphs) > 0:
			a.Type = AttrGraphs
		}
	}
	return a, nil
}

func decodeValueInfo(b []byte) (*ValueInfo, error) {
	vi := &ValueInfo{}
	w := wire{b: b}
	err := w.fields(func(f, t int) (err error) {
		switch f {
		case 1:
			vi.Name, err = w.stringField(f, t)
		case 2:
			vi.Type, err = message(&w, f, t, decoder{}.typeProto)
		case 3:
			vi.DocString, err = w.stringField(f, t)
		default:
			err = w.skip(t)
		}
		return err
	}, func(f int, err error) error {
		return fmt.Errorf("value_info %q field %d: %w", vi.Name, f, err)
	})
	if err != nil {
		return nil, err
	}
	return vi, nil
}

// typeProto decodes a TypeProto nested d.depth types deep.
func (d decoder) typeProto(b []byte) (*TypeInfo, error) {
	if d.depth > maxDepth {
		return nil, fmt.Errorf("types nested deeper than %d", maxDepth)
	}
	ti := &TypeInfo{}
	inner := decoder{depth: d.depth + 1}
	w := wire{b: b}
	err := w.fields(func(f, t int) (err error) {
		var sub []byte
		switch f {
		case 1: // tensor_type
			if sub, err = w.bytesField(f, t); err == nil {
				ti.Kind = KindTensor
				err = decodeTensorType(sub, ti)
			}
		case 4: // sequence_type
			if sub, err = w.bytesField(f, t); err == nil {
				ti.Kind = KindSequence
				ti.SeqElem, err = inner.wrappedType(sub)
			}
		case 5: // map_type
			if sub, err = w.bytesField(f, t); err == nil {
				ti.Kind = KindMap
				err = inner.mapType(sub, ti)
			}
		case 9: // optional_type
			var in *TypeInfo
			if in, err = message(&w, f, t, inner.wrappedType); err == nil && in != nil {
				*ti = *in
				ti.Optional = true
			}
		default:
			err = w.skip(t)
		}
		return err
	}, func(f int, err error) error {
		return fmt.Errorf("type field %d: %w", f, err)
	})
	if err != nil {
		return nil, err
	}
	return ti, nil
}

// wrappedType decodes a message whose field 1 is a TypeProto (a sequence's
// or an optional's element type), nil when the field is absent.
func (d decoder) wrappedType(b []byte) (*TypeInfo, error) {
	var out *TypeInfo
	w := wire{b: b}
	err := w.fields(func(f, t int) (err error) {
		if f == 1 {
			out, err = message(&w, f, t, d.typeProto)
		} else {
			err = w.skip(t)
		}
		return err
	}, nil)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// mapType decodes a map's key and value types into ti.
func (d decoder) mapType(b []byte, ti *TypeInfo) error {
	w := wire{b: b}
	return w.fields(func(f, t int) (err error) {
		switch f {
		case 1:
			var v int64
			v, err = w.int64Field(f, t)
			ti.MapKey = DType(v)
		case 2:
			ti.MapValue, err = message(&w, f, t, d.typeProto)
		default:
			err = w.skip(t)
		}
		return err
	}, nil)
}

// decodeTensorType decodes a tensor type's element type and shape into ti.
func decodeTensorType(b []byte, ti *TypeInfo) error {
	w := wire{b: b}
	return w.fields(func(f, t int) (err error) {
		switch f {
		case 1:
			var v int64
			v, err = w.int64Field(f, t)
			ti.Elem = DType(v)
		case 2:
			var sub []byte
			if sub, err = w.bytesField(f, t); err == nil {
				ti.HasShape = true
				ti.Shape, err = decodeShape(sub)
			}
		default:
			err = w.skip(t)
		}
		return err
	}, nil)
}

func decodeShape(b []byte) ([]Dim, error) {
	// Collect the dims in a buffer on the stack (most shapes fit), so that
	// the result costs one allocation of the exact size.
	var buf [8]Dim
	dims := buf[:0]
	w := wire{b: b}
	err := w.fields(func(f, t int) error {
		if f != 1 {
			return w.skip(t)
		}
		sub, err := w.bytesField(f, t)
		if err != nil {
			return err
		}
		d, err := decodeDim(sub, len(dims))
		if err != nil {
			return err
		}
		dims = append(dims, d)
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	out := make([]Dim, len(dims))
	copy(out, dims)
	return out, nil
}

// decodeDim decodes the shape's dimension number i.
func decodeDim(b []byte, i int) (Dim, error) {
	d := Dim{Value: -1}
	w := wire{b: b}
	err := w.fields(func(f, t int) (err error) {
		switch f {
		case 1:
			d.Value, err = w.int64Field(f, t)
			if err == nil && (d.Value < 0 || d.Value > math.MaxInt32) {
				err = fmt.Errorf("dim_value %d is out of range", d.Value)
			}
		case 2:
			d.Param, err = w.stringField(f, t)
		default:
			err = w.skip(t)
		}
		return err
	}, func(_ int, err error) error {
		return fmt.Errorf("shape dim %d: %w", i, err)
	})
	return d, err
}

// maxTensorElems bounds the element count claimed by a tensor's dims when the
// tensor carries no data (a zero-size tensor); tensors with data are bounded
// by the data's length.
const maxTensorElems = 1 << 30 // also keeps every dim within a 32-bit int (arm/v7)

// DecodeTensor decodes a serialized TensorProto (as in the node tests'
// input_N.pb files).
func DecodeTensor(b []byte) (*TensorProto, error) {
	tp, err := decoder{}.tensor(b)
	if err != nil {
		return nil, errclass.Wrap(errclass.InvalidArgument, err, "decode tensor")
	}
	return tp, nil
}

// tensor decodes a TensorProto. With d.lite set it checks the data but
// leaves Tensor.Data nil (for Inspect, which must not copy the weights).
func (d decoder) tensor(b []byte) (*TensorProto, error) {
	var (
		dims       []int64
		dt         DType
		name, doc  string
		floats     []float32
		doubles    []float64
		int32s     []int64
		int64s     []int64
		uint64s    []int64
		strs       [][]byte
		raw        []byte
		hasRaw     bool
		external   bool
		dataLocExt bool
	)
	var strBuf [4][]byte // string tensors are mostly short: keep them off the heap
	strs = strBuf[:0]
	w := wire{b: b}
	err := w.fields(func(f, t int) (err error) {
		switch f {
		case 1:
			dims, err = w.appendVarints(dims, f, t)
		case 2:
			var v int64
			v, err = w.int64Field(f, t)
			dt = DType(v)
		case 4:
			floats, err = w.appendFloat32s(floats, f, t)
		case 5:
			int32s, err = w.appendVarints(int32s, f, t)
		case 6:
			var s []byte
			if s, err = w.bytesField(f, t); err == nil {
				strs = append(strs, s)
			}
		case 7:
			int64s, err = w.appendVarints(int64s, f, t)
		case 8:
			name, err = w.stringField(f, t)
		case 9:
			raw, err = w.bytesField(f, t)
			hasRaw = true
		case 10:
			doubles, err = w.appendFloat64s(doubles, f, t)
		case 11:
			uint64s, err = w.appendVarints(uint64s, f, t)
		case 12:
			doc, err = w.stringField(f, t)
		case 13:
			_, err = w.bytesField(f, t)
			external = true
		case 14:
			var v int64
			v, err = w.int64Field(f, t)
			dataLocExt = v == 1
		default:
			err = w.skip(t)
		}
		return err
	}, func(f int, err error) error {
		return fmt.Errorf("tensor %q field %d: %w", name, f, err)
	})
	if err != nil {
		return nil, err
	}
	if external || dataLocExt {
		return nil, fmt.Errorf("tensor %q uses external data, which is not supported", name)
	}
	if !dt.Supported() {
		return nil, fmt.Errorf("tensor %q: data_type %d is not supported", name, int32(dt))
	}
	// Bound the element count by the input length before allocating.
	var limit int64 = maxTensorElems
	n, err := checkedSize(dims, limit)
	if err != nil {
		return nil, fmt.Errorf("tensor %q dims: %w", name, err)
	}
	shape := make([]int, len(dims))
	for i, d := range dims {
		shape[i] = int(d)
	}
	tp := &TensorProto{Name: name, DocString: doc}
	tt := &Tensor{DType: dt, Shape: shape}
	tp.Tensor = tt
	have := 0
	switch {
	case hasRaw:
		have = rawCount(dt, len(raw))
	case dt == Float:
		have = len(floats)
	case dt == Double:
		have = len(doubles)
	case dt == Int64:
		have = len(int64s)
	case dt == Uint32 || dt == Uint64:
		have = len(uint64s)
	case dt == String:
		have = len(strs)
	default:
		have = len(int32s)
	}
	if have != n {
		if hasRaw && dt != String && len(raw)%elemSize(dt) != 0 {
			return nil, fmt.Errorf("tensor %q: raw_data length %d is not a multiple of the %s element size", name, len(raw), dt)
		}
		return nil, fmt.Errorf("tensor %q: dims %v need %d elements, the data has %d", name, dims, n, have)
	}
	if hasRaw && dt == String {
		return nil, fmt.Errorf("tensor %q: string tensors cannot use raw_data", name)
	}
	if d.lite {
		return tp, nil
	}
	if hasRaw {
		tt.Data = decodeRaw(dt, raw, n)
		return tp, nil
	}
	data := makeData(dt, n)
	switch v := data.(type) {
	case []float32:
		switch dt {
		case Float:
			copy(v, floats)
		case Float16:
			for i, x := range int32s {
				v[i] = f16ToF32(uint16(x))
			}
		case BFloat16:
			for i, x := range int32s {
				v[i] = bf16ToF32(uint16(x))
			}
		}
	case []float64:
		copy(v, doubles)
	case []int64:
		copy(v, int64s)
	case []uint64:
		convertInts(v, uint64s)
	case []uint32:
		convertInts(v, uint64s)
	case []string:
		for i, s := range strs {
			v[i] = string(s)
		}
	case []int32:
		convertInts(v, int32s)
	case []int16:
		convertInts(v, int32s)
	case []int8:
		convertInts(v, int32s)
	case []uint16:
		convertInts(v, int32s)
	case []uint8:
		convertInts(v, int32s)
	case []bool:
		for i, x := range int32s {
			v[i] = x != 0
		}
	}
	tt.Data = data
	return tp, nil
}

// convertInts converts the integers of a typed data field (int32_data or
// uint64_data, read as int64s) to the tensor's element type, truncating as
// the format defines.
func convertInts[T int8 | int16 | int32 | uint8 | uint16 | uint32 | uint64](dst []T, src []int64) {
	for i, x := range src {
		dst[i] = T(x)
	}
}

func elemSize(dt DType) int {
	switch dt {
	case Double, Int64, Uint64, Complex128:
		return 8
	case Float, Int32, Uint32, Complex64:
		return 4
	case Float16, BFloat16, Int16, Uint16:
		return 2
	}
	return 1
}

func rawCount(dt DType, n int) int {
	if dt == String {
		return -1
	}
	if n%elemSize(dt) != 0 {
		return -1
	}
	return n / elemSize(dt)
}

func decodeRaw(dt DType, raw []byte, n int) any {
	le := binary.LittleEndian
	d := makeData(dt, n)
	switch v := d.(type) {
	case []float32:
		switch dt {
		case Float:
			for i := range v {
				v[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
			}
		case Float16:
			for i := range v {
				v[i] = f16ToF32(le.Uint16(raw[2*i:]))
			}
		case BFloat16:
			for i := range v {
				v[i] = bf16ToF32(le.Uint16(raw[2*i:]))
			}
		}
	case []float64:
		for i := range v {
			v[i] = math.Float64frombits(le.Uint64(raw[8*i:]))
		}
	case []int64:
		for i := range v {
			v[i] = int64(le.Uint64(raw[8*i:]))
		}
	case []uint64:
		for i := range v {
			v[i] = le.Uint64(raw[8*i:])
		}
	case []int32:
		for i := range v {
			v[i] = int32(le.Uint32(raw[4*i:]))
		}
	case []uint32:
		for i := range v {
			v[i] = le.Uint32(raw[4*i:])
		}
	case []int16:
		for i := range v {
			v[i] = int16(le.Uint16(raw[2*i:]))
		}
	case []uint16:
		for i := range v {
			v[i] = le.Uint16(raw[2*i:])
		}
	case []int8:
		for i := range v {
			v[i] = int8(raw[i])
		}
	case []uint8:
		copy(v, raw)
	case []bool:
		for i := range v {
			v[i] = raw[i] != 0
		}
	}
	return d
}
