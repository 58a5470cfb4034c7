// Package promtext parses the Prometheus text exposition format, as served
// by a scorer's /metrics, into a flat map of counter and gauge values.
//
// Keys are the metric name, followed by its labels sorted by name when it has
// any: `requests_total{code="200",route="/score"}`. Counters, gauges and
// untyped metrics are kept, and so are the _sum and _count series of
// histograms and summaries; buckets, quantiles and non-finite values are
// skipped. The input is
// untrusted: lines and the number of series are bounded, and bad lines are
// errors naming the line.
package promtext

import (
	"bufio"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// Limits of Parse.
const (
	MaxSeries  = 1024
	MaxLine    = 8 << 10
	MaxLabels  = 32
	maxNameLen = 256
)

// Parse reads the exposition in r into a map of series to value.
func Parse(r io.Reader) (map[string]float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxLine)
	types := map[string]string{}
	out := map[string]float64{}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(line, "#"); ok {
			f := strings.Fields(rest)
			if len(f) >= 3 && f[0] == "TYPE" {
				if !validName(f[1]) {
					return nil, errclass.Invalid("line", "line %d: TYPE names bad metric %q", n, f[1])
				}
				types[f[1]] = f[2]
			}
			continue
		}
		name, labels, value, err := parseSample(line)
		if err != nil {
			return nil, errclass.Invalid("line", "line %d: %v", n, err)
		}
		if !keep(name, labels, types) || math.IsNaN(value) || math.IsInf(value, 0) {
			// JSON cannot carry NaN or infinities: such samples are skipped.
			continue
		}
		key := name
		if len(labels) > 0 {
			sort.Slice(labels, func(i, j int) bool { return labels[i][0] < labels[j][0] })
			var b strings.Builder
			b.WriteString(name)
			b.WriteByte('{')
			for i, l := range labels {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(l[0])
				b.WriteString("=")
				b.WriteString(strconv.Quote(l[1]))
			}
			b.WriteByte('}')
			key = b.String()
		}
		if _, dup := out[key]; !dup && len(out) >= MaxSeries {
			return nil, errclass.New(errclass.TooLarge, "", "more than %d series", MaxSeries)
		}
		out[key] = value
	}
	if err := sc.Err(); err != nil {
		return nil, errclass.Wrap(errclass.InvalidArgument, err, "read metrics")
	}
	return out, nil
}

// keep reports whether a sample belongs to a counter, gauge or untyped
// metric, is a bucket of a histogram (the cloud's p99 gates read them), or
// is the _sum/_count of a histogram or summary.
func keep(name string, labels [][2]string, types map[string]string) bool {
	if t, ok := types[name]; ok {
		return t != "histogram" && t != "summary" && t != "gaugehistogram"
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		switch types[base] {
		case "histogram", "summary", "gaugehistogram":
			return true
		}
	}
	return true
}

func validName(s string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

func parseSample(line string) (name string, labels [][2]string, value float64, err error) {
	i := strings.IndexAny(line, "{ \t")
	if i < 0 {
		return "", nil, 0, errclass.Invalid("line", "no value")
	}
	name, rest := line[:i], line[i:]
	if !validName(name) {
		return "", nil, 0, errclass.Invalid("line", "bad metric name %q", name)
	}
	if rest[0] == '{' {
		labels, rest, err = parseLabels(rest[1:])
		if err != nil {
			return "", nil, 0, err
		}
	}
	f := strings.Fields(rest)
	if len(f) < 1 || len(f) > 2 {
		return "", nil, 0, errclass.Invalid("line", "want a value and an optional timestamp after %q", name)
	}
	value, err = parseValue(f[0])
	if err != nil {
		return "", nil, 0, err
	}
	if len(f) == 2 {
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			return "", nil, 0, errclass.Invalid("line", "bad timestamp %q", f[1])
		}
	}
	return name, labels, value, nil
}

func parseValue(s string) (float64, error) {
	switch s {
	case "+Inf", "Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	case "NaN":
		return math.NaN(), nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, errclass.Invalid("line", "bad value %q", s)
	}
	return v, nil
}

// parseLabels reads `a="x",b="y"}` and returns what follows the brace.
func parseLabels(s string) ([][2]string, string, error) {
	var labels [][2]string
	for {
		s = strings.TrimLeft(s, " \t")
		if strings.HasPrefix(s, "}") {
			return labels, s[1:], nil
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			return nil, "", errclass.Invalid("line", "label without =")
		}
		lname := strings.TrimSpace(s[:eq])
		if !validName(lname) || strings.Contains(lname, ":") {
			return nil, "", errclass.Invalid("line", "bad label name %q", lname)
		}
		s = strings.TrimLeft(s[eq+1:], " \t")
		if !strings.HasPrefix(s, `"`) {
			return nil, "", errclass.Invalid("line", "label %q value is not quoted", lname)
		}
		var val strings.Builder
		j := 1
		for ; j < len(s) && s[j] != '"'; j++ {
			if s[j] == '\\' && j+1 < len(s) {
				j++
				switch s[j] {
				case 'n':
					val.WriteByte('\n')
				case '\\', '"':
					val.WriteByte(s[j])
				default:
					return nil, "", errclass.Invalid("line", "label %q has bad escape \\%c", lname, s[j])
				}
				continue
			}
			val.WriteByte(s[j])
		}
		if j >= len(s) {
			return nil, "", errclass.Invalid("line", "label %q value is not terminated", lname)
		}
		for _, l := range labels {
			if l[0] == lname {
				return nil, "", errclass.Invalid("line", "label %q appears twice", lname)
			}
		}
		labels = append(labels, [2]string{lname, val.String()})
		if len(labels) > MaxLabels {
			return nil, "", errclass.Invalid("line", "more than %d labels", MaxLabels)
		}
		s = strings.TrimLeft(s[j+1:], " \t")
		if strings.HasPrefix(s, ",") {
			s = s[1:]
		} else if !strings.HasPrefix(s, "}") {
			return nil, "", errclass.Invalid("line", "want , or } after label %q", lname)
		}
	}
}
