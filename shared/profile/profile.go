// Package profile defines drift profiles: compact, mergeable summaries of the
// values a scorer saw for each input feature and each output during a time
// window. Scorers build them where the data is scored, edges ship them to the
// cloud, and the cloud merges them (device -> site -> fleet) and compares them
// with the manifest's baseline; raw rows never leave the device.
//
// A numeric [Feature] counts values into bins whose edges come from the
// manifest baseline (or from the sample data), plus count, null, NaN,
// out-of-range and type-error counts and min/max/sum/sum of squares. A
// categorical Feature counts values per category, keeping at most
// MaxCategories of them and folding the rest into Other.
//
// Merge is exact: merging the profiles of two sets of rows gives the profile
// of their union (sums up to floating-point rounding), as long as the union
// has at most MaxCategories distinct values per categorical feature; beyond
// that the least frequent categories are folded into Other.
//
// Profiles arriving from devices are untrusted: [Parse] checks them.
package profile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// Version is the wire format version written into every Window.
const Version = 1

// Limits.
const (
	MaxCategories = 64      // distinct categories kept per feature
	MaxEdges      = 1000    // bin edges per numeric feature
	MaxFeatures   = 20000   // features per window (inputs plus outputs)
	MaxSize       = 8 << 20 // bytes of JSON accepted by Parse
)

// Kind says how a feature is summarized.
type Kind string

// The kinds.
const (
	Numeric     Kind = "numeric"
	Categorical Kind = "categorical"
)

