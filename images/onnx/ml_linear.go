package onnx

// LinearClassifier and LinearRegressor (ai.onnx.ml 1).

import "github.com/mlfleet/mlfleet/shared/errclass"

type linearModel struct {
	coef   []float64 // [rows, f] row-major
	icpt   []float64 // [rows]
	rows   int
	f      int
	post   postTransform
	labels labelSet
}

func readLinear(b *NodeBuilder, rows int, rowsName string) *linearModel {
	coef := attrFloatsOrTensor(b, "coefficients")
	icpt := attrFloatsOrTensor(b, "intercepts")
	post := attrPostTransform(b)
	if b.Err() != nil {
		return nil
	}
	if rows < 1 {
		b.Errorf("%s is %d, want 1 or more", rowsName, rows)
		return nil
	}
	if len(coef) == 0 || len(coef)%rows != 0 {
		b.Errorf("attribute coefficients has %d values, want a positive multiple of %d (%s)", len(coef), rows, rowsName)
		return nil
	}
	if icpt == nil {
		icpt = make([]float64, rows)
	}
	if len(icpt) != rows {
		b.Errorf("attribute intercepts has %d values, want %d (%s)", len(icpt), rows, rowsName)
		return nil
	}
	return &linearModel{coef: coef, icpt: icpt, rows: rows, f: len(coef) / rows, post: post}
}

// scores computes row r's raw scores into s.
func (m *linearModel) scores(x []float64, s []float64) {
	for k := 0; k < m.rows; k++ {
		w := m.coef[k*m.f : (k+1)*m.f]
		v := m.icpt[k]
		for j, c := range w {
			v += c * x[j]
		}
		s[k] = v
	}
}

func (m *linearModel) input(t *Tensor) ([]float64, int, error) {
	x, n, f, err := mlRows(t, "X", nil)
	if err != nil {
		return nil, 0, err
	}
	if f != m.f {
		return nil, 0, errclass.Invalid("inputs[0]", "input X has %d features per row, the coefficients want %d", f, m.f)
	}
	return x, n, nil
}

func buildLinearRegressor(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	b.CheckOutputs(1, 1)
	m := readLinear(b, int(b.AttrInt("targets", 1)), "attribute targets")
	if b.Err() != nil {
		return nil, b.Err()
	}
	return m.runRegressor, nil
}

func (m *linearModel) runRegressor(rc *RunContext, in, out []*Tensor) error {
	x, n, err := m.input(in[0])
	if err != nil {
		return err
	}
	y := rc.Alloc(Float, []int{n, m.rows})
	yd := y.Float32s()
	s := make([]float64, m.rows)
	for r := 0; r < n; r++ {
		m.scores(x[r*m.f:(r+1)*m.f], s)
		m.post.apply(s)
		storeFloats(yd[r*m.rows:(r+1)*m.rows], s)
	}
	out[0] = y
	return nil
}

func buildLinearClassifier(b *NodeBuilder) (Kernel, error) {
	b.CheckInputs(1, 1)
	b.CheckOutputs(1, 2)
	labels := attrLabels(b, "classlabels_ints", "classlabels_strings")
	b.AttrInt("multi_class", 0) // read for validation; scores are per class either way
	if b.Err() != nil {
		return nil, b.Err()
	}
	nc := labels.len()
	if nc == 0 {
		b.Errorf("attributes classlabels_ints and classlabels_strings are both empty")
		return nil, b.Err()
	}
	// One score row per intercept; without intercepts, one per class.
	rows := nc
	if ic := attrFloatsOrTensor(b, "intercepts"); len(ic) > 0 {
		rows = len(ic)
		if rows != nc && !(rows == 1 && nc == 2) {
			b.Errorf("attribute intercepts has %d values, want %d (one per class) or 1 with 2 classes", rows, nc)
			return nil, b.Err()
		}
	}
	m := readLinear(b, rows, "the number of score rows")
	if b.Err() != nil {
		return nil, b.Err()
	}
	m.labels = labels
	return m.runClassifier, nil
}

// runClassifier: several score rows give one score per class and the label
// of the largest raw score. One score row with two labels (binary) gives the
// label of the second class when the raw score s > 0, and the scores [-s, s]
// (post_transform NONE) or transformed from that (LOGISTIC: [1-p, p]).
func (m *linearModel) runClassifier(rc *RunContext, in, out []*Tensor) error {
	x, n, err := m.input(in[0])
	if err != nil {
		return err
	}
	nc := m.labels.len()
	lab := m.labels.alloc(rc, n)
	sc := rc.Alloc(Float, []int{n, nc})
	sd := sc.Float32s()
	s := make([]float64, max(nc, m.rows))
	for r := 0; r < n; r++ {
		m.scores(x[r*m.f:(r+1)*m.f], s)
		if m.rows == 1 && nc == 2 {
			v := s[0]
			m.labels.set(lab, r, b2i(v > 0))
			s[0], s[1] = -v, v
		} else {
			m.labels.set(lab, r, argmax(s[:m.rows]))
		}
		m.post.apply(s[:nc])
		storeFloats(sd[r*nc:(r+1)*nc], s[:nc])
	}
	out[0] = lab
	if len(out) > 1 {
		out[1] = sc
	}
	return nil
}

func init() {
	Register(
		OpDef{Domain: mlDomain, Name: "LinearClassifier", Since: 1, Build: buildLinearClassifier},
		OpDef{Domain: mlDomain, Name: "LinearRegressor", Since: 1, Build: buildLinearRegressor},
	)
}
