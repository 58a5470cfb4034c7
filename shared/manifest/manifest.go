// Package manifest defines the manifest of a scoring image — which model files,
// runtime, scoring command, dependencies, input/output schema, sample data and
// drift baseline go into it — and parses, validates and canonicalizes it.
//
// Manifests arrive from untrusted parties (REST uploads, image layers read by
// the scorer, devices), so [Parse] is strict: unknown or duplicate fields,
// case-mismatched keys, nulls where a value is required, trailing data and
// oversized documents are all rejected. Every error is classified with
// [errclass] and names the offending field as a JSON path such as
// "schema.inputs[2].type" or "sampleData[3].age".
//
// [Manifest.Canonical] gives a stable byte form (defaults applied, map keys
// sorted, numbers normalized, no insignificant whitespace) so that equal
// manifests have equal [Manifest.Digest]s.
package manifest

import (
	"regexp"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// APIVersion is the only apiVersion this package accepts.
const APIVersion = "mlfleet.io/v1"

// Limits on what a manifest may contain.
const (
	MaxSize          = 8 << 20 // bytes of JSON accepted by Parse and Read
	MaxFileSize      = 1 << 20 // bytes of one Scoring.Files entry
	MaxFilesTotal    = 4 << 20 // bytes of all Scoring.Files entries together
	MaxModels        = 64
	MaxFields        = 10000 // per Schema.Inputs and per Schema.Outputs
	MaxSampleRows    = 1000
	MaxRank          = 8       // dimensions of a Field.Shape
	MaxElements      = 1 << 28 // product of the fixed dimensions of a Field.Shape
	MaxTimeoutMs     = 600000
	DefaultTimeoutMs = 10000
	DefaultFileMode  = 0o644
	maxStringLen     = 4096 // descriptions, commands, references
	maxFieldNameLen  = 128
	maxBaselineEdges = 1000
)

// Runtime names the engine that scores inside an image.
type Runtime string

// The runtimes.
const (
	// RuntimeONNX scores ONNX models with the built-in engine of the scorer.
	RuntimeONNX Runtime = "onnx"
	// RuntimeExec runs Scoring.Command inside the image and speaks JSON lines to it.
	RuntimeExec Runtime = "exec"
)

// Valid reports whether r is a known runtime.
func (r Runtime) Valid() bool { return r == RuntimeONNX || r == RuntimeExec }

// Manifest says what goes into a scoring image.
type Manifest struct {
	APIVersion   string            `json:"apiVersion"` // must equal APIVersion
	Name         string            `json:"name"`       // a resource name, see ValidName
	Description  string            `json:"description,omitempty"`
	Runtime      Runtime           `json:"runtime"`
	Models       []ModelRef        `json:"models"` // at least one, unique names and paths
	Scoring      Scoring           `json:"scoring,omitzero"`
	Dependencies []Dependency      `json:"dependencies,omitempty"` // exec only
	Schema       Schema            `json:"schema"`
	SampleData   []map[string]any  `json:"sampleData,omitempty"` // rows keyed by input name, see ValidateRow
	Baseline     *Baseline         `json:"baseline,omitempty"`   // reference profile for drift
	Labels       map[string]string `json:"labels,omitempty"`
}

// ModelRef names one registered model version placed in the image.
type ModelRef struct {
	Name    string `json:"name"`             // registered model name
	Version int    `json:"version"`          // >= 1
	Digest  string `json:"digest,omitempty"` // "sha256:<64 lowercase hex>", filled when resolved
	// Path is the file name inside the image's model directory: a clean
	// relative path. Defaults to "<name>.onnx" for onnx and "<name>" for exec.
	Path string `json:"path,omitempty"`
}

// Scoring configures how the image scores.
type Scoring struct {
	OutputLabels []string `json:"outputLabels,omitempty"` // class names for classifier outputs
	Command      []string `json:"command,omitempty"`      // exec only, required there
	Files        []File   `json:"files,omitempty"`        // exec only: script files shipped in the manifest layer
	BaseImage    string   `json:"baseImage,omitempty"`    // exec only: image reference of the base image
	TimeoutMs    int      `json:"timeoutMs,omitempty"`    // per call; default DefaultTimeoutMs, max MaxTimeoutMs
	BatchInput   bool     `json:"batchInput,omitempty"`   // the command takes many rows per call
}

// File is a text file shipped in the manifest layer.
type File struct {
	Path    string `json:"path"`           // clean relative path, unique
	Content string `json:"content"`        // UTF-8 text, at most MaxFileSize bytes
	Mode    int    `json:"mode,omitempty"` // permission bits (0..0777); default DefaultFileMode
}

// Dependency kinds.
const (
	DepPip   = "pip"
	DepConda = "conda"
	DepApt   = "apt"
	DepFile  = "file" // Name is the path of a file in Scoring.Files
)

// Dependency is a package installed into an exec image.
type Dependency struct {
	Kind    string `json:"kind"` // DepPip, DepConda, DepApt or DepFile
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
}

// Schema describes the rows a model scores and what it returns.
type Schema struct {
	Inputs  []Field `json:"inputs"` // at least one, unique names
	Outputs []Field `json:"outputs,omitempty"`
}

// Field is one named input or output column.
type Field struct {
	Name string   `json:"name"`
	Type DataType `json:"type"`
	// Shape is the per-row shape: empty for a scalar, -1 for a dynamic dimension.
	Shape    []int    `json:"shape,omitempty"`
	Nullable bool     `json:"nullable,omitempty"`
	Min      *float64 `json:"min,omitempty"` // numeric types only, Min <= Max
	Max      *float64 `json:"max,omitempty"`
	// Categories are the allowed values: any strings for TypeString, canonical
	// decimal integers for integer types; not allowed for other types. Unique.
	Categories  []string `json:"categories,omitempty"`
	Description string   `json:"description,omitempty"`
}

// Baseline is the reference profile drift is measured against.
type Baseline struct {
	Features map[string]FeatureBaseline `json:"features"` // keyed by input or output name
}

// FeatureBaseline is the reference distribution of one field.
type FeatureBaseline struct {
	Edges      []float64          `json:"edges,omitempty"`  // strictly increasing bin edges, numeric fields only
	Counts     []float64          `json:"counts,omitempty"` // len(Edges)+1 bins: (-inf,e0), [e0,e1), ..., [en,+inf)
	Categories map[string]float64 `json:"categories,omitempty"`
}

// DataType is the element type of a Field.
type DataType string

// The data types.
const (
	TypeBool    DataType = "bool"
	TypeInt8    DataType = "int8"
	TypeInt16   DataType = "int16"
	TypeInt32   DataType = "int32"
	TypeInt64   DataType = "int64"
	TypeUint8   DataType = "uint8"
	TypeUint16  DataType = "uint16"
	TypeUint32  DataType = "uint32"
	TypeUint64  DataType = "uint64"
	TypeFloat16 DataType = "float16"
	TypeFloat32 DataType = "float32"
	TypeFloat64 DataType = "float64"
	TypeString  DataType = "string"
)

// DataTypes lists every valid DataType.
func DataTypes() []DataType {
	return []DataType{TypeBool, TypeInt8, TypeInt16, TypeInt32, TypeInt64,
		TypeUint8, TypeUint16, TypeUint32, TypeUint64,
		TypeFloat16, TypeFloat32, TypeFloat64, TypeString}
}

// Valid reports whether t is a known data type.
func (t DataType) Valid() bool { return t == TypeBool || t == TypeString || t.IsNumeric() }

// IsNumeric reports whether t is an integer or floating-point type.
func (t DataType) IsNumeric() bool { return t.IsInteger() || t.IsFloat() }

// IsFloat reports whether t is a floating-point type.
func (t DataType) IsFloat() bool {
	return t == TypeFloat16 || t == TypeFloat32 || t == TypeFloat64
}

// IsInteger reports whether t is a signed or unsigned integer type.
func (t DataType) IsInteger() bool {
	_, _, ok := t.intRange()
	return ok
}

// IsUnsigned reports whether t is an unsigned integer type.
func (t DataType) IsUnsigned() bool {
	return t == TypeUint8 || t == TypeUint16 || t == TypeUint32 || t == TypeUint64
}

// intRange gives the inclusive range of a signed type in lo/hi as int64, or
// of an unsigned type with lo == 0 and hi as the maximum reinterpreted.
func (t DataType) intRange() (lo int64, hi uint64, ok bool) {
	switch t {
	case TypeInt8:
		return -1 << 7, 1<<7 - 1, true
	case TypeInt16:
		return -1 << 15, 1<<15 - 1, true
	case TypeInt32:
		return -1 << 31, 1<<31 - 1, true
	case TypeInt64:
		return -1 << 63, 1<<63 - 1, true
	case TypeUint8:
		return 0, 1<<8 - 1, true
	case TypeUint16:
		return 0, 1<<16 - 1, true
	case TypeUint32:
		return 0, 1<<32 - 1, true
	case TypeUint64:
		return 0, 1<<64 - 1, true
	}
	return 0, 0, false
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)

// ValidName reports whether s is a valid resource name: 1 to 63 characters
// of lowercase letters, digits, '-', '_' and '.', starting and ending with a
// letter or digit.
func ValidName(s string) bool { return len(s) <= 63 && nameRE.MatchString(s) }

// CheckName returns an errclass.InvalidArgument error naming field unless s
// is a valid resource name.
func CheckName(field, s string) error {
	if ValidName(s) {
		return nil
	}
	return finish(invalid(field, "invalid name %q: want 1-63 of [a-z0-9-_.], starting and ending with [a-z0-9]", s))
}

// invalid makes an unfinished field error: Msg does not yet carry the field.
func invalid(field, format string, args ...any) *errclass.Error {
	return errclass.Invalid(field, format, args...).(*errclass.Error)
}

// finish turns an internal field error into the public form, whose message
// starts with the field path. A nil e gives a nil error.
func finish(e *errclass.Error) error {
	if e == nil {
		return nil
	}
	if e.Field != "" {
		e.Msg = e.Field + ": " + e.Msg
	}
	return e
}

// within puts e's field under prefix.
func within(prefix string, e *errclass.Error) *errclass.Error {
	if e != nil {
		e.Field = joinPath(prefix, e.Field)
	}
	return e
}

// joinPath joins a JSON path and a sub-path ("a" + "b" = "a.b", "a" + "[1]" = "a[1]").
func joinPath(prefix, sub string) string {
	switch {
	case prefix == "":
		return sub
	case sub == "":
		return prefix
	case sub[0] == '[':
		return prefix + sub
	}
	return prefix + "." + sub
}

// keyPath is the path element for an object key: the key itself when it is a
// plain identifier, else the key quoted in brackets (`["petal width"]`).
func keyPath(key string) string {
	plain := key != ""
	for i := 0; i < len(key) && plain; i++ {
		c := key[i]
		plain = c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	}
	if plain {
		return key
	}
	return "[" + quote(key) + "]"
}