// Window is the profile of everything scored in [Start, End).
type Window struct {
	Version int       `json:"version"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	// Rows is the number of rows scored (or rejected) in the window.
	Rows    int64               `json:"rows"`
	Inputs  map[string]*Feature `json:"inputs"`
	Outputs map[string]*Feature `json:"outputs,omitempty"`
}

// Feature summarizes the values of one input feature or output.
type Feature struct {
	Kind Kind `json:"kind"`
	// Count is every observation: values, nulls and rejected values.
	Count      int64 `json:"count"`
	Null       int64 `json:"null"`
	NaN        int64 `json:"nan"`
	OutOfRange int64 `json:"outOfRange"` // rejected for the schema's min/max/categories
	TypeError  int64 `json:"typeError"`  // rejected for the wrong type or shape

	// Numeric: Finite values are summarized by Min, Max, Sum and SumSq
	// (all zero when Finite is 0) and counted into Bins: len(Edges)+1 bins
	// (-inf,e0), [e0,e1), ..., [en,+inf). Infinities count in the end bins.
	Finite int64     `json:"finite,omitempty"`
	Min    float64   `json:"min,omitempty"`
	Max    float64   `json:"max,omitempty"`
	Sum    float64   `json:"sum,omitempty"`
	SumSq  float64   `json:"sumSq,omitempty"`
	Edges  []float64 `json:"edges,omitempty"`
	Bins   []int64   `json:"bins,omitempty"`

	// Categorical: counts per value, at most MaxCategories of them; Other
	// counts the values of categories that did not fit.
	Categories map[string]int64 `json:"categories,omitempty"`
	Other      int64            `json:"other,omitempty"`
}

// NewNumeric makes an empty numeric feature binned on edges (copied; they
// must be finite and strictly increasing, see CheckEdges).
func NewNumeric(edges []float64) *Feature {
	f := &Feature{Kind: Numeric}
	if len(edges) > 0 {
		f.Edges = slices.Clone(edges)
		f.Bins = make([]int64, len(edges)+1)
	}
	return f
}

// NewCategorical makes an empty categorical feature.
func NewCategorical() *Feature { return &Feature{Kind: Categorical} }

// CheckEdges reports whether edges are usable bin edges.
func CheckEdges(edges []float64) error {
	if len(edges) > MaxEdges {
		return errclass.Invalid("edges", "%d edges, more than the limit of %d", len(edges), MaxEdges)
	}
	for i, e := range edges {
		if math.IsNaN(e) || math.IsInf(e, 0) {
			return errclass.Invalid(fmt.Sprintf("edges[%d]", i), "edge %v is not a finite number", e)
		}
		if i > 0 && e <= edges[i-1] {
			return errclass.Invalid(fmt.Sprintf("edges[%d]", i), "edge %v is not greater than the previous edge %v", e, edges[i-1])
		}
	}
	return nil
}

// AddNumber counts a numeric value (NaN counts as NaN, not in the bins).
func (f *Feature) AddNumber(v float64) {
	f.Count++
	if math.IsNaN(v) {
		f.NaN++
		return
	}
	if len(f.Bins) > 0 {
		// The number of edges <= v is the index of the bin [e(i-1), e(i)).
		e := f.Edges
		f.Bins[sort.Search(len(e), func(i int) bool { return e[i] > v })]++
	}
	if math.IsInf(v, 0) {
		return
	}
	if f.Finite == 0 || v < f.Min {
		f.Min = v
	}
	if f.Finite == 0 || v > f.Max {
		f.Max = v
	}
	f.Finite++
	f.Sum += v
	f.SumSq += v * v
}

// AddString counts a categorical value.
func (f *Feature) AddString(s string) {
	f.Count++
	if f.Categories == nil {
		f.Categories = make(map[string]int64)
	}
	if _, ok := f.Categories[s]; ok || len(f.Categories) < MaxCategories {
		f.Categories[s]++
		return
	}
	f.Other++
}

// AddNull counts a missing value.
func (f *Feature) AddNull() { f.Count++; f.Null++ }

// AddOutOfRange counts a value rejected for the schema's range or categories.
func (f *Feature) AddOutOfRange() { f.Count++; f.OutOfRange++ }

// AddTypeError counts a value rejected for its type or shape.
func (f *Feature) AddTypeError() { f.Count++; f.TypeError++ }

// Clone returns a deep copy.
func (f *Feature) Clone() *Feature {
	c := *f
	c.Edges = slices.Clone(f.Edges)
	c.Bins = slices.Clone(f.Bins)
	if f.Categories != nil {
		c.Categories = make(map[string]int64, len(f.Categories))
		for k, v := range f.Categories {
			c.Categories[k] = v
		}
	}
	return &c
}

// Merge adds o's counts to f. Both must have the same kind and edges.
func (f *Feature) Merge(o *Feature) error {
	if f.Kind != o.Kind {
		return errclass.Invalid("kind", "cannot merge a %q feature into a %q one", o.Kind, f.Kind)
	}
	if !slices.Equal(f.Edges, o.Edges) {
		return errclass.Invalid("edges", "cannot merge features with different edges (%d and %d edges)", len(o.Edges), len(f.Edges))
	}
	f.Count += o.Count
	f.Null += o.Null
	f.NaN += o.NaN
	f.OutOfRange += o.OutOfRange
	f.TypeError += o.TypeError
	if o.Finite > 0 {
		if f.Finite == 0 || o.Min < f.Min {
			f.Min = o.Min
		}
		if f.Finite == 0 || o.Max > f.Max {
			f.Max = o.Max
		}
		f.Finite += o.Finite
		f.Sum += o.Sum
		f.SumSq += o.SumSq
	}
	for i, c := range o.Bins {
		f.Bins[i] += c
	}
	f.Other += o.Other
	if len(o.Categories) > 0 {
		if f.Categories == nil {
			f.Categories = make(map[string]int64, len(o.Categories))
		}
		for k, c := range o.Categories {
			f.Categories[k] += c
		}
		f.trimCategories()
	}
	return nil
}

// trimCategories keeps the MaxCategories most frequent categories (ties
// broken by name) and folds the rest into Other.
func (f *Feature) trimCategories() {
	if len(f.Categories) <= MaxCategories {
		return
	}
	keys := make([]string, 0, len(f.Categories))
	for k := range f.Categories {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if ca, cb := f.Categories[a], f.Categories[b]; ca != cb {
			if ca > cb {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	for _, k := range keys[MaxCategories:] {
		f.Other += f.Categories[k]
		delete(f.Categories, k)
	}
}

// New makes an empty window starting at start.
func New(start time.Time) *Window {
	return &Window{Version: Version, Start: start, Inputs: map[string]*Feature{}, Outputs: map[string]*Feature{}}
}

// Clone returns a deep copy.
func (w *Window) Clone() *Window {
	c := *w
	c.Inputs = cloneMap(w.Inputs)
	c.Outputs = cloneMap(w.Outputs)
	return &c
}

func cloneMap(m map[string]*Feature) map[string]*Feature {
	if m == nil {
		return nil
	}
	c := make(map[string]*Feature, len(m))
	for k, f := range m {
		c[k] = f.Clone()
	}
	return c
}

// Merge adds o into w: rows and every feature's counts; the window grows to
// cover both. Features only o has are copied. On error w is unchanged.
func (w *Window) Merge(o *Window) error {
	for _, pair := range [][2]map[string]*Feature{{w.Inputs, o.Inputs}, {w.Outputs, o.Outputs}} {
		for name, of := range pair[1] {
			if f := pair[0][name]; f != nil && (f.Kind != of.Kind || !slices.Equal(f.Edges, of.Edges)) {
				return errclass.Invalid(name, "feature %q: cannot merge: kind %q edges %v into kind %q edges %v", name, of.Kind, of.Edges, f.Kind, f.Edges)
			}
		}
	}
	if w.Inputs == nil {
		w.Inputs = map[string]*Feature{}
	}
	if w.Outputs == nil && len(o.Outputs) > 0 {
		w.Outputs = map[string]*Feature{}
	}
	mergeMap(w.Inputs, o.Inputs)
	mergeMap(w.Outputs, o.Outputs)
	if w.Start.IsZero() || !o.Start.IsZero() && o.Start.Before(w.Start) {
		w.Start = o.Start
	}
	if o.End.After(w.End) {
		w.End = o.End
	}
	w.Rows += o.Rows
	return nil
}

func mergeMap(dst, src map[string]*Feature) {
	for name, of := range src {
		if f := dst[name]; f != nil {
			_ = f.Merge(of) // checked by the caller
		} else {
			dst[name] = of.Clone()
		}
	}
}

// Validate checks a window's invariants; the error names the field.
func (w *Window) Validate() error {
	if w.Version != Version {
		return errclass.Invalid("version", "version %d is not supported, want %d", w.Version, Version)
	}
	if w.Rows < 0 {
		return errclass.Invalid("rows", "rows %d is negative", w.Rows)
	}
	if !w.End.IsZero() && w.End.Before(w.Start) {
		return errclass.Invalid("end", "end %s is before start %s", w.End.Format(time.RFC3339), w.Start.Format(time.RFC3339))
	}
	if n := len(w.Inputs) + len(w.Outputs); n > MaxFeatures {
		return errclass.Invalid("inputs", "%d features, more than the limit of %d", n, MaxFeatures)
	}
	for _, part := range []struct {
		name string
		m    map[string]*Feature
	}{{"inputs", w.Inputs}, {"outputs", w.Outputs}} {
		for name, f := range part.m {
			if err := f.validate(); err != nil {
				return errclass.Wrap(errclass.InvalidArgument, err, "%s[%q]", part.name, name)
			}
		}
	}
	return nil
}

func (f *Feature) validate() error {
	if f == nil {
		return fmt.Errorf("feature is null")
	}
	for _, c := range []int64{f.Count, f.Null, f.NaN, f.OutOfRange, f.TypeError, f.Finite, f.Other} {
		if c < 0 {
			return fmt.Errorf("negative count %d", c)
		}
	}
	switch f.Kind {
	case Numeric:
		if len(f.Categories) > 0 || f.Other != 0 {
			return fmt.Errorf("a numeric feature has categories")
		}
		if err := CheckEdges(f.Edges); err != nil {
			return err
		}
		if len(f.Edges) > 0 && len(f.Bins) != len(f.Edges)+1 || len(f.Edges) == 0 && len(f.Bins) != 0 {
			return fmt.Errorf("%d bins for %d edges, want %d", len(f.Bins), len(f.Edges), len(f.Edges)+1)
		}
		for _, c := range f.Bins {
			if c < 0 {
				return fmt.Errorf("negative bin count %d", c)
			}
		}
		if f.Finite > 0 && f.Min > f.Max {
			return fmt.Errorf("min %v is greater than max %v", f.Min, f.Max)
		}
	case Categorical:
		if len(f.Edges) > 0 || len(f.Bins) > 0 || f.Finite != 0 {
			return fmt.Errorf("a categorical feature has bins")
		}
		if len(f.Categories) > MaxCategories {
			return fmt.Errorf("%d categories, more than the limit of %d", len(f.Categories), MaxCategories)
		}
		for k, c := range f.Categories {
			if c < 0 {
				return fmt.Errorf("category %q: negative count %d", k, c)
			}
		}
	default:
		return fmt.Errorf("unknown kind %q, want %q or %q", f.Kind, Numeric, Categorical)
	}
	return nil
}

// Parse decodes and validates a window from untrusted JSON. Unknown fields,
// trailing data and documents over MaxSize are rejected.
func Parse(b []byte) (*Window, error) {
	if len(b) > MaxSize {
		return nil, errclass.New(errclass.TooLarge, "", "profile is %d bytes, more than the limit of %d", len(b), MaxSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	w := new(Window)
	if err := dec.Decode(w); err != nil {
		return nil, errclass.Wrap(errclass.InvalidArgument, err, "profile: decode")
	}
	if dec.More() {
		return nil, errclass.Invalid("", "profile: trailing data after the JSON document")
	}
	if err := w.Validate(); err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	return w, nil
}

// QuantileEdges derives bin edges from example values: the distinct
// quantiles at 1/bins, 2/bins, ..., (bins-1)/bins of the finite values.
// It returns nil when there are fewer than two distinct finite values.
func QuantileEdges(values []float64, bins int) []float64 {
	v := make([]float64, 0, len(values))
	for _, x := range values {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			v = append(v, x)
		}
	}
	slices.Sort(v)
	if bins < 2 || len(v) < 2 || v[0] == v[len(v)-1] {
		return nil
	}
	var edges []float64
	for i := 1; i < bins; i++ {
		q := v[int(math.Round(float64(len(v)-1)*float64(i)/float64(bins)))]
		if q == v[0] { // an edge at the minimum would leave the first bin empty
			continue
		}
		if len(edges) == 0 || q > edges[len(edges)-1] {
			edges = append(edges, q)
		}
	}
	if len(edges) == 0 {
		edges = []float64{v[len(v)-1]}
	}
	return edges
}
