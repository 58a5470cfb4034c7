package scorer

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/manifest"
)

// RowError is a request row that does not match the schema. It is
// classified errclass.InvalidArgument.
type RowError struct {
	Row   int    // index of the row in the request
	Field string // path inside the row ("age", "pixels[3]"), "" for the row itself
	Msg   string
	// rangeErr: the value had the right type but broke min/max/categories.
	rangeErr bool
}

func (e *RowError) Error() string {
	if e.Row >= 0 {
		return fmt.Sprintf("row %d: %s", e.Row, e.Msg)
	}
	return e.Msg
}

// Unwrap classifies the error as bad input.
func (e *RowError) Unwrap() error { return errclass.Invalid(e.Field, "%s", e.Msg) }

// column holds one schema input's values for every row of a batch, flat and
// row-major: per elements per row.
type column struct {
	field *manifest.Field
	per   int // elements per row; -1 for a dynamic shape (values not extracted)
	null  []bool
	f64   []float64 // float types
	i64   []int64   // integer types (uint64 bit-cast)
	str   []string
	bools []bool
}

// batch is a validated request: the rows as decoded and their columns.
type batch struct {
	n    int
	rows []map[string]any
	cols []column
}

// fieldSpec is what the fast validator precomputes per schema input.
type fieldSpec struct {
	f      *manifest.Field
	per    int // -1: dynamic shape
	intCat map[int64]bool
	strCat map[string]bool
}

// validator checks request rows against the schema quickly and falls back to
// manifest.ValidateRow for the exact message when a row is bad.
type validator struct {
	schema manifest.Schema
	specs  []fieldSpec
}

func newValidator(schema manifest.Schema) *validator {
	v := &validator{schema: schema}
	for i := range schema.Inputs {
		f := &schema.Inputs[i]
		sp := fieldSpec{f: f, per: 1}
		for _, d := range f.Shape {
			if d < 0 {
				sp.per = -1
				break
			}
			sp.per *= d
		}
		if len(f.Categories) > 0 {
			if f.Type == manifest.TypeString {
				sp.strCat = make(map[string]bool)
				for _, c := range f.Categories {
					sp.strCat[c] = true
				}
			} else {
				sp.intCat = make(map[int64]bool)
				for _, c := range f.Categories {
					if x, err := strconv.ParseInt(c, 10, 64); err == nil {
						sp.intCat[x] = true
					}
				}
			}
		}
		v.specs = append(v.specs, sp)
	}
	return v
}

var errBadValue = errors.New("bad value")

