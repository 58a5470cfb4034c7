package scorer

import (
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/mlfleet/mlfleet/images/onnx"
	"github.com/mlfleet/mlfleet/shared/manifest"
	"github.com/mlfleet/mlfleet/shared/profile"
)

// sampleBins is the number of quantile bins derived from sample data when
// the baseline has no edges for a numeric feature.
const sampleBins = 10

// profiler keeps the current and the last closed profile window. Windows
// are rotated lazily, when something is observed or read: no goroutine.
type profiler struct {
	mu       sync.Mutex
	window   time.Duration
	now      func() time.Time
	inputs   map[string]*profile.Feature // empty templates
	outEdges map[string][]float64        // output feature -> edges
	cur      *profile.Window
	last     *profile.Window
}

// newProfiler sets up features for every schema input: numeric ones binned
// on the baseline's edges, or on quantiles of the sample data.
func newProfiler(m *manifest.Manifest, window time.Duration, now func() time.Time) *profiler {
	p := &profiler{window: window, now: now, inputs: map[string]*profile.Feature{}, outEdges: map[string][]float64{}}
	for _, f := range m.Schema.Inputs {
		p.inputs[f.Name] = inputFeature(m, f)
	}
	if m.Baseline != nil {
		for _, f := range m.Schema.Outputs {
			if fb, ok := m.Baseline.Features[f.Name]; ok && len(fb.Edges) > 0 {
				p.outEdges[f.Name] = fb.Edges
			}
		}
	}
	return p
}

func inputFeature(m *manifest.Manifest, f manifest.Field) *profile.Feature {
	if f.Type == manifest.TypeString || f.Type == manifest.TypeBool || len(f.Categories) > 0 {
		return profile.NewCategorical()
	}
	if m.Baseline != nil {
		if fb, ok := m.Baseline.Features[f.Name]; ok && len(fb.Edges) > 0 {
			return profile.NewNumeric(fb.Edges)
		}
	}
	var vals []float64
	for _, row := range m.SampleData {
		vals = appendNumbers(vals, row[f.Name])
	}
	return profile.NewNumeric(profile.QuantileEdges(vals, sampleBins))
}

func appendNumbers(dst []float64, v any) []float64 {
	switch x := v.(type) {
	case json.Number:
		if f, err := strconv.ParseFloat(string(x), 64); err == nil {
			dst = append(dst, f)
		}
	case float64:
		dst = append(dst, x)
	case []any:
		for _, e := range x {
			dst = appendNumbers(dst, e)
		}
	}
	return dst
}

// rotate closes the current window if its time is up. Called with mu held.
func (p *profiler) rotate(now time.Time) {
	if p.cur != nil && now.Before(p.cur.Start.Add(p.window)) {
		return
	}
	if p.cur != nil {
		p.cur.End = p.cur.Start.Add(p.window)
		p.last = p.cur
	}
	p.cur = profile.New(now.Truncate(p.window))
	for name, f := range p.inputs {
		p.cur.Inputs[name] = f.Clone()
	}
}

// observe adds a scored batch and its result.
func (p *profiler) observe(b *batch, res *result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rotate(p.now())
	w := p.cur
	w.Rows += int64(b.n)
	for ci := range b.cols {
		c := &b.cols[ci]
		f := w.Inputs[c.field.Name]
		if c.per < 0 {
			for _, row := range b.rows {
				if row[c.field.Name] == nil {
					f.AddNull()
				} else {
					f.Count++
				}
			}
			continue
		}
		for r := 0; r < b.n; r++ {
			if c.null != nil && c.null[r] {
				f.AddNull()
				continue
			}
			for j := r * c.per; j < (r+1)*c.per; j++ {
				switch {
				case c.str != nil:
					f.AddString(c.str[j])
				case c.bools != nil:
					f.AddString(strconv.FormatBool(c.bools[j]))
				case f.Kind == profile.Categorical:
					f.AddString(strconv.FormatInt(c.i64[j], 10))
				default:
					f.AddNumber(c.number(j))
				}
			}
		}
	}
	if res != nil {
		p.observeOutputs(w, res)
	}
}

