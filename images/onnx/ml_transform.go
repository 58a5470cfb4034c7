package onnx

// Element-wise and column ai.onnx.ml operators: Scaler, Normalizer,
// Binarizer, Imputer, ArrayFeatureExtractor, FeatureVectorizer.

import (
	"math"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// checkCols checks that a per-column attribute has 1 value (for every
// column) or one per column of rows f wide.
func checkCols(name string, n, f int) error {
	if n != 1 && n != f {
		return errclass.Invalid("inputs[0]", "input X has %d features per row, attribute %s has %d values (want 1 or %d)", f, name, n, f)
	}
	return nil
}

func buildScaler(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	b.CheckOutputs(1, 1)
	offset := b.AttrFloats("offset", nil)
	scale := b.AttrFloats("scale", nil)
	if b.Err() != nil {
		return nil, b.Err()
	}
	if len(offset) == 0 {
		offset = []float32{0}
	}
	if len(scale) == 0 {
		scale = []float32{1}
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		x, n, f, err := mlRows(in[0], "X", nil)
		if err != nil {
			return err
		}
		if err := checkCols("offset", len(offset), f); err != nil {
			return err
		}
		if err := checkCols("scale", len(scale), f); err != nil {
			return err
		}
		y := rc.Alloc(Float, []int{n, f})
		if len(in[0].Shape) == 1 {
			y.Shape = append(y.Shape[:0], f)
		}
		yd := y.Float32s()
		for i, v := range x {
			j := i % f
			o, s := offset[0], scale[0]
			if len(offset) > 1 {
				o = offset[j]
			}
			if len(scale) > 1 {
				s = scale[j]
			}
			yd[i] = float32((v - float64(o)) * float64(s))
		}
		out[0] = y
		return nil
	}, nil
}

func buildNormalizer(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	b.CheckOutputs(1, 1)
	norm := b.AttrString("norm", "MAX")
	if norm != "MAX" && norm != "L1" && norm != "L2" {
		b.Errorf("attribute norm is %q, want MAX, L1 or L2", norm)
	}
	if b.Err() != nil {
		return nil, b.Err()
	}
	// Rows whose norm is zero are left as they are (as scikit-learn does).
	return func(rc *RunContext, in, out []*Tensor) error {
		x, n, f, err := mlRows(in[0], "X", nil)
		if err != nil {
			return err
		}
		y := rc.Alloc(Float, []int{n, f})
		if len(in[0].Shape) == 1 {
			y.Shape = append(y.Shape[:0], f)
		}
		yd := y.Float32s()
		for r := 0; r < n; r++ {
			row := x[r*f : (r+1)*f]
			d := 0.0
			switch norm {
			case "MAX":
				d = math.Inf(-1)
				for _, v := range row {
					d = max(d, v)
				}
			case "L1":
				for _, v := range row {
					d += math.Abs(v)
				}
			case "L2":
				for _, v := range row {
					d += v * v
				}
				d = math.Sqrt(d)
			}
			if d == 0 || math.IsInf(d, -1) {
				d = 1
			}
			for j, v := range row {
				yd[r*f+j] = float32(v / d)
			}
		}
		out[0] = y
		return nil
	}, nil
}

func buildBinarizer(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	b.CheckOutputs(1, 1)
	thr := float64(b.AttrFloat("threshold", 0))
	if b.Err() != nil {
		return nil, b.Err()
	}
	// y = 1 where x > threshold, else 0; NaN stays NaN. Output has X's type.
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		y := rc.Alloc(x.DType, x.Shape)
		switch d := x.Data.(type) {
		case []float32:
			yd := y.Float32s()
			for i, v := range d {
				yd[i] = float32(binarize(float64(v), thr))
			}
		case []float64:
			yd := y.Float64s()
			for i, v := range d {
				yd[i] = binarize(v, thr)
			}
		case []int64:
			yd := y.Int64s()
			for i, v := range d {
				yd[i] = int64(binarize(float64(v), thr))
			}
		case []int32:
			yd := y.Int32s()
			for i, v := range d {
				yd[i] = int32(binarize(float64(v), thr))
			}
		default:
			return errclass.Invalid("inputs[0]", "input X has type %s, want float32, float64, int64 or int32", x.DType)
		}
		out[0] = y
		return nil
	}, nil
}

