package onnx

// The ai.onnx.ml operators live in the files ml_*.go:
//
//	ml_tree.go       TreeEnsembleClassifier, TreeEnsembleRegressor
//	ml_linear.go     LinearClassifier, LinearRegressor
//	ml_svm.go        SVMClassifier, SVMRegressor
//	ml_transform.go  Scaler, Normalizer, Binarizer, Imputer, ArrayFeatureExtractor, FeatureVectorizer
//	ml_encode.go     OneHotEncoder, LabelEncoder (opset 1 and 2 forms), ZipMap
//
// Scores are computed in float64 and written as float32. Where the ONNX
// specification is vague (binary classifiers with one score column), the
// behaviour follows onnxruntime's, as documented on each kernel. This file
// holds their shared helpers: score post transforms, attribute parsing and
// views of numeric inputs as rows.

import (
	"fmt"
	"math"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// mlDomain is the domain of the traditional-ML operators.
const mlDomain = "ai.onnx.ml"

// maxMLWidth bounds the width of a row an ML operator makes (targets,
// columns), so that a hostile model cannot make it allocate without bound.
const maxMLWidth = 1 << 16

// postTransform is the post_transform attribute of the ML operators.
type postTransform uint8

const (
	ptNone postTransform = iota
	ptLogistic
	ptSoftmax
	ptSoftmaxZero
	ptProbit
)

var postTransformNames = []string{"NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO", "PROBIT"}

func (p postTransform) String() string { return postTransformNames[p] }

// attrPostTransform reads post_transform, recording an error on an unknown value.
func attrPostTransform(b *NodeBuilder) postTransform {
	s := b.AttrString("post_transform", "NONE")
	for i, n := range postTransformNames {
		if s == n {
			return postTransform(i)
		}
	}
	b.Errorf("attribute post_transform is %q, want one of %v", s, postTransformNames)
	return ptNone
}

func logistic(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// probit is the inverse of the standard normal CDF.
func probit(p float64) float64 { return math.Sqrt2 * math.Erfinv(2*p-1) }

// apply transforms one row of scores in place.
func (p postTransform) apply(v []float64) {
	switch p {
	case ptLogistic:
		for i, x := range v {
			v[i] = logistic(x)
		}
	case ptProbit:
		for i, x := range v {
			v[i] = probit(x)
		}
	case ptSoftmax:
		softmax64(v)
	case ptSoftmaxZero:
		// Like softmax, but scores that are exactly (or almost) zero stay zero:
		// they stand for classes that got no vote.
		m := math.Inf(-1)
		for _, x := range v {
			m = max(m, x)
		}
		sum := 0.0
		for i, x := range v {
			if math.Abs(x) > 1e-7 {
				v[i] = math.Exp(x - m)
				sum += v[i]
			} else {
				v[i] = 0
			}
		}
		if sum > 0 {
			for i := range v {
				v[i] /= sum
			}
		}
	}
}

func softmax64(v []float64) {
	if len(v) == 0 {
		return
	}
	m := math.Inf(-1)
	for _, x := range v {
		m = max(m, x)
	}
	sum := 0.0
	for i, x := range v {
		v[i] = math.Exp(x - m)
		sum += v[i]
	}
	for i := range v {
		v[i] /= sum
	}
}

// argmax returns the index of the first largest value (-1 for an empty slice).
func argmax(v []float64) int {
	best := -1
	for i, x := range v {
		if best < 0 || x > v[best] {
			best = i
		}
	}
	return best
}

// mlRows views a numeric tensor as n rows of f features converted to
// float64: [F] is one row, [N, F...] is N rows of the product of the other
// dimensions. buf is reused when large enough.
func mlRows(t *Tensor, input string, buf []float64) (x []float64, n, f int, err error) {
	if t == nil || t.Kind != KindTensor {
		return nil, 0, 0, errclass.Invalid(input, "input %s must be a tensor", input)
	}
	switch len(t.Shape) {
	case 0:
		return nil, 0, 0, errclass.Invalid(input, "input %s is a scalar, want shape [N, F] or [F]", input)
	case 1:
		n, f = 1, t.Shape[0]
	default:
		n = t.Shape[0]
		f = 1
		for _, d := range t.Shape[1:] {
			f *= d
		}
	}
	size := n * f
	if cap(buf) >= size {
		x = buf[:size]
	} else {
		x = make([]float64, size)
	}
	switch d := t.Data.(type) {
	case []float32:
		for i, v := range d[:size] {
			x[i] = float64(v)
		}
	case []float64:
		copy(x, d)
	case []int64:
		for i, v := range d[:size] {
			x[i] = float64(v)
		}
	case []int32:
		for i, v := range d[:size] {
			x[i] = float64(v)
		}
	default:
		return nil, 0, 0, errclass.Invalid(input, "input %s has type %s, want float32, float64, int64 or int32", input, t.DType)
	}
	return x, n, f, nil
}

// labelSet is the class labels of a classifier: int64s or strings.
type labelSet struct {
	ints    []int64
	strs    []string
	strings bool
}

func (l labelSet) len() int {
	if l.strings {
		return len(l.strs)
	}
	return len(l.ints)
}

// attrLabels reads the class labels from intsName or stringsName; exactly one must be set.
func attrLabels(b *NodeBuilder, intsName, stringsName string) labelSet {
	ints := b.AttrInts(intsName, nil)
	strs := b.AttrStrings(stringsName, nil)
	switch {
	case len(ints) > 0 && len(strs) > 0:
		b.Errorf("attributes %s and %s are both set, want one", intsName, stringsName)
	case len(strs) > 0:
		return labelSet{strs: strs, strings: true}
	}
	return labelSet{ints: ints}
}

// allocLabels allocates the label output for n rows.
func (l labelSet) alloc(rc *RunContext, n int) *Tensor {
	if l.strings {
		return rc.Alloc(String, []int{n})
	}
	return rc.Alloc(Int64, []int{n})
}

// set writes class k's label at row i of out.
func (l labelSet) set(out *Tensor, i, k int) {
	if l.strings {
		out.Data.([]string)[i] = l.strs[k]
	} else {
		out.Data.([]int64)[i] = l.ints[k]
	}
}

// attrFloatsOrTensor reads a float list given either as floats attribute
// name or as a tensor attribute name+"_as_tensor" (double precision).
func attrFloatsOrTensor(b *NodeBuilder, name string) []float64 {
	if t := b.AttrTensor(name + "_as_tensor"); t != nil {
		v, err := t.AsFloat64s()
		if err != nil {
			b.Errorf("attribute %s_as_tensor: %v", name, err)
			return nil
		}
		if b.HasAttr(name) {
			b.Errorf("attributes %s and %s_as_tensor are both set, want one", name, name)
		}
		return v
	}
	f := b.AttrFloats(name, nil)
	if f == nil {
		return nil
	}
	out := make([]float64, len(f))
	for i, v := range f {
		out[i] = float64(v)
	}
	return out
}

// checkLen records an error unless attribute name has length want.
func checkLen(b *NodeBuilder, name string, got, want int, wantName string) {
	if got != want {
		b.Errorf("attribute %s has %d values, want %d (the length of %s)", name, got, want, wantName)
	}
}

// storeFloats writes row-major float64 results to a float32 output.
func storeFloats(dst []float32, src []float64) {
	for i, v := range src {
		dst[i] = float32(v)
	}
}

func mlErrorf(field, format string, args ...any) error {
	return errclass.Invalid(field, "%s", fmt.Sprintf(format, args...))
}
