package manifest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// ApplyDefaults fills in what a manifest leaves out: each model's Path
// ("<name>.onnx" for onnx, "<name>" for exec), Scoring.TimeoutMs
// (DefaultTimeoutMs) and each file's Mode (DefaultFileMode).
func (m *Manifest) ApplyDefaults() {
	for i := range m.Models {
		m.Models[i].Path = m.Models[i].defaultPath(m.Runtime)
	}
	if m.Scoring.TimeoutMs == 0 {
		m.Scoring.TimeoutMs = DefaultTimeoutMs
	}
	for i := range m.Scoring.Files {
		if m.Scoring.Files[i].Mode == 0 {
			m.Scoring.Files[i].Mode = DefaultFileMode
		}
	}
}

// defaultPath is the model's Path, or its default for runtime rt.
func (mr ModelRef) defaultPath(rt Runtime) string {
	switch {
	case mr.Path != "":
		return mr.Path
	case rt == RuntimeONNX:
		return mr.Name + ".onnx"
	}
	return mr.Name
}

// Canonical returns the canonical JSON form of a valid manifest: defaults
// applied, object keys sorted, empty optional lists and maps left out,
// numbers in sample data normalized (integers in plain decimal, other numbers
// in Go's shortest 'g' form), no insignificant whitespace, HTML characters not
// escaped. Manifests that differ only in those respects give the same bytes;
// Parse of the result gives back the manifest with defaults applied.
// m itself is not changed.
func (m *Manifest) Canonical() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, errclass.Wrap(errclass.InvalidArgument, err, "manifest: encode")
	}
	c := new(Manifest) // a deep copy, with sample numbers as json.Number
	if err := decode(b, c); err != nil {
		return nil, fmt.Errorf("manifest: copy: %w", err)
	}
	c.ApplyDefaults()
	if e := normalize(c); e != nil {
		return nil, finish(e)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("manifest: with defaults applied: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("manifest: encode canonical form: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Digest returns "sha256:" and the hex SHA-256 of the canonical form.
func (m *Manifest) Digest() (string, error) {
	b, err := m.Canonical()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// normalize drops empty optional lists and maps and puts json.Number values
// in sample data in canonical form.
func normalize(m *Manifest) *errclass.Error {
	m.Dependencies = nilIfEmpty(m.Dependencies)
	m.SampleData = nilIfEmpty(m.SampleData)
	if len(m.Labels) == 0 {
		m.Labels = nil
	}
	m.Scoring.OutputLabels = nilIfEmpty(m.Scoring.OutputLabels)
	m.Scoring.Command = nilIfEmpty(m.Scoring.Command)
	m.Scoring.Files = nilIfEmpty(m.Scoring.Files)
	m.Schema.Outputs = nilIfEmpty(m.Schema.Outputs)
	for _, fields := range [][]Field{m.Schema.Inputs, m.Schema.Outputs} {
		for i := range fields {
			fields[i].Shape = nilIfEmpty(fields[i].Shape)
			fields[i].Categories = nilIfEmpty(fields[i].Categories)
		}
	}
	if m.Baseline != nil {
		for k, fb := range m.Baseline.Features {
			fb.Edges = nilIfEmpty(fb.Edges)
			fb.Counts = nilIfEmpty(fb.Counts)
			if len(fb.Categories) == 0 {
				fb.Categories = nil
			}
			m.Baseline.Features[k] = fb
		}
	}
	for i, row := range m.SampleData {
		for _, k := range sortedKeys(row) {
			v, e := canonValue(row[k], joinPath(fmt.Sprintf("sampleData[%d]", i), keyPath(k)))
			if e != nil {
				return e
			}
			row[k] = v
		}
	}
	return nil
}

func nilIfEmpty[S ~[]E, E any](s S) S {
	if len(s) == 0 {
		return nil
	}
	return s
}

// canonValue normalizes the json.Numbers in a decoded JSON value.
func canonValue(v any, p string) (any, *errclass.Error) {
	switch x := v.(type) {
	case json.Number:
		n, ok := canonNumber(string(x))
		if !ok {
			return nil, invalid(p, "number %s is out of range", x)
		}
		return n, nil
	case []any:
		for i, e := range x {
			c, err := canonValue(e, fmt.Sprintf("%s[%d]", p, i))
			if err != nil {
				return nil, err
			}
			x[i] = c
		}
	case map[string]any:
		for _, k := range sortedKeys(x) {
			c, err := canonValue(x[k], joinPath(p, keyPath(k)))
			if err != nil {
				return nil, err
			}
			x[k] = c
		}
	}
	return v, nil
}

// canonNumber gives the canonical literal of a JSON number: integers of up to
// 64 bits (also when written with a fraction or exponent) in plain decimal,
// anything else in the shortest 'g' form of its float64 value.
func canonNumber(lit string) (json.Number, bool) {
	if i, ok := parseIntLiteral(lit); ok {
		return json.Number(i.String()), true
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil {
		return "", false
	}
	if n := fromFloat(f); n.isInt {
		return json.Number(n.i.String()), true
	}
	return json.Number(strconv.FormatFloat(f, 'g', -1, 64)), true
}