func binarize(v, thr float64) float64 {
	switch {
	case v != v:
		return v
	case v > thr:
		return 1
	}
	return 0
}

func buildImputer(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	b.CheckOutputs(1, 1)
	fvals := b.AttrFloats("imputed_value_floats", nil)
	ivals := b.AttrInts("imputed_value_int64s", nil)
	frep := float64(b.AttrFloat("replaced_value_float", 0))
	irep := b.AttrInt("replaced_value_int64", 0)
	if b.Err() != nil {
		return nil, b.Err()
	}
	if (len(fvals) == 0) == (len(ivals) == 0) {
		b.Errorf("want exactly one of attributes imputed_value_floats (%d values) and imputed_value_int64s (%d values)", len(fvals), len(ivals))
		return nil, b.Err()
	}
	return func(rc *RunContext, in, out []*Tensor) error {
		x := in[0]
		if x == nil || x.Kind != KindTensor || len(x.Shape) == 0 {
			return errclass.Invalid("inputs[0]", "input X must be a tensor of shape [N, F] or [F]")
		}
		f := x.Shape[len(x.Shape)-1]
		if len(x.Shape) > 1 {
			f = x.Len() / max(x.Shape[0], 1)
		}
		y := rc.Alloc(x.DType, x.Shape)
		switch d := x.Data.(type) {
		case []float32:
			if len(fvals) == 0 {
				return errclass.Invalid("inputs[0]", "input X is float32 but the model imputes int64 values")
			}
			if err := checkCols("imputed_value_floats", len(fvals), f); err != nil {
				return err
			}
			yd := y.Float32s()
			nanRep := math.IsNaN(frep)
			for i, v := range d {
				if (nanRep && v != v) || (!nanRep && float64(v) == frep) {
					v = fvals[0]
					if len(fvals) > 1 {
						v = fvals[i%f]
					}
				}
				yd[i] = v
			}
		case []float64:
			if len(fvals) == 0 {
				return errclass.Invalid("inputs[0]", "input X is float64 but the model imputes int64 values")
			}
			if err := checkCols("imputed_value_floats", len(fvals), f); err != nil {
				return err
			}
			yd := y.Float64s()
			nanRep := math.IsNaN(frep)
			for i, v := range d {
				if (nanRep && v != v) || (!nanRep && v == frep) {
					v = float64(fvals[0])
					if len(fvals) > 1 {
						v = float64(fvals[i%f])
					}
				}
				yd[i] = v
			}
		case []int64:
			if len(ivals) == 0 {
				return errclass.Invalid("inputs[0]", "input X is int64 but the model imputes float values")
			}
			if err := checkCols("imputed_value_int64s", len(ivals), f); err != nil {
				return err
			}
			yd := y.Int64s()
			for i, v := range d {
				if v == irep {
					v = ivals[0]
					if len(ivals) > 1 {
						v = ivals[i%f]
					}
				}
				yd[i] = v
			}
		default:
			return errclass.Invalid("inputs[0]", "input X has type %s, want float32, float64 or int64", x.DType)
		}
		out[0] = y
		return nil
	}, nil
}