// validate checks rows and extracts their columns. On a bad row the error is
// a *RowError.
func (v *validator) validate(rows []map[string]any) (*batch, error) {
	b := &batch{n: len(rows), rows: rows, cols: make([]column, len(v.specs))}
	for i := range v.specs {
		sp := &v.specs[i]
		c := &b.cols[i]
		c.field, c.per = sp.f, sp.per
		if sp.per < 0 {
			continue
		}
		n := len(rows) * sp.per
		switch {
		case sp.f.Type == manifest.TypeString:
			c.str = make([]string, 0, n)
		case sp.f.Type == manifest.TypeBool:
			c.bools = make([]bool, 0, n)
		case sp.f.Type.IsFloat():
			c.f64 = make([]float64, 0, n)
		default:
			c.i64 = make([]int64, 0, n)
		}
	}
	for r, row := range rows {
		if err := v.row(b, r, row); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func (v *validator) row(b *batch, r int, row map[string]any) error {
	found := 0
	for i := range v.specs {
		sp := &v.specs[i]
		c := &b.cols[i]
		val, ok := row[sp.f.Name]
		if ok {
			found++
		}
		if !ok || val == nil {
			if !sp.f.Nullable {
				return v.slow(r, row, false)
			}
			if sp.per < 0 {
				continue
			}
			if c.null == nil {
				c.null = make([]bool, b.n)
			}
			c.null[r] = true
			c.appendZero(sp.per)
			continue
		}
		if sp.per < 0 {
			if err := manifest.ValidateRow(v.schema, row); err != nil {
				return rowErr(r, err, false)
			}
			continue
		}
		if len(sp.f.Shape) == 0 {
			if rangeErr, err := c.appendScalar(sp, val); err != nil {
				return v.slow(r, row, rangeErr)
			}
			continue
		}
		arr, isArr := val.([]any)
		if !isArr || len(arr) != sp.per {
			return v.slow(r, row, false)
		}
		for _, e := range arr {
			if _, nested := e.([]any); nested {
				// Nested arrays: let the manifest check the structure, then flatten.
				if err := manifest.ValidateRow(v.schema, row); err != nil {
					return rowErr(r, err, false)
				}
				break
			}
		}
		flat := arr
		if len(arr) > 0 {
			if _, nested := arr[0].([]any); nested {
				flat = flatten(arr, nil)
			}
		}
		if len(flat) != sp.per {
			return v.slow(r, row, false)
		}
		for _, e := range flat {
			if rangeErr, err := c.appendScalar(sp, e); err != nil {
				return v.slow(r, row, rangeErr)
			}
		}
	}
	if found != len(row) {
		return v.slow(r, row, false)
	}
	return nil
}

func flatten(arr []any, dst []any) []any {
	for _, e := range arr {
		if sub, ok := e.([]any); ok {
			dst = flatten(sub, dst)
		} else {
			dst = append(dst, e)
		}
	}
	return dst
}

// slow gets the exact error for a row the fast path refused.
func (v *validator) slow(r int, row map[string]any, rangeErr bool) error {
	err := manifest.ValidateRow(v.schema, row)
	if err == nil {
		err = errclass.Invalid("", "row does not match the schema")
	}
	return rowErr(r, err, rangeErr)
}

func rowErr(r int, err error, rangeErr bool) *RowError {
	return &RowError{Row: r, Field: errclass.FieldOf(err), Msg: err.Error(), rangeErr: rangeErr}
}

func (c *column) appendZero(n int) {
	for range n {
		switch {
		case c.str != nil:
			c.str = append(c.str, "")
		case c.bools != nil:
			c.bools = append(c.bools, false)
		case c.f64 != nil:
			c.f64 = append(c.f64, math.NaN())
		default:
			c.i64 = append(c.i64, 0)
		}
	}
}

// appendScalar checks and appends one element; rangeErr tells a value of
// the right type that broke min/max/categories.
func (c *column) appendScalar(sp *fieldSpec, v any) (rangeErr bool, err error) {
	f := sp.f
	switch f.Type {
	case manifest.TypeString:
		s, ok := v.(string)
		if !ok {
			return false, errBadValue
		}
		if sp.strCat != nil && !sp.strCat[s] {
			return true, errBadValue
		}
		c.str = append(c.str, s)
		return false, nil
	case manifest.TypeBool:
		x, ok := v.(bool)
		if !ok {
			return false, errBadValue
		}
		c.bools = append(c.bools, x)
		return false, nil
	}
	var x float64
	if f.Type.IsFloat() {
		switch n := v.(type) {
		case json.Number:
			var perr error
			if x, perr = strconv.ParseFloat(string(n), 64); perr != nil {
				return false, errBadValue
			}
		case float64:
			x = n
		default:
			return false, errBadValue
		}
		if math.IsNaN(x) || math.IsInf(x, 0) ||
			f.Type == manifest.TypeFloat32 && math.Abs(x) > math.MaxFloat32 ||
			f.Type == manifest.TypeFloat16 && math.Abs(x) > 65504 {
			return false, errBadValue
		}
		if f.Min != nil && x < *f.Min || f.Max != nil && x > *f.Max {
			return true, errBadValue
		}
		c.f64 = append(c.f64, x)
		return false, nil
	}
	// Integers: exact parse of the literal; anything else goes the slow way.
	var i int64
	switch n := v.(type) {
	case json.Number:
		if f.Type == manifest.TypeUint64 {
			u, perr := strconv.ParseUint(string(n), 10, 64)
			if perr != nil {
				return c.appendIntegral(sp, string(n))
			}
			i, x = int64(u), float64(u)
		} else {
			var perr error
			if i, perr = strconv.ParseInt(string(n), 10, 64); perr != nil {
				return c.appendIntegral(sp, string(n))
			}
			x = float64(i)
		}
	case float64:
		return c.appendIntegral(sp, strconv.FormatFloat(n, 'g', -1, 64))
	default:
		return false, errBadValue
	}
	return c.appendInt(sp, i, x)
}

// appendIntegral accepts integral float literals (3.0, 1e1) for integer fields.
func (c *column) appendIntegral(sp *fieldSpec, lit string) (bool, error) {
	x, err := strconv.ParseFloat(lit, 64)
	if err != nil || x != math.Trunc(x) || math.Abs(x) >= 1<<63 {
		return false, errBadValue
	}
	if x < 0 && sp.f.Type.IsUnsigned() {
		return true, errBadValue
	}
	return c.appendInt(sp, int64(x), x)
}

func (c *column) appendInt(sp *fieldSpec, i int64, x float64) (bool, error) {
	f := sp.f
	var lo, hi int64
	switch f.Type {
	case manifest.TypeInt8:
		lo, hi = math.MinInt8, math.MaxInt8
	case manifest.TypeInt16:
		lo, hi = math.MinInt16, math.MaxInt16
	case manifest.TypeInt32:
		lo, hi = math.MinInt32, math.MaxInt32
	case manifest.TypeUint8:
		lo, hi = 0, math.MaxUint8
	case manifest.TypeUint16:
		lo, hi = 0, math.MaxUint16
	case manifest.TypeUint32:
		lo, hi = 0, math.MaxUint32
	case manifest.TypeUint64:
		lo, hi = math.MinInt64, math.MaxInt64 // bit-cast: any parsed uint64 fits
	default:
		lo, hi = math.MinInt64, math.MaxInt64
	}
	if i < lo || i > hi {
		return false, errBadValue
	}
	if sp.intCat != nil && !sp.intCat[i] {
		return true, errBadValue
	}
	if f.Min != nil && x < *f.Min || f.Max != nil && x > *f.Max {
		return true, errBadValue
	}
	c.i64 = append(c.i64, i)
	return false, nil
}

// number gives element j of a numeric column as float64 (for profiles).
func (c *column) number(j int) float64 {
	if c.f64 != nil {
		return c.f64[j]
	}
	if c.field.Type == manifest.TypeUint64 {
		return float64(uint64(c.i64[j]))
	}
	return float64(c.i64[j])
}
