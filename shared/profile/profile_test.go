package profile

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestAddNumberBins(t *testing.T) {
	tests := []struct {
		v    float64
		want int // bin index for edges {0, 1, 2}
	}{
		{-5, 0}, {math.Inf(-1), 0}, {0, 1}, {0.5, 1}, {1, 2}, {1.999, 2}, {2, 3}, {1e300, 3}, {math.Inf(1), 3},
	}
	for _, tc := range tests {
		f := NewNumeric([]float64{0, 1, 2})
		f.AddNumber(tc.v)
		for i, c := range f.Bins {
			if want := int64(0); i == tc.want {
				if c != 1 {
					t.Errorf("AddNumber(%v): bin %d = %d, want 1", tc.v, i, c)
				}
			} else if c != want {
				t.Errorf("AddNumber(%v): bin %d = %d, want 0", tc.v, i, c)
			}
		}
	}
	f := NewNumeric(nil)
	f.AddNumber(math.NaN())
	f.AddNumber(3)
	f.AddNumber(-1)
	f.AddNull()
	if f.Count != 4 || f.NaN != 1 || f.Null != 1 || f.Finite != 2 || f.Min != -1 || f.Max != 3 || f.Sum != 2 || f.SumSq != 10 {
		t.Errorf("stats = %+v", f)
	}
}

func TestCategoriesCap(t *testing.T) {
	f := NewCategorical()
	for i := range MaxCategories + 10 {
		f.AddString(strconv.Itoa(i))
	}
	f.AddString("0")
	if len(f.Categories) != MaxCategories || f.Other != 10 || f.Categories["0"] != 2 {
		t.Errorf("categories %d other %d", len(f.Categories), f.Other)
	}
}

// profileOf builds a window from rows the way a scorer does.
func profileOf(rows []row, start time.Time) *Window {
	w := New(start)
	w.End = start.Add(time.Minute)
	w.Inputs["x"] = NewNumeric([]float64{-1, 0, 1})
	w.Inputs["c"] = NewCategorical()
	w.Outputs["y"] = NewNumeric(nil)
	for _, r := range rows {
		w.Rows++
		switch {
		case r.null:
			w.Inputs["x"].AddNull()
		case r.bad:
			w.Inputs["x"].AddTypeError()
		default:
			w.Inputs["x"].AddNumber(r.x)
		}
		w.Inputs["c"].AddString(r.c)
		w.Outputs["y"].AddNumber(r.x * 2)
	}
	return w
}

type row struct {
	x         float64
	c         string
	null, bad bool
}

func randomRows(r *rand.Rand, n, cats int) []row {
	rows := make([]row, n)
	for i := range rows {
		rows[i] = row{x: r.NormFloat64(), c: "c" + strconv.Itoa(r.IntN(cats)), null: r.IntN(10) == 0, bad: r.IntN(20) == 0}
		if r.IntN(30) == 0 {
			rows[i].x = math.NaN()
		}
	}
	return rows
}

// Property: merge(profile(a), profile(b)) == profile(a ∪ b).
func TestMergeProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	start := time.Date(2024, 1, 2, 3, 4, 0, 0, time.UTC)
	for iter := range 200 {
		a := randomRows(r, r.IntN(50), 1+r.IntN(MaxCategories))
		b := randomRows(r, r.IntN(50), 1+r.IntN(MaxCategories))
		// Keep the union within MaxCategories distinct values.
		for i := range b {
			if n, _ := strconv.Atoi(b[i].c[1:]); n >= MaxCategories {
				b[i].c = "c0"
			}
		}
		pa := profileOf(a, start)
		pb := profileOf(b, start.Add(time.Minute))
		whole := profileOf(append(append([]row{}, a...), b...), start)
		whole.End = start.Add(2 * time.Minute)
		if err := pa.Merge(pb); err != nil {
			t.Fatal(err)
		}
		if !equalWindows(pa, whole) {
			ja, _ := json.Marshal(pa)
			jw, _ := json.Marshal(whole)
			t.Fatalf("iteration %d: merged\n%s\nwant\n%s", iter, ja, jw)
		}
	}
}

func equalWindows(a, b *Window) bool {
	if a.Rows != b.Rows || !a.Start.Equal(b.Start) || !a.End.Equal(b.End) || len(a.Inputs) != len(b.Inputs) || len(a.Outputs) != len(b.Outputs) {
		return false
	}
	for _, pair := range [][2]map[string]*Feature{{a.Inputs, b.Inputs}, {a.Outputs, b.Outputs}} {
		for k, fa := range pair[0] {
			fb := pair[1][k]
			if fb == nil || !equalFeatures(fa, fb) {
				return false
			}
		}
	}
	return true
}

