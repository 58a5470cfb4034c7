package manifest

import (
	"encoding/json"
	"fmt"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// Validate checks every rule of a manifest and reports the first problem as
// an errclass.InvalidArgument error whose Field is the JSON path at fault.
// Validate does not require defaults to have been applied.
func (m *Manifest) Validate() error {
	if m == nil {
		return finish(invalid("", "manifest is missing"))
	}
	return finish(m.validate())
}

func (m *Manifest) validate() *errclass.Error {
	if m.APIVersion != APIVersion {
		return invalid("apiVersion", "apiVersion %q is not supported, want %q", m.APIVersion, APIVersion)
	}
	if !ValidName(m.Name) {
		return invalid("name", "invalid name %q: want 1-63 of [a-z0-9-_.], starting and ending with [a-z0-9]", m.Name)
	}
	if e := checkText("description", m.Description, maxStringLen, true); e != nil {
		return e
	}
	if !m.Runtime.Valid() {
		return invalid("runtime", "unknown runtime %q, want %q or %q", m.Runtime, RuntimeONNX, RuntimeExec)
	}
	if e := m.validateModels(); e != nil {
		return e
	}
	if e := within("scoring", m.Scoring.validate(m.Runtime)); e != nil {
		return e
	}
	if e := m.validateDependencies(); e != nil {
		return e
	}
	if e := within("schema", m.Schema.validate()); e != nil {
		return e
	}
	if len(m.SampleData) > MaxSampleRows {
		return invalid("sampleData", "%d rows, more than the limit of %d", len(m.SampleData), MaxSampleRows)
	}
	for i, row := range m.SampleData {
		if e := within(fmt.Sprintf("sampleData[%d]", i), validateRow(m.Schema, row)); e != nil {
			return e
		}
	}
	if m.Baseline != nil {
		if e := within("baseline", m.Baseline.validate(m.Schema)); e != nil {
			return e
		}
	}
	for _, k := range sortedKeys(m.Labels) {
		p := joinPath("labels", keyPath(k))
		if !validLabel(k, false) {
			return invalid(p, "invalid label key %q: want 1-63 of [A-Za-z0-9-_./], starting and ending with [A-Za-z0-9]", k)
		}
		if !validLabel(m.Labels[k], true) {
			return invalid(p, "invalid label value %q: want 0-63 of [A-Za-z0-9-_./], starting and ending with [A-Za-z0-9]", m.Labels[k])
		}
	}
	return nil
}

func (m *Manifest) validateModels() *errclass.Error {
	if len(m.Models) == 0 {
		return invalid("models", "at least one model is required")
	}
	if len(m.Models) > MaxModels {
		return invalid("models", "%d models, more than the limit of %d", len(m.Models), MaxModels)
	}
	names := map[string]int{}
	paths := map[string]int{}
	for i, mr := range m.Models {
		p := fmt.Sprintf("models[%d]", i)
		if !ValidName(mr.Name) {
			return invalid(p+".name", "invalid name %q: want 1-63 of [a-z0-9-_.], starting and ending with [a-z0-9]", mr.Name)
		}
		if j, dup := names[mr.Name]; dup {
			return invalid(p+".name", "model name %q is also used by models[%d]", mr.Name, j)
		}
		names[mr.Name] = i
		if mr.Version < 1 {
			return invalid(p+".version", "version %d must be >= 1", mr.Version)
		}
		if mr.Digest != "" && !validDigest(mr.Digest) {
			return invalid(p+".digest", "invalid digest %q, want \"sha256:\" and 64 lowercase hex digits", mr.Digest)
		}
		if mr.Path != "" {
			if e := checkPath(p+".path", mr.Path); e != nil {
				return e
			}
		}
		mp := mr.defaultPath(m.Runtime)
		if j, dup := paths[mp]; dup {
			return invalid(p+".path", "model path %q is also used by models[%d]", mp, j)
		}
		paths[mp] = i
	}
	return nil
}

func (s *Scoring) validate(rt Runtime) *errclass.Error {
	if e := checkUniqueStrings("outputLabels", s.OutputLabels); e != nil {
		return e
	}
	if rt == RuntimeONNX {
		switch {
		case len(s.Command) > 0:
			return invalid("command", "command is only allowed with runtime %q", RuntimeExec)
		case len(s.Files) > 0:
			return invalid("files", "files are only allowed with runtime %q", RuntimeExec)
		case s.BaseImage != "":
			return invalid("baseImage", "baseImage is only allowed with runtime %q", RuntimeExec)
		case s.BatchInput:
			return invalid("batchInput", "batchInput is only allowed with runtime %q", RuntimeExec)
		}
	}
	if rt == RuntimeExec && len(s.Command) == 0 {
		return invalid("command", "command is required with runtime %q", RuntimeExec)
	}
	if len(s.Command) > 256 {
		return invalid("command", "%d arguments, more than the limit of 256", len(s.Command))
	}
	for i, a := range s.Command {
		if e := checkText(fmt.Sprintf("command[%d]", i), a, maxStringLen, i > 0); e != nil {
			return e
		}
	}
	total := 0
	paths := map[string]int{}
	for i, f := range s.Files {
		p := fmt.Sprintf("files[%d]", i)
		if e := checkPath(p+".path", f.Path); e != nil {
			return e
		}
		if j, dup := paths[f.Path]; dup {
			return invalid(p+".path", "file path %q is also used by files[%d]", f.Path, j)
		}
		paths[f.Path] = i
		if len(f.Content) > MaxFileSize {
			return invalid(p+".content", "file %q is %d bytes, more than the limit of %d", f.Path, len(f.Content), MaxFileSize)
		}
		if !utf8.ValidString(f.Content) || strings.IndexByte(f.Content, 0) >= 0 {
			return invalid(p+".content", "file %q is not UTF-8 text", f.Path)
		}
		total += len(f.Content)
		if total > MaxFilesTotal {
			return invalid(p+".content", "files total more than the limit of %d bytes", MaxFilesTotal)
		}
		if f.Mode < 0 || f.Mode > 0o777 {
			return invalid(p+".mode", "mode %#o is not a permission (0 to 0777)", f.Mode)
		}
	}
	if s.BaseImage != "" {
		if len(s.BaseImage) > 255 || strings.Contains(s.BaseImage, "://") ||
			strings.IndexFunc(s.BaseImage, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
			return invalid("baseImage", "invalid image reference %q", s.BaseImage)
		}
	}
	if s.TimeoutMs < 0 || s.TimeoutMs > MaxTimeoutMs {
		return invalid("timeoutMs", "timeoutMs %d is out of range 1..%d (0 means %d)", s.TimeoutMs, MaxTimeoutMs, DefaultTimeoutMs)
	}
	return nil
}

func (m *Manifest) validateDependencies() *errclass.Error {
	if len(m.Dependencies) > 0 && m.Runtime != RuntimeExec {
		return invalid("dependencies", "dependencies are only allowed with runtime %q", RuntimeExec)
	}
	seen := map[Dependency]int{}
	for i, d := range m.Dependencies {
		p := fmt.Sprintf("dependencies[%d]", i)
		switch d.Kind {
		case DepPip, DepConda, DepApt:
			if d.Name == "" || len(d.Name) > 214 || !isToken(d.Name) {
				return invalid(p+".name", "invalid %s package name %q", d.Kind, d.Name)
			}
		case DepFile:
			if e := checkPath(p+".name", d.Name); e != nil {
				return e
			}
			if !slices.ContainsFunc(m.Scoring.Files, func(f File) bool { return f.Path == d.Name }) {
				return invalid(p+".name", "file %q is not in scoring.files", d.Name)
			}
			if d.Version != "" {
				return invalid(p+".version", "a file dependency has no version, got %q", d.Version)
			}
		default:
			return invalid(p+".kind", "unknown dependency kind %q, want pip, conda, apt or file", d.Kind)
		}
		if len(d.Version) > 128 || !isToken(d.Version) && d.Version != "" {
			return invalid(p+".version", "invalid version %q", d.Version)
		}
		if j, dup := seen[Dependency{Kind: d.Kind, Name: d.Name}]; dup {
			return invalid(p+".name", "%s dependency %q is also listed at dependencies[%d]", d.Kind, d.Name, j)
		}
		seen[Dependency{Kind: d.Kind, Name: d.Name}] = i
	}
	return nil
}

func (s *Schema) validate() *errclass.Error {
	if len(s.Inputs) == 0 {
		return invalid("inputs", "at least one input is required")
	}
	for _, list := range []struct {
		name   string
		fields []Field
	}{{"inputs", s.Inputs}, {"outputs", s.Outputs}} {
		if len(list.fields) > MaxFields {
			return invalid(list.name, "%d fields, more than the limit of %d", len(list.fields), MaxFields)
		}
		seen := map[string]int{}
		for i, f := range list.fields {
			p := fmt.Sprintf("%s[%d]", list.name, i)
			if e := within(p, f.validate()); e != nil {
				return e
			}
			if j, dup := seen[f.Name]; dup {
				return invalid(p+".name", "field name %q is also used by %s[%d]", f.Name, list.name, j)
			}
			seen[f.Name] = i
		}
	}
	return nil
}

func (f *Field) validate() *errclass.Error {
	if f.Name == "" || len(f.Name) > maxFieldNameLen || !utf8.ValidString(f.Name) ||
		strings.TrimSpace(f.Name) != f.Name || strings.IndexFunc(f.Name, unicode.IsControl) >= 0 {
		return invalid("name", "invalid field name %q: want 1-%d printable characters without surrounding spaces", f.Name, maxFieldNameLen)
	}
	if !f.Type.Valid() {
		return invalid("type", "unknown data type %q", f.Type)
	}
	if len(f.Shape) > MaxRank {
		return invalid("shape", "%d dimensions, more than the limit of %d", len(f.Shape), MaxRank)
	}
	n := 1
	for i, d := range f.Shape {
		if d < 1 && d != -1 {
			return invalid(fmt.Sprintf("shape[%d]", i), "dimension %d must be >= 1 or -1 (dynamic)", d)
		}
		if d > 0 {
			if d > MaxElements || n*d > MaxElements {
				return invalid(fmt.Sprintf("shape[%d]", i), "shape %v has more than %d elements", f.Shape, MaxElements)
			}
			n *= d
		}
	}
	for _, b := range []struct {
		name string
		v    *float64
	}{{"min", f.Min}, {"max", f.Max}} {
		if b.v == nil {
			continue
		}
		if !f.Type.IsNumeric() {
			return invalid(b.name, "%s is only allowed for numeric types, not %q", b.name, f.Type)
		}
		if math.IsNaN(*b.v) || math.IsInf(*b.v, 0) {
			return invalid(b.name, "%s %v is not a finite number", b.name, *b.v)
		}
	}
	if f.Min != nil && f.Max != nil && *f.Min > *f.Max {
		return invalid("min", "min %v is greater than max %v", *f.Min, *f.Max)
	}
	if len(f.Categories) > 0 && f.Type != TypeString && !f.Type.IsInteger() {
		return invalid("categories", "categories are only allowed for string and integer types, not %q", f.Type)
	}
	if e := checkUniqueStrings("categories", f.Categories); e != nil {
		return e
	}
	if f.Type.IsInteger() {
		for i, c := range f.Categories {
			if v, ok := parseIntLiteral(c); !ok || v.String() != c || !v.fits(f.Type) {
				return invalid(fmt.Sprintf("categories[%d]", i), "category %q is not a canonical %s integer", c, f.Type)
			}
		}
	}
	return checkText("description", f.Description, maxStringLen, true)
}

func (b *Baseline) validate(s Schema) *errclass.Error {
	for _, name := range sortedKeys(b.Features) {
		fb := b.Features[name]
		p := joinPath("features", keyPath(name))
		f, ok := s.field(name)
		if !ok {
			return invalid(p, "%q is not an input or output of the schema", name)
		}
		if len(fb.Edges) == 0 && len(fb.Categories) == 0 {
			return invalid(p, "a feature baseline needs edges or categories")
		}
		if len(fb.Edges) > 0 && !f.Type.IsNumeric() {
			return invalid(p+".edges", "edges are only allowed for numeric fields, %q is %q", name, f.Type)
		}
		if len(fb.Edges) > maxBaselineEdges {
			return invalid(p+".edges", "%d edges, more than the limit of %d", len(fb.Edges), maxBaselineEdges)
		}
		for i, e := range fb.Edges {
			if math.IsNaN(e) || math.IsInf(e, 0) {
				return invalid(fmt.Sprintf("%s.edges[%d]", p, i), "edge %v is not a finite number", e)
			}
			if i > 0 && e <= fb.Edges[i-1] {
				return invalid(fmt.Sprintf("%s.edges[%d]", p, i), "edge %v is not greater than the previous edge %v", e, fb.Edges[i-1])
			}
		}
		if len(fb.Counts) != 0 && len(fb.Counts) != len(fb.Edges)+1 || len(fb.Edges) > 0 && len(fb.Counts) == 0 {
			return invalid(p+".counts", "%d counts for %d edges, want %d", len(fb.Counts), len(fb.Edges), len(fb.Edges)+1)
		}
		for i, c := range fb.Counts {
			if !validCount(c) {
				return invalid(fmt.Sprintf("%s.counts[%d]", p, i), "count %v must be a finite number >= 0", c)
			}
		}
		for _, k := range sortedKeys(fb.Categories) {
			if !utf8.ValidString(k) {
				return invalid(joinPath(p+".categories", keyPath(k)), "category %q is not valid UTF-8", k)
			}
			if c := fb.Categories[k]; !validCount(c) {
				return invalid(joinPath(p+".categories", keyPath(k)), "count %v must be a finite number >= 0", c)
			}
		}
	}
	return nil
}

func validCount(c float64) bool { return c >= 0 && !math.IsInf(c, 0) } // NaN fails c >= 0

// field finds an input, else an output, by name.
func (s *Schema) field(name string) (Field, bool) {
	for _, list := range [][]Field{s.Inputs, s.Outputs} {
		if i := slices.IndexFunc(list, func(f Field) bool { return f.Name == name }); i >= 0 {
			return list[i], true
		}
	}
	return Field{}, false
}

// ValidateRow checks one row of input (sample data or a scoring request)
// against the schema's inputs: every key is an input, every non-nullable input
// is present and not null, and every value has the field's type, shape, range
// and categories. Numbers may be json.Number (as decoded with UseNumber),
// float64 or any Go integer or float type; shaped fields take a flat array of
// all elements or nested arrays matching the shape. The error's Field is the
// path inside the row ("age", "pixels[3]"); the caller adds the row's place.
func ValidateRow(schema Schema, row map[string]any) error {
	return finish(validateRow(schema, row))
}

func validateRow(schema Schema, row map[string]any) *errclass.Error {
	for _, k := range sortedKeys(row) {
		if _, ok := schema.input(k); !ok {
			return invalid(keyPath(k), "%q is not an input of the schema", k)
		}
	}
	for i := range schema.Inputs {
		f := &schema.Inputs[i]
		v, ok := row[f.Name]
		if !ok || v == nil {
			if f.Nullable {
				continue
			}
			return invalid(keyPath(f.Name), "input %q is required", f.Name)
		}
		if e := within(keyPath(f.Name), f.checkValue(v)); e != nil {
			return e
		}
	}
	return nil
}

func (s *Schema) input(name string) (*Field, bool) {
	for i := range s.Inputs {
		if s.Inputs[i].Name == name {
			return &s.Inputs[i], true
		}
	}
	return nil, false
}

// checkValue checks a non-null value against f.
func (f *Field) checkValue(v any) *errclass.Error {
	if len(f.Shape) == 0 {
		return f.checkScalar(v)
	}
	arr, ok := v.([]any)
	if !ok {
		return invalid("", "want an array for shape %v, got %s", f.Shape, kindOf(v))
	}
	if len(arr) > 0 {
		if _, nested := arr[0].([]any); nested {
			return f.checkNested(arr, 0, "")
		}
	}
	fixed, dynamic := 1, false
	for _, d := range f.Shape {
		if d < 0 {
			dynamic = true
		} else {
			fixed *= d
		}
	}
	if !dynamic && len(arr) != fixed || dynamic && (fixed == 0 && len(arr) != 0 || fixed != 0 && len(arr)%fixed != 0) {
		want := strconv.Itoa(fixed)
		if dynamic {
			want = "a multiple of " + want
		}
		return invalid("", "%d elements for shape %v, want %s", len(arr), f.Shape, want)
	}
	for i, e := range arr {
		if e := within(fmt.Sprintf("[%d]", i), f.checkScalar(e)); e != nil {
			return e
		}
	}
	return nil
}

// checkNested checks arr as nested arrays from dimension dim of f.Shape on.
func (f *Field) checkNested(arr []any, dim int, p string) *errclass.Error {
	if d := f.Shape[dim]; d >= 0 && len(arr) != d {
		return invalid(p, "%d elements in dimension %d of shape %v, want %d", len(arr), dim, f.Shape, d)
	}
	last := dim == len(f.Shape)-1
	for i, e := range arr {
		ep := fmt.Sprintf("%s[%d]", p, i)
		if last {
			if e := within(ep, f.checkScalar(e)); e != nil {
				return e
			}
			continue
		}
		sub, ok := e.([]any)
		if !ok {
			return invalid(ep, "want an array for dimension %d of shape %v, got %s", dim+1, f.Shape, kindOf(e))
		}
		if e := f.checkNested(sub, dim+1, ep); e != nil {
			return e
		}
	}
	return nil
}

// checkScalar checks one element against f's type, range and categories.
func (f *Field) checkScalar(v any) *errclass.Error {
	switch {
	case f.Type == TypeBool:
		if _, ok := v.(bool); !ok {
			return invalid("", "want true or false, got %s", kindOf(v))
		}
		return nil
	case f.Type == TypeString:
		s, ok := v.(string)
		if !ok {
			return invalid("", "want a string, got %s", kindOf(v))
		}
		if !utf8.ValidString(s) {
			return invalid("", "string %q is not valid UTF-8", s)
		}
		if len(f.Categories) > 0 && !slices.Contains(f.Categories, s) {
			return invalid("", "%q is not one of the categories %q", s, f.Categories)
		}
		return nil
	}
	n, ok := numberOf(v)
	if !ok {
		return invalid("", "want a number, got %s", kindOf(v))
	}
	if math.IsNaN(n.f) || math.IsInf(n.f, 0) {
		return invalid("", "%v is not a finite number", n.f)
	}
	switch f.Type {
	case TypeFloat16:
		if math.Abs(n.f) > 65504 {
			return invalid("", "%v is out of the float16 range", n.f)
		}
	case TypeFloat32:
		if math.Abs(n.f) > math.MaxFloat32 {
			return invalid("", "%v is out of the float32 range", n.f)
		}
	case TypeFloat64:
	default: // integers
		if !n.isInt {
			return invalid("", "%v is not an integer", n)
		}
		if !n.i.fits(f.Type) {
			return invalid("", "%v is out of the %s range", n.i, f.Type)
		}
		if len(f.Categories) > 0 && !slices.Contains(f.Categories, n.i.String()) {
			return invalid("", "%v is not one of the categories %q", n.i, f.Categories)
		}
	}
	if f.Min != nil && n.f < *f.Min {
		return invalid("", "%v is less than min %v", n, *f.Min)
	}
	if f.Max != nil && n.f > *f.Max {
		return invalid("", "%v is greater than max %v", n, *f.Max)
	}
	return nil
}

// integer is an exact integer of up to 64 bits, signed or not.
type integer struct {
	neg bool
	abs uint64
}

func (v integer) String() string {
	if v.neg {
		return "-" + strconv.FormatUint(v.abs, 10)
	}
	return strconv.FormatUint(v.abs, 10)
}

func (v integer) fits(t DataType) bool {
	lo, hi, ok := t.intRange()
	if !ok {
		return false
	}
	if v.neg {
		return lo < 0 && v.abs <= uint64(-(lo+1))+1
	}
	return v.abs <= hi
}

// parseIntLiteral parses a decimal integer literal of up to 64 bits.
func parseIntLiteral(s string) (integer, bool) {
	neg := strings.HasPrefix(s, "-")
	u, err := strconv.ParseUint(strings.TrimPrefix(s, "-"), 10, 64)
	if err != nil || strings.HasPrefix(s, "+") {
		return integer{}, false
	}
	if neg && u == 0 {
		neg = false
	}
	return integer{neg: neg, abs: u}, true
}

// number is a numeric value: f always, i exactly when isInt.
type number struct {
	f     float64
	i     integer
	isInt bool
}

func (n number) String() string {
	if n.isInt {
		return n.i.String()
	}
	return strconv.FormatFloat(n.f, 'g', -1, 64)
}

func numberOf(v any) (number, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil || !isJSONNumber(string(x)) {
			return number{}, false
		}
		if i, ok := parseIntLiteral(string(x)); ok {
			return number{f: f, i: i, isInt: true}, true
		}
		return fromFloat(f), true
	case float64:
		return fromFloat(x), true
	case float32:
		return fromFloat(float64(x)), true
	case int:
		return fromInt(int64(x)), true
	case int8:
		return fromInt(int64(x)), true
	case int16:
		return fromInt(int64(x)), true
	case int32:
		return fromInt(int64(x)), true
	case int64:
		return fromInt(x), true
	case uint:
		return fromUint(uint64(x)), true
	case uint8:
		return fromUint(uint64(x)), true
	case uint16:
		return fromUint(uint64(x)), true
	case uint32:
		return fromUint(uint64(x)), true
	case uint64:
		return fromUint(x), true
	}
	return number{}, false
}