func buildArrayFeatureExtractor(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(2, 2)
	b.CheckOutputs(1, 1)
	if b.Err() != nil {
		return nil, b.Err()
	}
	// Y selects the indices along X's last axis; a 1-D X gives Y of shape [1, k].
	return func(rc *RunContext, in, out []*Tensor) error {
		x, ix := in[0], in[1]
		if x == nil || x.Kind != KindTensor || len(x.Shape) == 0 {
			return errclass.Invalid("inputs[0]", "input X must be a tensor of rank 1 or more")
		}
		idx, err := ix.AsInt64s()
		if err != nil {
			return errclass.Invalid("inputs[1]", "input Y (indices): %v", err)
		}
		if len(idx) == 0 {
			return errclass.Invalid("inputs[1]", "input Y (indices) is empty")
		}
		last := x.Shape[len(x.Shape)-1]
		for i, v := range idx {
			if v < 0 || v >= int64(last) {
				return errclass.Invalid("inputs[1]", "index %d (position %d) is out of range for a last dimension of %d", v, i, last)
			}
		}
		shape := append([]int{}, x.Shape...)
		if len(shape) == 1 {
			shape = []int{1, len(idx)}
		} else {
			shape[len(shape)-1] = len(idx)
		}
		rows := x.Len() / last
		src := make([]int, 0, rows*len(idx))
		for r := 0; r < rows; r++ {
			for _, v := range idx {
				src = append(src, r*last+int(v))
			}
		}
		y := rc.Alloc(x.DType, shape)
		gatherData(y.Data, x.Data, src)
		out[0] = y
		return nil
	}, nil
}

func buildFeatureVectorizer(b *NodeBuilder) (Kernel, error) {
	b.CheckOutputs(1, 1)
	dims := b.AttrInts("inputdimensions", nil)
	if b.Err() != nil {
		return nil, b.Err()
	}
	if len(dims) != b.NumInputs() || len(dims) == 0 {
		b.Errorf("attribute inputdimensions has %d values, want one per input (%d)", len(dims), b.NumInputs())
		return nil, b.Err()
	}
	total := 0
	for i, d := range dims {
		if d < 0 || d > maxMLWidth {
			b.Errorf("inputdimensions[%d] is %d, want 0 to %d", i, d, maxMLWidth)
			return nil, b.Err()
		}
		total += int(d)
	}
	if total > maxMLWidth {
		b.Errorf("attribute inputdimensions adds up to %d, want at most %d", total, maxMLWidth)
		return nil, b.Err()
	}
	// Each input is [N, ...] (or [C], one row); per row its first
	// inputdimensions[i] values are copied (zero-padded when it has fewer).
	return func(rc *RunContext, in, out []*Tensor) error {
		n := -1
		var bufs [][]float64
		var widths []int
		for i, t := range in {
			x, rows, f, err := mlRows(t, "X", nil)
			if err != nil {
				return errclass.Wrap(errclass.InvalidArgument, err, "input %d", i)
			}
			if n >= 0 && rows != n {
				return errclass.Invalid("inputs", "input %d has %d rows, input 0 has %d", i, rows, n)
			}
			n = rows
			bufs = append(bufs, x)
			widths = append(widths, f)
		}
		y := rc.Alloc(Float, []int{n, total})
		yd := y.Float32s()
		for r := 0; r < n; r++ {
			o := r * total
			for i, x := range bufs {
				f := widths[i]
				d := int(dims[i])
				storeFloats(yd[o:o+min(d, f)], x[r*f:r*f+min(d, f)])
				o += d
			}
		}
		out[0] = y
		return nil
	}, nil
}

func init() {
	Register(
		OpDef{Domain: mlDomain, Name: "Scaler", Since: 1, Build: buildScaler},
		OpDef{Domain: mlDomain, Name: "Normalizer", Since: 1, Build: buildNormalizer},
		OpDef{Domain: mlDomain, Name: "Binarizer", Since: 1, Build: buildBinarizer},
		OpDef{Domain: mlDomain, Name: "Imputer", Since: 1, Build: buildImputer},
		OpDef{Domain: mlDomain, Name: "ArrayFeatureExtractor", Since: 1, Build: buildArrayFeatureExtractor},
		OpDef{Domain: mlDomain, Name: "FeatureVectorizer", Since: 1, Build: buildFeatureVectorizer},
	)
}