// observeRejected counts a rejected row's bad field.
func (p *profiler) observeRejected(e *RowError) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rotate(p.now())
	p.cur.Rows++
	name := e.Field
	for n := range p.inputs { // the field path may continue ("pixels[3]")
		if len(name) >= len(n) && name[:len(n)] == n && (len(name) == len(n) || name[len(n)] == '[' || name[len(n)] == '.') {
			name = n
			break
		}
	}
	f := p.cur.Inputs[name]
	if f == nil {
		return
	}
	if e.rangeErr {
		f.AddOutOfRange()
	} else {
		f.AddTypeError()
	}
}

// outFeature finds or makes an output feature.
func (p *profiler) outFeature(w *profile.Window, name string, numeric bool) *profile.Feature {
	f := w.Outputs[name]
	if f == nil {
		if numeric {
			f = profile.NewNumeric(p.outEdges[name])
		} else {
			f = profile.NewCategorical()
		}
		w.Outputs[name] = f
	}
	return f
}

// maxOutputColumns bounds the per-element output features of one output.
const maxOutputColumns = 64

func (p *profiler) observeOutputs(w *profile.Window, res *result) {
	if res.raw != nil {
		for _, r := range res.raw {
			var v any
			if json.Unmarshal(r, &v) != nil {
				continue
			}
			p.observeJSON(w, "result", v, true)
		}
		return
	}
	for _, o := range res.outs {
		t := o.t
		if t.Kind == onnx.KindSequence {
			for _, m := range t.Seq {
				for j := 0; j < m.Keys.Len() && j < maxOutputColumns; j++ {
					f := p.outFeature(w, o.name+"["+mapKey(m.Keys, j)+"]", true)
					f.AddNumber(elemFloat(m.Values, j))
				}
			}
			continue
		}
		k := per(t, res.n)
		numeric := t.DType.IsFloat()
		names := make([]string, min(k, maxOutputColumns))
		for j := range names {
			switch {
			case k == 1:
				names[j] = o.name
			case len(res.labels) == k:
				names[j] = o.name + "[" + res.labels[j] + "]"
			default:
				names[j] = o.name + "[" + strconv.Itoa(j) + "]"
			}
		}
		feats := make([]*profile.Feature, len(names))
		for j, n := range names {
			feats[j] = p.outFeature(w, n, numeric)
		}
		for r := 0; r < res.n; r++ {
			for j, f := range feats {
				if numeric {
					f.AddNumber(elemFloat(t, r*k+j))
				} else {
					f.AddString(string(appendElemPlain(nil, t, r*k+j)))
				}
			}
		}
	}
}

// observeJSON profiles an exec result value (objects one level deep).
func (p *profiler) observeJSON(w *profile.Window, name string, v any, top bool) {
	switch x := v.(type) {
	case float64:
		p.outFeature(w, name, true).AddNumber(x)
	case string:
		p.outFeature(w, name, false).AddString(x)
	case bool:
		p.outFeature(w, name, false).AddString(strconv.FormatBool(x))
	case map[string]any:
		if top {
			for k, e := range x {
				if len(w.Outputs) < maxOutputColumns {
					p.observeJSON(w, k, e, false)
				} else if f := w.Outputs[k]; f != nil {
					p.observeJSON(w, k, e, false)
				}
			}
		}
	}
}

func elemFloat(t *onnx.Tensor, i int) float64 {
	switch d := t.Data.(type) {
	case []float32:
		return float64(d[i])
	case []float64:
		return d[i]
	}
	f, _ := strconv.ParseFloat(string(appendElemPlain(nil, t, i)), 64)
	return f
}

// appendElemPlain is appendElem without quotes around strings.
func appendElemPlain(buf []byte, t *onnx.Tensor, i int) []byte {
	if s := t.Strings(); s != nil {
		return append(buf, s[i]...)
	}
	return appendElem(buf, t, i)
}

// snapshot returns copies of the current and last closed windows.
func (p *profiler) snapshot() (cur, last *profile.Window) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	p.rotate(now)
	cur = p.cur.Clone()
	cur.End = now
	if p.last != nil {
		last = p.last.Clone()
	}
	return cur, last
}
