package promtext

import (
	"bytes"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestGolden(t *testing.T) {
	in, err := os.ReadFile(filepath.Join("testdata", "scorer.txt"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(bytes.NewReader(in))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	out, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	out = append(out, '\n')
	golden := filepath.Join("testdata", "scorer.golden.json")
	if *update {
		if err := os.WriteFile(golden, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, want) {
		t.Fatalf("Parse(scorer.txt) =\n%s\nwant\n%s", out, want)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]float64
		wantErr string
	}{
		{"empty", "", map[string]float64{}, ""},
		{"comments only", "# HELP x y\n# random\n", map[string]float64{}, ""},
		{"plain", "a 1\nb 2.5\n", map[string]float64{"a": 1, "b": 2.5}, ""},
		{"labels sorted", `a{z="1",b="2"} 3`, map[string]float64{`a{b="2",z="1"}`: 3}, ""},
		{"empty labels", `a{} 3`, map[string]float64{"a": 3}, ""},
		{"trailing comma", `a{b="1",} 3`, map[string]float64{`a{b="1"}`: 3}, ""},
		{"last wins", "a 1\na 2\n", map[string]float64{"a": 2}, ""},
		{"untyped histogram-looking", "x_bucket 4\n", map[string]float64{"x_bucket": 4}, ""},
		{"bad name", "1a 2", nil, "bad metric name"},
		{"no value", "abc", nil, "no value"},
		{"bad value", "a one", nil, "bad value"},
		{"bad timestamp", "a 1 x", nil, "bad timestamp"},
		{"too many fields", "a 1 2 3", nil, "optional timestamp"},
		{"unquoted label", "a{b=1} 2", nil, "not quoted"},
		{"unterminated label", `a{b="1} 2`, nil, "not terminated"},
		{"duplicate label", `a{b="1",b="2"} 2`, nil, "twice"},
		{"bad escape", `a{b="\x"} 2`, nil, "bad escape"},
		{"label no equals", `a{b} 2`, nil, "without ="},
		{"junk after label", `a{b="1" c="2"} 2`, nil, "want , or }"},
		{"bad TYPE name", "# TYPE 9x counter\n", nil, "TYPE"},
		{"line too long", "a " + strings.Repeat("1", MaxLine+1), nil, "read metrics"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errclass.Is(err, errclass.InvalidArgument) {
					t.Fatalf("Parse(%q) err = %v, want invalid_argument containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("Parse(%q) = %v, want %v", tc.in, got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Fatalf("Parse(%q)[%s] = %v, want %v", tc.in, k, got[k], v)
				}
			}
		})
	}
}

func TestTooManySeries(t *testing.T) {
	var b strings.Builder
	for i := range MaxSeries + 1 {
		b.WriteString("m{i=\"")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString(string(rune('a' + i%26)))
		b.WriteString("\",n=\"")
		b.WriteString(strings.Repeat("y", i/26))
		b.WriteString("\"} 1\n")
	}
	if _, err := Parse(strings.NewReader(b.String())); !errclass.Is(err, errclass.TooLarge) {
		t.Fatalf("Parse(%d series) err = %v, want too_large", MaxSeries+1, err)
	}
}

func FuzzParse(f *testing.F) {
	seed, _ := os.ReadFile(filepath.Join("testdata", "scorer.txt"))
	for _, s := range []string{string(seed), "", "a 1", `a{b="c"} 2 3`, `a{b="\"\\\n"} -Inf`, "# TYPE a histogram\na_bucket 1\na_sum 2\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := Parse(strings.NewReader(in))
		if err != nil {
			return
		}
		if len(got) > MaxSeries {
			t.Fatalf("%d series", len(got))
		}
		for k, v := range got {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("non-finite value for %s", k)
			}
		}
		if _, err := json.Marshal(got); err != nil {
			t.Fatalf("result does not encode: %v", err)
		}
	})
}