func fromInt(x int64) number {
	if x < 0 {
		return number{f: float64(x), i: integer{neg: true, abs: uint64(-(x + 1)) + 1}, isInt: true}
	}
	return fromUint(uint64(x))
}

func fromUint(x uint64) number {
	return number{f: float64(x), i: integer{abs: x}, isInt: true}
}

// fromFloat makes a number of f, exact as an integer when f is integral and
// within 64 bits.
func fromFloat(f float64) number {
	n := number{f: f}
	if f != math.Trunc(f) || math.IsInf(f, 0) {
		return n
	}
	switch {
	case f >= 0 && f < 1<<64:
		n.i, n.isInt = integer{abs: uint64(f)}, true
	case f < 0 && f >= -(1<<63):
		n.i, n.isInt = fromInt(int64(f)).i, true
	}
	return n
}

func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	if _, ok := numberOf(v); ok {
		return "a number"
	}
	return fmt.Sprintf("a Go %T", v)
}

// checkPath checks a clean relative slash-separated path.
func checkPath(field, p string) *errclass.Error {
	switch {
	case p == "":
		return invalid(field, "path is required")
	case len(p) > 255:
		return invalid(field, "path %q is longer than 255 bytes", p)
	case strings.HasPrefix(p, "/"):
		return invalid(field, "path %q must be relative", p)
	case path.Clean(p) != p || p == "." || p == ".." || strings.HasPrefix(p, "../"):
		return invalid(field, "path %q is not a clean relative path", p)
	case !utf8.ValidString(p) || strings.ContainsAny(p, "\\:*?\"<>|") ||
		strings.IndexFunc(p, unicode.IsControl) >= 0:
		return invalid(field, "path %q has characters not allowed in file names", p)
	}
	return nil
}

