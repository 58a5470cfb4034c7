package onnx

import "math"

// A table-driven exp for the hot loops of Softmax and the RBF kernel of the
// SVM operators. math.Exp is a function call per element; expCore inlines
// and, evaluated in float64, stays within about 2e-16 relative error of
// math.Exp (far below float32's rounding) on its domain.

// expTable[j] = 2^(j/expTableSize).
const expTableBits = 5
const expTableSize = 1 << expTableBits

var expTable = func() (t [expTableSize]float64) {
	for j := range t {
		t[j] = math.Exp2(float64(j) / expTableSize)
	}
	return t
}()

const (
	expInvLn2N = expTableSize / math.Ln2 // 32/ln2
	// ln2/32 split so that k*expLn2NHi is exact for |k| < 2^24.
	expLn2NHi = 0x1.62e42fefa0000p-06
	expLn2NLo = math.Ln2/expTableSize - expLn2NHi
	expShift  = 0x1.8p52 // adding it rounds to an integer in the low bits
	// expCore's domain: results stay normal numbers.
	expMin = -708.0
	expMax = 709.0
)

// expOK reports whether x is in expCore's domain (false for NaN).
func expOK(x float64) bool { return x > expMin && x < expMax }

// expCore returns e^x for expOK(x). Range reduction: x = (k/32) ln2 + r,
// |r| <= ln2/64, e^x = 2^(k>>5) * 2^((k&31)/32) * e^r with a degree-5
// Taylor polynomial for e^r (truncation error < 3e-15 relative).
func expCore(x float64) float64 {
	kf := x*expInvLn2N + expShift
	k := int64(math.Float64bits(kf)) // low bits hold round(x*32/ln2)
	kf -= expShift
	r := (x - kf*expLn2NHi) - kf*expLn2NLo
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120)))))
	scale := math.Float64frombits(uint64(int64(int32(k)>>expTableBits)+1023) << 52)
	return expTable[k&(expTableSize-1)] * scale * p
}

// fastExp is e^x, using expCore where it applies.
func fastExp(x float64) float64 {
	if expOK(x) {
		return expCore(x)
	}
	return math.Exp(x)
}

// expInPlace replaces every x[i] with e^x[i].
func expInPlace(x []float64) {
	for i, v := range x {
		if !expOK(v) {
			x[i] = math.Exp(v)
			continue
		}
		kf := v*expInvLn2N + expShift
		k := int64(math.Float64bits(kf))
		kf -= expShift
		r := (v - kf*expLn2NHi) - kf*expLn2NLo
		p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120)))))
		scale := math.Float64frombits(uint64(int64(int32(k)>>expTableBits)+1023) << 52)
		x[i] = expTable[k&(expTableSize-1)] * scale * p
	}
}

// softmaxRowsF32 is Softmax over contiguous rows of dim values: each
// exponential is computed in float64 and rounded once to float32, summed in
// float64, and the row scaled by float32(1/sum), as softmaxF32 does. As the
// results are float32, the polynomial stops at degree 3 (truncation error
// below 6e-10 relative, a hundredth of float32's rounding).
func softmaxRowsF32(x, o []float32, rows, dim int) {
	for i := 0; i < rows; i++ {
		xr := x[i*dim : i*dim+dim]
		or := o[i*dim : i*dim+dim]
		or = or[:len(xr)]
		mx := float32(math.Inf(-1))
		for _, v := range xr {
			if v > mx {
				mx = v
			}
		}
		var sum float64
		for j, s := range xr {
			v := float64(s - mx)
			var e float64
			if expOK(v) {
				kf := v*expInvLn2N + expShift
				k := int64(math.Float64bits(kf))
				kf -= expShift
				r := (v - kf*expLn2NHi) - kf*expLn2NLo
				p := 1 + r*(1+r*(1.0/2+r*(1.0/6)))
				scale := math.Float64frombits(uint64(int64(int32(k)>>expTableBits)+1023) << 52)
				e = expTable[k&(expTableSize-1)] * scale * p
			} else {
				e = math.Exp(v)
			}
			sum += e
			or[j] = float32(e)
		}
		inv := float32(1 / sum)
		for j := range or {
			or[j] *= inv
		}
	}
}
