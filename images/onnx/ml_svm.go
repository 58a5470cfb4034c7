package onnx

// SVMClassifier and SVMRegressor (ai.onnx.ml 1).

import (
	"math"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

type svmKernel uint8

const (
	kLinear svmKernel = iota
	kPoly
	kRBF
	kSigmoid
)

// svmCommon holds the kernel and the support vectors (or, in linear mode,
// the coefficient rows the kernel is applied to).
type svmCommon struct {
	kernel               svmKernel
	gamma, coef0, degree float64
	sv                   []float64 // [nsv, f]
	svT                  []float64 // RBF: sv transposed to [f, nsv], see prepare
	nsv, f               int
	post                 postTransform
}

func readSVMCommon(b *NodeBuilder) svmCommon {
	var c svmCommon
	name := b.AttrString("kernel_type", "LINEAR")
	k, ok := map[string]svmKernel{"LINEAR": kLinear, "POLY": kPoly, "RBF": kRBF, "SIGMOID": kSigmoid}[name]
	if !ok {
		b.Errorf("attribute kernel_type is %q, want LINEAR, POLY, RBF or SIGMOID", name)
	}
	c.kernel = k
	p := b.AttrFloats("kernel_params", nil)
	if len(p) != 0 && len(p) != 3 {
		b.Errorf("attribute kernel_params has %d values, want 3 (gamma, coef0, degree)", len(p))
	}
	if len(p) == 3 {
		c.gamma, c.coef0, c.degree = float64(p[0]), float64(p[1]), float64(p[2])
	}
	c.post = attrPostTransform(b)
	return c
}

// k computes the kernel between x and row v.
func (c *svmCommon) k(x, v []float64) float64 {
	if c.kernel == kRBF {
		s := 0.0
		for j, a := range x {
			d := a - v[j]
			s += d * d
		}
		return fastExp(-c.gamma * s)
	}
	dot := 0.0
	for j, a := range x {
		dot += a * v[j]
	}
	switch c.kernel {
	case kPoly:
		return math.Pow(c.gamma*dot+c.coef0, c.degree)
	case kSigmoid:
		return math.Tanh(c.gamma*dot + c.coef0)
	}
	return dot
}

// prepare stores the support vectors feature-major (svT[j*nsv+i] is
// feature j of vector i) for kernels; call it once c.sv, c.nsv and c.f are set.
func (c *svmCommon) prepare() {
	if c.kernel != kRBF || c.nsv == 0 {
		return
	}
	c.svT = make([]float64, len(c.sv))
	transpose2D(c.svT, c.sv, c.nsv, c.f)
}

// kernels sets dst[i] to the kernel between x and support vector i0+i.
// The RBF kernel walks the features in the outer loop (so the inner loop
// runs over many independent vectors) and computes the exponentials of a
// whole chunk at once with expInPlace.
func (c *svmCommon) kernels(x []float64, i0 int, dst []float64) {
	f := len(x)
	if c.kernel != kRBF || c.svT == nil {
		for i := range dst {
			dst[i] = c.k(x, c.sv[(i0+i)*f:(i0+i+1)*f])
		}
		return
	}
	clear(dst)
	for j, a := range x {
		col := c.svT[j*c.nsv+i0:]
		col = col[:len(dst)]
		for i, v := range col {
			d := a - v
			dst[i] += d * d
		}
	}
	g := -c.gamma
	for i := range dst {
		dst[i] *= g
	}
	expInPlace(dst)
}

func (c *svmCommon) input(t *Tensor) ([]float64, int, error) {
	x, n, f, err := mlRows(t, "X", nil)
	if err != nil {
		return nil, 0, err
	}
	if f != c.f {
		return nil, 0, errclass.Invalid("inputs[0]", "input X has %d features per row, the model wants %d", f, c.f)
	}
	return x, n, nil
}

type svmRegressor struct {
	svmCommon
	coef     []float64
	rho      float64
	oneClass bool
	linear   bool // no support vectors: score = coefficients . x + rho
}

func buildSVMRegressor(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	b.CheckOutputs(1, 1)
	m := &svmRegressor{svmCommon: readSVMCommon(b)}
	m.coef = attrFloatsOrTensor(b, "coefficients")
	sv := attrFloatsOrTensor(b, "support_vectors")
	rho := attrFloatsOrTensor(b, "rho")
	nsv := b.AttrInt("n_supports", 0)
	m.oneClass = b.AttrInt("one_class", 0) != 0
	if b.Err() != nil {
		return nil, b.Err()
	}
	if len(rho) != 1 {
		b.Errorf("attribute rho has %d values, want 1", len(rho))
		return nil, b.Err()
	}
	m.rho = rho[0]
	if nsv < 0 || nsv > int64(len(sv)) {
		b.Errorf("attribute n_supports is %d, want 0 to %d", nsv, len(sv))
		return nil, b.Err()
	}
	if len(m.coef) == 0 {
		b.Errorf("attribute coefficients is empty")
		return nil, b.Err()
	}
	if nsv == 0 {
		m.linear = true
		m.f = len(m.coef)
	} else {
		if len(sv)%int(nsv) != 0 {
			b.Errorf("attribute support_vectors has %d values, not a multiple of n_supports %d", len(sv), nsv)
			return nil, b.Err()
		}
		checkLen(b, "coefficients", len(m.coef), int(nsv), "n_supports")
		m.sv, m.nsv, m.f = sv, int(nsv), len(sv)/int(nsv)
		m.prepare()
	}
	return m.run, b.Err()
}

func (m *svmRegressor) run(rc *RunContext, in, out []*Tensor) error {
	x, n, err := m.input(in[0])
	if err != nil {
		return err
	}
	y := rc.Alloc(Float, []int{n, 1})
	yd := y.Float32s()
	var s [1]float64
	var kern [64]float64 // kernel values of a chunk of support vectors
	for r := 0; r < n; r++ {
		xr := x[r*m.f : (r+1)*m.f]
		v := m.rho
		if m.linear {
			v += m.k(xr, m.coef)
		} else {
			for i0 := 0; i0 < m.nsv; i0 += len(kern) {
				i1 := min(i0+len(kern), m.nsv)
				kc := kern[:i1-i0]
				m.kernels(xr, i0, kc)
				coef := m.coef[i0:i1]
				coef = coef[:len(kc)]
				for i, k := range kc {
					v += coef[i] * k
				}
			}
		}
		if m.oneClass {
			if v > 0 {
				v = 1
			} else {
				v = -1
			}
		}
		s[0] = v
		m.post.apply(s[:])
		yd[r] = float32(s[0])
	}
	out[0] = y
	return nil
}

type svmClassifier struct {
	svmCommon
	labels       labelSet
	nc           int
	coef         []float64 // SVC: [nc-1, nsv]; linear: [nc, f]
	rho          []float64
	probA, probB []float64
	perClass     []int // support vectors per class
	start        []int // first support vector of each class
	linear       bool
}

func buildSVMClassifier(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	b.CheckOutputs(1, 2)
	m := &svmClassifier{svmCommon: readSVMCommon(b)}
	m.labels = attrLabels(b, "classlabels_ints", "classlabels_strings")
	m.coef = attrFloatsOrTensor(b, "coefficients")
	sv := attrFloatsOrTensor(b, "support_vectors")
	m.rho = attrFloatsOrTensor(b, "rho")
	m.probA = attrFloatsOrTensor(b, "prob_a")
	m.probB = attrFloatsOrTensor(b, "prob_b")
	vpc := b.AttrInts("vectors_per_class", nil)
	if b.Err() != nil {
		return nil, b.Err()
	}
	m.nc = m.labels.len()
	if m.nc < 2 {
		b.Errorf("the classifier has %d class labels, want 2 or more", m.nc)
		return nil, b.Err()
	}
	nsv := 0
	for i, v := range vpc {
		if v < 0 || v > int64(len(sv)) {
			b.Errorf("vectors_per_class[%d] is %d, out of range", i, v)
			return nil, b.Err()
		}
		m.start = append(m.start, nsv)
		m.perClass = append(m.perClass, int(v))
		nsv += int(v)
	}
	if nsv == 0 {
		// Linear mode: one coefficient row per class, the kernel applied to it.
		m.linear = true
		if len(m.coef) == 0 || len(m.coef)%m.nc != 0 {
			b.Errorf("attribute coefficients has %d values, want a positive multiple of %d (classes)", len(m.coef), m.nc)
			return nil, b.Err()
		}
		m.f = len(m.coef) / m.nc
		if len(m.rho) == 0 {
			m.rho = []float64{0}
		}
		return m.run, nil
	}
	checkLen(b, "vectors_per_class", len(vpc), m.nc, "the class labels")
	if b.Err() != nil {
		return nil, b.Err()
	}
	if len(sv)%nsv != 0 {
		b.Errorf("attribute support_vectors has %d values, not a multiple of the %d support vectors", len(sv), nsv)
		return nil, b.Err()
	}
	m.sv, m.nsv, m.f = sv, nsv, len(sv)/nsv
	m.prepare()
	npairs := m.nc * (m.nc - 1) / 2
	checkLen(b, "coefficients", len(m.coef), (m.nc-1)*nsv, "(classes-1) * support vectors")
	checkLen(b, "rho", len(m.rho), npairs, "the class pairs")
	if len(m.probA) > 0 || len(m.probB) > 0 {
		checkLen(b, "prob_a", len(m.probA), npairs, "the class pairs")
		checkLen(b, "prob_b", len(m.probB), npairs, "the class pairs")
	}
	return m.run, b.Err()
}

// run: in linear mode, each class scores kernel(x, coefficients row) + rho[0]
// and the label is the best score's. Otherwise one-vs-one: each pair (i, j)
// scores its decision value, which votes for i when positive; the label is
// the class with most votes (the first on ties). Without prob_a/prob_b the
// scores output holds the pairwise decision values ([-d, d] for two
// classes); with them it holds the coupled class probabilities.
func (m *svmClassifier) run(rc *RunContext, in, out []*Tensor) error {
	x, n, err := m.input(in[0])
	if err != nil {
		return err
	}
	lab := m.labels.alloc(rc, n)
	npairs := m.nc * (m.nc - 1) / 2
	width := m.nc
	proba := len(m.probA) > 0
	if !m.linear && !proba && m.nc > 2 {
		width = npairs
	}
	sc := rc.Alloc(Float, []int{n, width})
	sd := sc.Float32s()
	kern := make([]float64, m.nsv)
	dec := make([]float64, max(npairs, m.nc, 2))
	votes := make([]float64, m.nc)
	var pairP, probs []float64
	if proba {
		pairP = make([]float64, m.nc*m.nc)
		probs = make([]float64, m.nc)
	}
	for r := 0; r < n; r++ {
		xr := x[r*m.f : (r+1)*m.f]
		if m.linear {
			s := dec[:m.nc]
			for c := 0; c < m.nc; c++ {
				s[c] = m.k(xr, m.coef[c*m.f:(c+1)*m.f]) + m.rho[0]
			}
			m.labels.set(lab, r, argmax(s))
			m.post.apply(s)
			storeFloats(sd[r*width:(r+1)*width], s)
			continue
		}
		m.kernels(xr, 0, kern)
		clear(votes)
		p := 0
		for i := 0; i < m.nc; i++ {
			for j := i + 1; j < m.nc; j++ {
				s := m.rho[p]
				ci := m.coef[(j-1)*m.nsv:]
				for v := m.start[i]; v < m.start[i]+m.perClass[i]; v++ {
					s += ci[v] * kern[v]
				}
				cj := m.coef[i*m.nsv:]
				for v := m.start[j]; v < m.start[j]+m.perClass[j]; v++ {
					s += cj[v] * kern[v]
				}
				dec[p] = s
				if s > 0 {
					votes[i]++
				} else {
					votes[j]++
				}
				p++
			}
		}
		m.labels.set(lab, r, argmax(votes))
		var row []float64
		switch {
		case proba:
			for i, p := 0, 0; i < m.nc; i++ {
				for j := i + 1; j < m.nc; j++ {
					v := 1 - logistic(dec[p]*m.probA[p]+m.probB[p])
					v = min(max(v, 1e-7), 1-1e-7)
					pairP[i*m.nc+j] = v
					pairP[j*m.nc+i] = 1 - v
					p++
				}
			}
			coupleProbabilities(m.nc, pairP, probs)
			row = probs
		case m.nc == 2:
			d := dec[0]
			dec[0], dec[1] = -d, d
			row = dec[:2]
		default:
			row = dec[:npairs]
		}
		m.post.apply(row)
		storeFloats(sd[r*width:(r+1)*width], row)
	}
	out[0] = lab
	if len(out) > 1 {
		out[1] = sc
	}
	return nil
}

// coupleProbabilities turns pairwise probabilities r (r[i*k+j] = P(i | i or
// j)) into class probabilities p, by the second method of Wu, Lin and Weng
// (2004), "Probability estimates for multi-class classification by pairwise
// coupling", as libsvm does.
func coupleProbabilities(k int, r []float64, p []float64) {
	q := make([]float64, k*k)
	qp := make([]float64, k)
	for t := 0; t < k; t++ {
		p[t] = 1 / float64(k)
		for j := 0; j < k; j++ {
			if j == t {
				continue
			}
			q[t*k+t] += r[j*k+t] * r[j*k+t]
			q[t*k+j] = -r[j*k+t] * r[t*k+j]
		}
	}
	eps := 0.005 / float64(k)
	for iter := 0; iter < max(100, k); iter++ {
		pqp := 0.0
		for t := 0; t < k; t++ {
			qp[t] = 0
			for j := 0; j < k; j++ {
				qp[t] += q[t*k+j] * p[j]
			}
			pqp += p[t] * qp[t]
		}
		maxErr := 0.0
		for t := 0; t < k; t++ {
			maxErr = max(maxErr, math.Abs(qp[t]-pqp))
		}
		if maxErr < eps {
			break
		}
		for t := 0; t < k; t++ {
			diff := (-qp[t] + pqp) / q[t*k+t]
			p[t] += diff
			pqp = (pqp + diff*(diff*q[t*k+t]+2*qp[t])) / (1 + diff) / (1 + diff)
			for j := 0; j < k; j++ {
				qp[j] = (qp[j] + diff*q[t*k+j]) / (1 + diff)
				p[j] /= 1 + diff
			}
		}
	}
}

func init() {
	Register(
		OpDef{Domain: mlDomain, Name: "SVMClassifier", Since: 1, Build: buildSVMClassifier},
		OpDef{Domain: mlDomain, Name: "SVMRegressor", Since: 1, Build: buildSVMRegressor},
	)
}