func equalFeatures(a, b *Feature) bool {
	near := func(x, y float64) bool { return math.Abs(x-y) <= 1e-9*(1+math.Abs(x)+math.Abs(y)) }
	ok := a.Kind == b.Kind && a.Count == b.Count && a.Null == b.Null && a.NaN == b.NaN &&
		a.OutOfRange == b.OutOfRange && a.TypeError == b.TypeError && a.Finite == b.Finite &&
		a.Min == b.Min && a.Max == b.Max && near(a.Sum, b.Sum) && near(a.SumSq, b.SumSq) &&
		a.Other == b.Other && len(a.Bins) == len(b.Bins) && len(a.Categories) == len(b.Categories)
	for i := range a.Bins {
		ok = ok && a.Bins[i] == b.Bins[i]
	}
	for k, c := range a.Categories {
		ok = ok && b.Categories[k] == c
	}
	return ok
}

func TestMergeMismatch(t *testing.T) {
	tests := []struct {
		name string
		a, b *Feature
	}{
		{"kind", NewNumeric(nil), NewCategorical()},
		{"edges", NewNumeric([]float64{1}), NewNumeric([]float64{2})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wa, wb := New(time.Time{}), New(time.Time{})
			wa.Inputs["f"], wb.Inputs["f"] = tc.a, tc.b
			if err := wa.Merge(wb); err == nil {
				t.Fatal("merge succeeded")
			}
		})
	}
}

func TestMergeTrimsCategories(t *testing.T) {
	a, b := NewCategorical(), NewCategorical()
	for i := range MaxCategories {
		a.AddString("a" + strconv.Itoa(i))
		b.AddString("b" + strconv.Itoa(i))
		b.AddString("b" + strconv.Itoa(i))
	}
	if err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	if len(a.Categories) != MaxCategories || a.Other != MaxCategories || a.Categories["b0"] != 2 {
		t.Errorf("categories %d other %d", len(a.Categories), a.Other)
	}
}

func TestGolden(t *testing.T) {
	start := time.Date(2024, 5, 6, 7, 8, 0, 0, time.UTC)
	w := profileOf([]row{{x: -2, c: "red"}, {x: 0.5, c: "blue"}, {null: true, c: "red"}, {bad: true, c: "green"}, {x: math.NaN(), c: "red"}}, start)
	w.Inputs["x"].AddOutOfRange()
	got, err := json.MarshalIndent(w, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "window.golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("wire format changed:\n%s\nwant\n%s", got, want)
	}
	back, err := Parse(want)
	if err != nil {
		t.Fatal(err)
	}
	if !equalWindows(back, w) {
		t.Error("round trip differs")
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct{ name, in string }{
		{"syntax", `{`},
		{"unknown field", `{"version":1,"rows":0,"inputs":{},"bogus":1}`},
		{"version", `{"version":2,"rows":0,"inputs":{}}`},
		{"negative rows", `{"version":1,"rows":-1,"inputs":{}}`},
		{"bad kind", `{"version":1,"rows":0,"inputs":{"x":{"kind":"weird","count":0,"null":0,"nan":0,"outOfRange":0,"typeError":0}}}`},
		{"bins mismatch", `{"version":1,"rows":0,"inputs":{"x":{"kind":"numeric","count":0,"null":0,"nan":0,"outOfRange":0,"typeError":0,"edges":[1,2],"bins":[1]}}}`},
		{"edges not increasing", `{"version":1,"rows":0,"inputs":{"x":{"kind":"numeric","count":0,"null":0,"nan":0,"outOfRange":0,"typeError":0,"edges":[2,1],"bins":[1,1,1]}}}`},
		{"null feature", `{"version":1,"rows":0,"inputs":{"x":null}}`},
		{"trailing", `{"version":1,"rows":0,"inputs":{}} {}`},
		{"end before start", `{"version":1,"start":"2024-01-02T00:00:00Z","end":"2024-01-01T00:00:00Z","rows":0,"inputs":{}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse([]byte(tc.in)); err == nil {
				t.Fatalf("Parse(%s) succeeded", tc.in)
			}
		})
	}
}

func TestQuantileEdges(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		bins int
		want []float64
	}{
		{"empty", nil, 10, nil},
		{"constant", []float64{3, 3, 3}, 10, nil},
		{"two", []float64{1, 2}, 10, []float64{2}},
		{"ten", []float64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 10, []float64{1, 2, 3, 4, 5, 6, 7, 8}},
		{"nan ignored", []float64{math.NaN(), 1, 2, math.Inf(1)}, 2, []float64{2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := QuantileEdges(tc.in, tc.bins)
			if err := CheckEdges(got); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"version":1,"rows":0,"inputs":{}}`))
	if b, err := os.ReadFile(filepath.Join("testdata", "window.golden")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		w, err := Parse(b)
		if err != nil {
			return
		}
		// A valid window merges with itself and stays valid.
		c := w.Clone()
		if err := c.Merge(w); err != nil {
			t.Fatalf("self-merge: %v", err)
		}
		out, err := json.Marshal(w)
		if err != nil {
			return // e.g. non-finite sums cannot be written
		}
		if _, err := Parse(out); err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
	})
}
