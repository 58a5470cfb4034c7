package scorer

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mlfleet/mlfleet/images/onnx"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/manifest"
)

// maxModelSize bounds a model file read at startup.
const maxModelSize = 2 << 30

// feed is how one model input is built from the schema's columns.
type feed struct {
	name  string
	dtype onnx.DType
	cols  []int // schema input indexes, concatenated in this order
	per   int   // elements per row of the tensor
	shape []int // per-row shape of the tensor (after the batch dimension)
}

// onnxBackend scores with the built-in ONNX engine.
type onnxBackend struct {
	sess    *onnx.Session
	feeds   []feed
	concat  bool // rule (b): the schema's fields are concatenated into one input
	outputs []onnx.IOInfo
	labels  []string
}

// loadONNX loads the manifest's model and binds the schema to its inputs.
func loadONNX(m *manifest.Manifest, modelDir string) (*onnxBackend, error) {
	if len(m.Models) != 1 {
		return nil, errclass.Invalid("models", "runtime %q serves exactly one model, the manifest has %d", manifest.RuntimeONNX, len(m.Models))
	}
	ref := m.Models[0]
	path := filepath.Join(modelDir, filepath.FromSlash(ref.Path))
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("model %q: %w", ref.Name, err)
	}
	defer f.Close()
	model, err := onnx.Load(f, maxModelSize)
	if err != nil {
		return nil, fmt.Errorf("model %q: load %s: %w", ref.Name, path, err)
	}
	sess, err := onnx.NewSession(model)
	if err != nil {
		return nil, fmt.Errorf("model %q: %s: %w", ref.Name, path, err)
	}
	b := &onnxBackend{sess: sess, outputs: sess.Outputs(), labels: m.Scoring.OutputLabels}
	if err := b.bind(m.Schema); err != nil {
		return nil, fmt.Errorf("model %q (%s): %w", ref.Name, path, err)
	}
	return b, nil
}

// bind applies the binding rule of the package doc.
func (b *onnxBackend) bind(schema manifest.Schema) error {
	var required []onnx.IOInfo
	byName := map[string]onnx.IOInfo{}
	for _, in := range b.sess.Inputs() {
		byName[in.Name] = in
		if !in.Optional {
			required = append(required, in)
		}
	}
	for _, f := range schema.Inputs {
		for _, d := range f.Shape {
			if d < 0 {
				return errclass.Invalid("schema.inputs", "input %q has a dynamic shape %v; the onnx runtime needs fixed per-row shapes", f.Name, f.Shape)
			}
		}
	}
	// Rule (a): every schema input names a model input.
	all := true
	for _, f := range schema.Inputs {
		if _, ok := byName[f.Name]; !ok {
			all = false
			break
		}
	}
	if all {
		covered := map[string]bool{}
		for i, f := range schema.Inputs {
			in := byName[f.Name]
			covered[f.Name] = true
			fd, err := feedFor(in, []manifest.Field{f}, []int{i})
			if err != nil {
				return err
			}
			b.feeds = append(b.feeds, fd)
		}
		for _, in := range required {
			if !covered[in.Name] {
				return errclass.Invalid("schema.inputs", "model input %q has no schema input of that name", in.Name)
			}
		}
		return nil
	}
	// Rule (b): one tensor input [N, K], K numeric schema elements.
	if len(required) != 1 || required[0].Kind != onnx.KindTensor || required[0].Shape != nil && len(required[0].Shape) != 2 {
		return errclass.Invalid("schema.inputs", "cannot bind schema inputs %s to model inputs %s: the schema must name every model input, or the model must have a single [N, K] tensor input fed by K numeric schema elements", fieldNames(schema.Inputs), ioNames(b.sess.Inputs()))
	}
	in := required[0]
	cols := make([]int, len(schema.Inputs))
	for i, f := range schema.Inputs {
		if !f.Type.IsNumeric() && f.Type != manifest.TypeBool {
			return errclass.Invalid("schema.inputs", "cannot concatenate input %q of type %s into model input %q: only numeric fields can be concatenated", f.Name, f.Type, in.Name)
		}
		cols[i] = i
	}
	fd, err := feedFor(in, schema.Inputs, cols)
	if err != nil {
		return err
	}
	b.feeds = []feed{fd}
	b.concat = true
	return nil
}

