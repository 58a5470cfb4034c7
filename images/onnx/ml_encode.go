package onnx

// Encoding ai.onnx.ml operators: OneHotEncoder, LabelEncoder (opset 1 and 2
// attribute forms) and ZipMap.

import (
	"math"
	"strconv"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

func buildOneHotEncoder(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	b.CheckOutputs(1, 1)
	ints := b.AttrInts("cats_int64s", nil)
	strs := b.AttrStrings("cats_strings", nil)
	zeros := b.AttrInt("zeros", 1) != 0
	if b.Err() != nil {
		return nil, b.Err()
	}
	if (len(ints) == 0) == (len(strs) == 0) {
		b.Errorf("want exactly one of attributes cats_int64s (%d values) and cats_strings (%d values)", len(ints), len(strs))
		return nil, b.Err()
	}
	intIdx := make(map[int64]int, len(ints))
	for i, v := range ints {
		if _, dup := intIdx[v]; !dup {
			intIdx[v] = i
		}
	}
	strIdx := make(map[string]int, len(strs))
	for i, v := range strs {
		if _, dup := strIdx[v]; !dup {
			strIdx[v] = i
		}
	}
	nc := len(ints) + len(strs)
	// Y has X's shape plus a last dimension of one column per category.
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		if x == nil || x.Kind != KindTensor {
			return errclass.Invalid("inputs[0]", "input X must be a tensor")
		}
		y := rc.Alloc(Float, append(append([]int{}, x.Shape...), nc))
		yd := y.Float32s()
		unknown := func(i int, v string) error {
			if zeros {
				return nil
			}
			return errclass.Invalid("inputs[0]", "input X[%d] is %s, not one of the categories (and attribute zeros is 0)", i, v)
		}
		if s, ok := x.Data.([]string); ok {
			if len(strs) == 0 {
				return errclass.Invalid("inputs[0]", "input X is a string tensor but the categories are int64 (cats_int64s)")
			}
			for i, v := range s {
				if k, ok := strIdx[v]; ok {
					yd[i*nc+k] = 1
				} else if err := unknown(i, strconv.Quote(v)); err != nil {
					return err
				}
			}
			out[0] = y
			return nil
		}
		if len(ints) == 0 {
			return errclass.Invalid("inputs[0]", "input X has type %s but the categories are strings (cats_strings)", x.DType)
		}
		vals, err := x.AsInt64s()
		if err != nil {
			fl, ferr := x.AsFloat64s()
			if ferr != nil {
				return errclass.Invalid("inputs[0]", "input X has type %s, want string, int64, int32, float32 or float64", x.DType)
			}
			vals = make([]int64, len(fl))
			for i, v := range fl {
				vals[i] = int64(v)
			}
		}
		for i, v := range vals {
			if k, ok := intIdx[v]; ok {
				yd[i*nc+k] = 1
			} else if err := unknown(i, strconv.FormatInt(v, 10)); err != nil {
				return err
			}
		}
		out[0] = y
		return nil
	}, nil
}

// labelMap is a LabelEncoder's table from one key type to one value type.
type labelMap struct {
	keyType, valType DType
	byStr            map[string]int
	byInt            map[int64]int
	byFloat          map[float32]int
	nanKey           int // index of a NaN key, or -1
	vStr             []string
	vInt             []int64
	vFloat           []float32
	dStr             string
	dInt             int64
	dFloat           float32
}