// checkText checks a free-text field: valid UTF-8, bounded, and (unless
// allowEmpty) present. No NUL bytes.
func checkText(field, s string, max int, allowEmpty bool) *errclass.Error {
	switch {
	case s == "" && !allowEmpty:
		return invalid(field, "must not be empty")
	case len(s) > max:
		return invalid(field, "%d bytes, more than the limit of %d", len(s), max)
	case !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0:
		return invalid(field, "%q is not valid UTF-8 text", s)
	}
	return nil
}

func checkUniqueStrings(field string, list []string) *errclass.Error {
	seen := map[string]int{}
	for i, s := range list {
		p := fmt.Sprintf("%s[%d]", field, i)
		if e := checkText(p, s, maxStringLen, false); e != nil {
			return e
		}
		if j, dup := seen[s]; dup {
			return invalid(p, "%q is also at %s[%d]", s, field, j)
		}
		seen[s] = i
	}
	return nil
}

func validDigest(d string) bool {
	hex, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	for i := range len(hex) {
		if c := hex[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// isToken reports whether s is printable ASCII without spaces.
func isToken(s string) bool {
	for i := range len(s) {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func validLabel(s string, allowEmpty bool) bool {
	if s == "" {
		return allowEmpty
	}
	if len(s) > 63 || !isAlnum(s[0]) || !isAlnum(s[len(s)-1]) {
		return false
	}
	for i := range len(s) {
		if c := s[i]; !isAlnum(c) && c != '-' && c != '_' && c != '.' && c != '/' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// isJSONNumber reports whether s is a number literal by the JSON grammar.
func isJSONNumber(s string) bool {
	s = strings.TrimPrefix(s, "-")
	digits := func() int {
		n := 0
		for n < len(s) && s[n] >= '0' && s[n] <= '9' {
			n++
		}
		s = s[n:]
		return n
	}
	if strings.HasPrefix(s, "0") {
		s = s[1:]
	} else if digits() == 0 {
		return false
	}
	if strings.HasPrefix(s, ".") {
		s = s[1:]
		if digits() == 0 {
			return false
		}
	}
	if len(s) > 0 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
			s = s[1:]
		}
		if digits() == 0 {
			return false
		}
	}
	return s == ""
}