// feedFor checks that fields can feed model input in and describes the feed.
func feedFor(in onnx.IOInfo, fields []manifest.Field, cols []int) (feed, error) {
	if in.Kind != onnx.KindTensor {
		return feed{}, errclass.Invalid("schema.inputs", "model input %q is not a tensor", in.Name)
	}
	per := 0
	for _, f := range fields {
		n := 1
		for _, d := range f.Shape {
			n *= d
		}
		per += n
		if !compatible(f.Type, in.DType) {
			return feed{}, errclass.Invalid("schema.inputs", "input %q of type %s cannot feed model input %q of type %s", f.Name, f.Type, in.Name, in.DType)
		}
	}
	fd := feed{name: in.Name, dtype: in.DType, cols: cols, per: per}
	if fd.dtype == onnx.Undefined {
		fd.dtype = dtypeOf(fields[0].Type)
	}
	switch {
	case in.Shape == nil: // unknown rank: [N, field shape...] or [N, K]
		if len(fields) == 1 {
			fd.shape = slices.Clone(fields[0].Shape)
		} else {
			fd.shape = []int{per}
		}
	case len(in.Shape) == 0:
		return feed{}, errclass.Invalid("schema.inputs", "model input %q is a scalar, it has no batch dimension", in.Name)
	default:
		fixed, dyn := 1, 0
		fd.shape = slices.Clone(in.Shape[1:])
		for _, d := range fd.shape {
			if d < 0 {
				dyn++
			} else {
				fixed *= d
			}
		}
		switch {
		case dyn == 0 && fixed != per:
			return feed{}, errclass.Invalid("schema.inputs", "model input %q has shape %v (%d elements per row), the schema gives %d (%s)", in.Name, in.Shape, fixed, per, fieldNames(fields))
		case dyn == 1 && (fixed == 0 || per%fixed != 0):
			return feed{}, errclass.Invalid("schema.inputs", "model input %q has shape %v, the schema gives %d elements per row (%s)", in.Name, in.Shape, per, fieldNames(fields))
		case dyn == 1:
			for i, d := range fd.shape {
				if d < 0 {
					fd.shape[i] = per / fixed
				}
			}
		case dyn > 1:
			if len(fields) == 1 && len(fields[0].Shape) == len(fd.shape) {
				fd.shape = slices.Clone(fields[0].Shape)
			} else {
				return feed{}, errclass.Invalid("schema.inputs", "model input %q has shape %v with several dynamic dimensions the schema does not fix", in.Name, in.Shape)
			}
		}
	}
	return fd, nil
}

func compatible(t manifest.DataType, d onnx.DType) bool {
	switch {
	case d == onnx.Undefined:
		return true
	case t == manifest.TypeString:
		return d == onnx.String
	case d == onnx.String:
		return false
	case t == manifest.TypeBool:
		return d == onnx.Bool || d.IsInt() || d.IsFloat()
	}
	return d.IsInt() || d.IsFloat() || d == onnx.Bool
}

func dtypeOf(t manifest.DataType) onnx.DType {
	switch t {
	case manifest.TypeBool:
		return onnx.Bool
	case manifest.TypeString:
		return onnx.String
	case manifest.TypeInt8:
		return onnx.Int8
	case manifest.TypeInt16:
		return onnx.Int16
	case manifest.TypeInt32:
		return onnx.Int32
	case manifest.TypeInt64:
		return onnx.Int64
	case manifest.TypeUint8:
		return onnx.Uint8
	case manifest.TypeUint16:
		return onnx.Uint16
	case manifest.TypeUint32:
		return onnx.Uint32
	case manifest.TypeUint64:
		return onnx.Uint64
	case manifest.TypeFloat16:
		return onnx.Float16
	case manifest.TypeFloat32:
		return onnx.Float
	}
	return onnx.Double
}

func fieldNames(fs []manifest.Field) string {
	names := make([]string, len(fs))
	for i, f := range fs {
		names[i] = f.Name
	}
	return strings.Join(names, ", ")
}