func buildLabelEncoder(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	b.CheckOutputs(1, 1)
	m := &labelMap{nanKey: -1}
	if b.Opset < 2 {
		// Opset 1: strings <-> their index in classes_strings.
		classes := b.AttrStrings("classes_strings", nil)
		m.dInt = b.AttrInt("default_int64", -1)
		m.dStr = b.AttrString("default_string", "_Unused")
		if b.Err() != nil {
			return nil, b.Err()
		}
		m.byStr = make(map[string]int, len(classes))
		for i, c := range classes {
			if _, dup := m.byStr[c]; !dup {
				m.byStr[c] = i
			}
		}
		return func(rc *RunContext, in, out []*Tensor) error {
			x := in[0]
			if x == nil || x.Kind != KindTensor {
				return errclass.Invalid("inputs[0]", "input X must be a tensor")
			}
			switch d := x.Data.(type) {
			case []string:
				y := rc.Alloc(Int64, x.Shape)
				yd := y.Int64s()
				for i, v := range d {
					if k, ok := m.byStr[v]; ok {
						yd[i] = int64(k)
					} else {
						yd[i] = m.dInt
					}
				}
				out[0] = y
			case []int64:
				y := rc.Alloc(String, x.Shape)
				yd := y.Strings()
				for i, v := range d {
					if v >= 0 && v < int64(len(classes)) {
						yd[i] = classes[v]
					} else {
						yd[i] = m.dStr
					}
				}
				out[0] = y
			default:
				return errclass.Invalid("inputs[0]", "input X has type %s, want string or int64", x.DType)
			}
			return nil
		}, nil
	}

	ks, ki, kf := b.AttrStrings("keys_strings", nil), b.AttrInts("keys_int64s", nil), b.AttrFloats("keys_floats", nil)
	vs, vi, vf := b.AttrStrings("values_strings", nil), b.AttrInts("values_int64s", nil), b.AttrFloats("values_floats", nil)
	m.dStr = b.AttrString("default_string", "_Unused")
	m.dInt = b.AttrInt("default_int64", -1)
	m.dFloat = b.AttrFloat("default_float", float32(math.Copysign(0, -1)))
	if b.HasAttr("keys_tensor") || b.HasAttr("values_tensor") || b.HasAttr("default_tensor") {
		return nil, Unsupported("LabelEncoder keys_tensor/values_tensor/default_tensor (opset 4 form)")
	}
	if b.Err() != nil {
		return nil, b.Err()
	}
	nk, nv := 0, 0
	var n int
	if len(ks) > 0 {
		nk++
		m.keyType, n = String, len(ks)
	}
	if len(ki) > 0 {
		nk++
		m.keyType, n = Int64, len(ki)
	}
	if len(kf) > 0 {
		nk++
		m.keyType, n = Float, len(kf)
	}
	if len(vs) > 0 {
		nv++
		m.valType = String
	}
	if len(vi) > 0 {
		nv++
		m.valType = Int64
	}
	if len(vf) > 0 {
		nv++
		m.valType = Float
	}
	if nk != 1 || nv != 1 {
		b.Errorf("want exactly one of keys_strings, keys_int64s, keys_floats (got %d) and one of values_strings, values_int64s, values_floats (got %d)", nk, nv)
		return nil, b.Err()
	}
	if l := len(vs) + len(vi) + len(vf); l != n {
		b.Errorf("the keys have %d entries, the values %d: want equal lengths", n, l)
		return nil, b.Err()
	}
	m.vStr, m.vInt, m.vFloat = vs, vi, vf
	switch m.keyType {
	case String:
		m.byStr = make(map[string]int, n)
		for i, k := range ks {
			if _, dup := m.byStr[k]; !dup {
				m.byStr[k] = i
			}
		}
	case Int64:
		m.byInt = make(map[int64]int, n)
		for i, k := range ki {
			if _, dup := m.byInt[k]; !dup {
				m.byInt[k] = i
			}
		}
	case Float:
		m.byFloat = make(map[float32]int, n)
		for i, k := range kf {
			if k != k {
				if m.nanKey < 0 {
					m.nanKey = i
				}
				continue
			}
			if _, dup := m.byFloat[k]; !dup {
				m.byFloat[k] = i
			}
		}
	}
	return m.run, nil
}