func ioNames(ios []onnx.IOInfo) string {
	names := make([]string, len(ios))
	for i, in := range ios {
		names[i] = fmt.Sprintf("%s %s%v", in.Name, in.DType, in.Shape)
	}
	return strings.Join(names, ", ")
}

func (b *onnxBackend) ready() bool                { return true }
func (b *onnxBackend) start(context.Context)      {}
func (b *onnxBackend) platform() string           { return "onnx" }
func (b *onnxBackend) modelInputs() []onnx.IOInfo { return b.sess.Inputs() }

// infer builds the input tensors from the batch's columns and runs the model.
func (b *onnxBackend) infer(ctx context.Context, bt *batch) (*result, error) {
	in := make(map[string]*onnx.Tensor, len(b.feeds))
	for _, fd := range b.feeds {
		in[fd.name] = buildTensor(fd, bt)
	}
	out, err := b.sess.Run(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("run model: %w", err)
	}
	res := &result{n: bt.n}
	for _, o := range b.outputs {
		t := out[o.Name]
		if t == nil {
			continue
		}
		if err := checkRows(o.Name, t, bt.n); err != nil {
			return nil, err
		}
		res.outs = append(res.outs, namedTensor{name: o.Name, t: t})
	}
	res.labels = b.labels
	return res, nil
}

// checkRows makes sure an output has one entry per input row.
func checkRows(name string, t *onnx.Tensor, n int) error {
	switch t.Kind {
	case onnx.KindSequence:
		if len(t.Seq) != n {
			return fmt.Errorf("output %q has %d elements for %d rows", name, len(t.Seq), n)
		}
		for _, e := range t.Seq {
			if e == nil || e.Kind != onnx.KindMap || e.Keys == nil || e.Values == nil || e.Keys.Len() != e.Values.Len() {
				return fmt.Errorf("output %q is a sequence of something other than maps", name)
			}
		}
	case onnx.KindTensor:
		if len(t.Shape) == 0 || t.Shape[0] != n {
			return fmt.Errorf("output %q has shape %v, want one row per input row (%d)", name, t.Shape, n)
		}
	default:
		return fmt.Errorf("output %q is a map, want a tensor or a sequence", name)
	}
	return nil
}

// buildTensor lays the feed's columns out as a [N, shape...] tensor.
func buildTensor(fd feed, bt *batch) *onnx.Tensor {
	n := bt.n
	t := onnx.NewTensor(fd.dtype, append([]int{n}, fd.shape...)...)
	off := 0
	for _, ci := range fd.cols {
		c := &bt.cols[ci]
		for r := 0; r < n; r++ {
			dst := r*fd.per + off
			src := r * c.per
			for j := 0; j < c.per; j++ {
				setElem(t, dst+j, c, src+j)
			}
		}
		off += c.per
	}
	return t
}

// setElem converts element j of column c into element i of t.
func setElem(t *onnx.Tensor, i int, c *column, j int) {
	switch d := t.Data.(type) {
	case []float32:
		d[i] = float32(c.num(j))
	case []float64:
		d[i] = c.num(j)
	case []string:
		d[i] = c.str[j]
	case []bool:
		d[i] = c.num(j) != 0
	case []int64:
		d[i] = c.int(j)
	case []int32:
		d[i] = int32(c.int(j))
	case []int16:
		d[i] = int16(c.int(j))
	case []int8:
		d[i] = int8(c.int(j))
	case []uint64:
		d[i] = uint64(c.int(j))
	case []uint32:
		d[i] = uint32(c.int(j))
	case []uint16:
		d[i] = uint16(c.int(j))
	case []uint8:
		d[i] = uint8(c.int(j))
	}
}

// num is element j as float64 (bools as 0/1).
func (c *column) num(j int) float64 {
	if c.bools != nil {
		if c.bools[j] {
			return 1
		}
		return 0
	}
	return c.number(j)
}

// int is element j as int64 (floats truncated, bools 0/1).
func (c *column) int(j int) int64 {
	switch {
	case c.i64 != nil:
		return c.i64[j]
	case c.bools != nil:
		if c.bools[j] {
			return 1
		}
		return 0
	}
	return int64(c.f64[j])
}