func (m *labelMap) run(rc *RunContext, in, out []*Tensor) error {
	x := in[0]
	if x == nil || x.Kind != KindTensor {
		return errclass.Invalid("inputs[0]", "input X must be a tensor")
	}
	if x.DType != m.keyType && !(m.keyType == Float && x.DType == Double) {
		return errclass.Invalid("inputs[0]", "input X has type %s, the keys are %s", x.DType, m.keyType)
	}
	y := rc.Alloc(m.valType, x.Shape)
	n := x.Len()
	for i := 0; i < n; i++ {
		k, ok := -1, false
		switch d := x.Data.(type) {
		case []string:
			k, ok = m.byStr[d[i]]
		case []int64:
			k, ok = m.byInt[d[i]]
		case []float32:
			if d[i] != d[i] {
				k, ok = m.nanKey, m.nanKey >= 0
			} else {
				k, ok = m.byFloat[d[i]]
			}
		case []float64:
			if d[i] != d[i] {
				k, ok = m.nanKey, m.nanKey >= 0
			} else {
				k, ok = m.byFloat[float32(d[i])]
			}
		}
		switch yd := y.Data.(type) {
		case []string:
			if ok {
				yd[i] = m.vStr[k]
			} else {
				yd[i] = m.dStr
			}
		case []int64:
			if ok {
				yd[i] = m.vInt[k]
			} else {
				yd[i] = m.dInt
			}
		case []float32:
			if ok {
				yd[i] = m.vFloat[k]
			} else {
				yd[i] = m.dFloat
			}
		}
	}
	out[0] = y
	return nil
}

func buildZipMap(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	b.CheckOutputs(1, 1)
	labels := attrLabels(b, "classlabels_int64s", "classlabels_strings")
	if b.Err() != nil {
		return nil, b.Err()
	}
	nc := labels.len()
	if nc == 0 {
		b.Errorf("attributes classlabels_int64s and classlabels_strings are both empty")
		return nil, b.Err()
	}
	// Each row of X [N, C] (or the one row of [C]) becomes a map from class
	// label to score; Z is the sequence of these maps.
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		if x == nil || x.Kind != KindTensor || (len(x.Shape) != 1 && len(x.Shape) != 2) {
			return errclass.Invalid("inputs[0]", "input X must be a tensor of shape [N, C] or [C]")
		}
		xf, n, f, err := mlRows(x, "X", nil)
		if err != nil {
			return err
		}
		if f != nc {
			return errclass.Invalid("inputs[0]", "input X has %d columns, want %d (one per class label)", f, nc)
		}
		// The maps of one run share their (read-only) keys tensor; their
		// values are slices of one buffer.
		var keys *Tensor
		if labels.strings {
			keys = FromStrings(append([]string(nil), labels.strs...), nc)
		} else {
			keys = FromInt64(append([]int64(nil), labels.ints...), nc)
		}
		all := make([]float32, n*nc)
		storeFloats(all, xf)
		seq := make([]*Tensor, n)
		maps := make([]Tensor, 2*n)
		shape := []int{nc}
		for r := 0; r < n; r++ {
			v := &maps[2*n-1-r]
			*v = Tensor{DType: Float, Shape: shape, Data: all[r*nc : (r+1)*nc : (r+1)*nc]}
			m := &maps[r]
			*m = Tensor{Kind: KindMap, Keys: keys, Values: v}
			seq[r] = m
		}
		out[0] = NewSequence(seq...)
		return nil
	}, nil
}

func init() {
	Register(
		OpDef{Domain: mlDomain, Name: "OneHotEncoder", Since: 1, Build: buildOneHotEncoder},
		OpDef{Domain: mlDomain, Name: "LabelEncoder", Since: 1, Build: buildLabelEncoder},
		OpDef{Domain: mlDomain, Name: "LabelEncoder", Since: 2, Build: buildLabelEncoder},
		OpDef{Domain: mlDomain, Name: "ZipMap", Since: 1, Build: buildZipMap},
	)
}
