package scorer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/manifest"
)

// decodeStrict decodes one JSON document into v, numbers as json.Number,
// refusing trailing data.
func decodeStrict(body []byte, v any, unknown bool) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if !unknown {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		return errclass.Wrap(errclass.InvalidArgument, err, "malformed JSON body")
	}
	if _, err := dec.Token(); err == nil {
		return invalidAt("", "malformed JSON body: trailing data after the document")
	}
	return nil
}

// parseScore parses the Azure ML request {"input_df": [{feature: value}, ...]}.
func parseScore(body []byte) ([]map[string]any, error) {
	var req struct {
		InputDF *[]map[string]any `json:"input_df"`
	}
	if err := decodeStrict(body, &req, false); err != nil {
		return nil, err
	}
	if req.InputDF == nil {
		return nil, invalidAt("input_df", `"input_df" is required: {"input_df": [{"feature": value, ...}, ...]}`)
	}
	for i, r := range *req.InputDF {
		if r == nil {
			return nil, invalidAt(fmt.Sprintf("input_df[%d]", i), "input_df[%d] is null, want an object", i)
		}
	}
	return *req.InputDF, nil
}

// parseInvocations parses an MLflow request: exactly one of dataframe_split
// ({columns, data}), dataframe_records ([{column: value}]), instances or
// inputs (a list of rows, a list of value lists in schema order, or an
// object of columns).
func parseInvocations(body []byte, schema manifest.Schema) ([]map[string]any, error) {
	var req map[string]json.RawMessage
	if err := decodeStrict(body, &req, true); err != nil {
		return nil, err
	}
	if req == nil {
		return nil, invalidAt("", "the body must be a JSON object")
	}
	keys := []string{"dataframe_split", "dataframe_records", "instances", "inputs"}
	var key string
	for _, k := range keys {
		if _, ok := req[k]; ok {
			if key != "" {
				return nil, invalidAt(k, "only one of %s is allowed, got %q and %q", strings.Join(keys, ", "), key, k)
			}
			key = k
		}
	}
	for k := range req {
		if k != key && k != "params" {
			if key == "" {
				break
			}
			return nil, invalidAt(k, "unknown field %q", k)
		}
	}
	if key == "" {
		return nil, invalidAt("", "one of %s is required", strings.Join(keys, ", "))
	}
	raw := req[key]
	switch key {
	case "dataframe_split":
		var split struct {
			Columns []string `json:"columns"`
			Data    [][]any  `json:"data"`
			Index   []any    `json:"index"`
		}
		if err := decodeStrict(raw, &split, false); err != nil {
			return nil, fmt.Errorf("dataframe_split: %w", err)
		}
		if split.Columns == nil {
			return nil, invalidAt("dataframe_split.columns", "dataframe_split.columns is required")
		}
		rows := make([]map[string]any, len(split.Data))
		for i, d := range split.Data {
			if len(d) != len(split.Columns) {
				return nil, invalidAt(fmt.Sprintf("dataframe_split.data[%d]", i), "row %d has %d values for %d columns", i, len(d), len(split.Columns))
			}
			row := make(map[string]any, len(d))
			for j, c := range split.Columns {
				row[c] = d[j]
			}
			rows[i] = row
		}
		return rows, nil
	case "dataframe_records":
		var recs []map[string]any
		if err := decodeStrict(raw, &recs, false); err != nil {
			return nil, fmt.Errorf("dataframe_records: %w", err)
		}
		for i, r := range recs {
			if r == nil {
				return nil, invalidAt(fmt.Sprintf("dataframe_records[%d]", i), "dataframe_records[%d] is null, want an object", i)
			}
		}
		return recs, nil
	}
	var v any
	if err := decodeStrict(raw, &v, false); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	switch x := v.(type) {
	case []any:
		return rowsOfList(key, x, schema)
	case map[string]any:
		return rowsOfColumns(key, x)
	}
	return nil, invalidAt(key, "%s must be a list of rows or an object of columns", key)
}

// rowsOfList turns a list of objects, or of values in schema order, into rows.
func rowsOfList(key string, list []any, schema manifest.Schema) ([]map[string]any, error) {
	rows := make([]map[string]any, len(list))
	for i, e := range list {
		switch x := e.(type) {
		case map[string]any:
			rows[i] = x
			continue
		case []any:
			if len(schema.Inputs) > 1 {
				if len(x) != len(schema.Inputs) {
					return nil, invalidAt(fmt.Sprintf("%s[%d]", key, i), "row %d has %d values for the %d schema inputs (%s)", i, len(x), len(schema.Inputs), fieldNames(schema.Inputs))
				}
				row := make(map[string]any, len(x))
				for j, f := range schema.Inputs {
					row[f.Name] = x[j]
				}
				rows[i] = row
				continue
			}
		}
		if len(schema.Inputs) != 1 {
			return nil, invalidAt(fmt.Sprintf("%s[%d]", key, i), "row %d must be an object or a list of values in schema order", i)
		}
		rows[i] = map[string]any{schema.Inputs[0].Name: e}
	}
	return rows, nil
}

// rowsOfColumns turns {column: [values...]} into rows.
func rowsOfColumns(key string, cols map[string]any) ([]map[string]any, error) {
	n := -1
	for name, c := range cols {
		list, ok := c.([]any)
		if !ok {
			return nil, invalidAt(key+"."+name, "column %q must be a list of values", name)
		}
		if n >= 0 && len(list) != n {
			return nil, invalidAt(key+"."+name, "column %q has %d values, other columns have %d", name, len(list), n)
		}
		n = len(list)
	}
	if n < 0 {
		n = 0
	}
	rows := make([]map[string]any, n)
	for i := range rows {
		rows[i] = make(map[string]any, len(cols))
	}
	for name, c := range cols {
		for i, v := range c.([]any) {
			rows[i][name] = v
		}
	}
	return rows, nil
}

// v2Request is an Open Inference Protocol inference request.
type v2Request struct {
	ID         string         `json:"id,omitempty"`
	Parameters map[string]any `json:"parameters,omitempty"`
	Inputs     []v2Tensor     `json:"inputs"`
	Outputs    []struct {
		Name       string         `json:"name"`
		Parameters map[string]any `json:"parameters,omitempty"`
	} `json:"outputs,omitempty"`
}

type v2Tensor struct {
	Name       string         `json:"name"`
	Shape      []int64        `json:"shape"`
	Datatype   string         `json:"datatype"`
	Parameters map[string]any `json:"parameters,omitempty"`
	Data       []any          `json:"data"`
}

// parseV2 parses an inference request and turns its tensors into rows. Each
// input names a schema input, shaped [N, field shape...], or (when the model
// takes the schema concatenated, concatName) the model input, shaped
// [N, K], which is split into the schema's fields in order.
func parseV2(body []byte, schema manifest.Schema, concatName string, maxElems int) (string, []map[string]any, error) {
	var req v2Request
	if err := decodeStrict(body, &req, false); err != nil {
		return "", nil, err
	}
	if len(req.Inputs) == 0 {
		return req.ID, nil, invalidAt("inputs", "inputs is required and must not be empty")
	}
	n := -1
	var rows []map[string]any
	seen := map[string]bool{}
	for k, in := range req.Inputs {
		p := fmt.Sprintf("inputs[%d]", k)
		if seen[in.Name] {
			return req.ID, nil, invalidAt(p+".name", "input %q appears twice", in.Name)
		}
		seen[in.Name] = true
		if len(in.Shape) == 0 {
			return req.ID, nil, invalidAt(p+".shape", "input %q: shape must have a batch dimension first", in.Name)
		}
		total := int64(1)
		for _, d := range in.Shape {
			if d < 0 {
				return req.ID, nil, invalidAt(p+".shape", "input %q: negative dimension in shape %v", in.Name, in.Shape)
			}
			if d > 0 && total > math.MaxInt32/d {
				return req.ID, nil, invalidAt(p+".shape", "input %q: shape %v is too large", in.Name, in.Shape)
			}
			total *= d
		}
		data := in.Data
		if len(data) > 0 {
			if _, nested := data[0].([]any); nested {
				data = flatten(data, make([]any, 0, total))
			}
		}
		if int64(len(data)) != total || total > int64(maxElems) {
			return req.ID, nil, invalidAt(p+".data", "input %q: %d data elements for shape %v, want %d", in.Name, len(data), in.Shape, total)
		}
		kind, ok := v2Kinds[in.Datatype]
		if !ok {
			return req.ID, nil, invalidAt(p+".datatype", "input %q: unknown datatype %q", in.Name, in.Datatype)
		}
		for j, e := range data {
			if !kind.accepts(e) {
				return req.ID, nil, invalidAt(fmt.Sprintf("%s.data[%d]", p, j), "input %q: element %d is %s, not a %s value", in.Name, j, jsonKind(e), in.Datatype)
			}
		}
		rowsN := int(in.Shape[0])
		if n >= 0 && rowsN != n {
			return req.ID, nil, invalidAt(p+".shape", "input %q has %d rows, other inputs have %d", in.Name, rowsN, n)
		}
		if n < 0 {
			n = rowsN
			rows = make([]map[string]any, n)
			for i := range rows {
				rows[i] = make(map[string]any, len(schema.Inputs))
			}
		}
		perRow := 0
		if n > 0 {
			perRow = len(data) / n
		}
		// The fields this tensor feeds.
		var fields []manifest.Field
		if f, ok := schemaInput(schema, in.Name); ok {
			fields = []manifest.Field{f}
		} else if in.Name == concatName && concatName != "" {
			fields = schema.Inputs
		} else {
			return req.ID, nil, invalidAt(p+".name", "input %q is not an input of the model, want one of %s", in.Name, fieldNames(schema.Inputs))
		}
		if !datatypeFits(in.Datatype, fields) {
			return req.ID, nil, invalidAt(p+".datatype", "input %q: datatype %s does not fit the schema type %s", in.Name, in.Datatype, fields[0].Type)
		}
		sizes, want := make([]int, len(fields)), 0
		for i, f := range fields {
			sizes[i] = 1
			for _, d := range f.Shape {
				sizes[i] *= max(d, 0)
			}
			want += sizes[i]
		}
		if len(fields) == 1 && len(fields[0].Shape) > 0 && slicesHasDynamic(fields[0].Shape) {
			sizes[0], want = perRow, perRow
		}
		if perRow != want && n > 0 {
			return req.ID, nil, invalidAt(p+".shape", "input %q: shape %v gives %d elements per row, the schema wants %d", in.Name, in.Shape, perRow, want)
		}
		for i := 0; i < n; i++ {
			off := i * perRow
			for fi, f := range fields {
				if len(f.Shape) == 0 {
					rows[i][f.Name] = data[off]
				} else {
					rows[i][f.Name] = data[off : off+sizes[fi] : off+sizes[fi]]
				}
				off += sizes[fi]
			}
		}
	}
	return req.ID, rows, nil
}

func slicesHasDynamic(shape []int) bool {
	for _, d := range shape {
		if d < 0 {
			return true
		}
	}
	return false
}

func schemaInput(s manifest.Schema, name string) (manifest.Field, bool) {
	for _, f := range s.Inputs {
		if f.Name == name {
			return f, true
		}
	}
	return manifest.Field{}, false
}

type v2Kind int

const (
	v2Bool v2Kind = iota
	v2Number
	v2Bytes
)

var v2Kinds = map[string]v2Kind{
	"BOOL": v2Bool, "BYTES": v2Bytes,
	"UINT8": v2Number, "UINT16": v2Number, "UINT32": v2Number, "UINT64": v2Number,
	"INT8": v2Number, "INT16": v2Number, "INT32": v2Number, "INT64": v2Number,
	"FP16": v2Number, "FP32": v2Number, "FP64": v2Number,
}

func (k v2Kind) accepts(v any) bool {
	switch k {
	case v2Bool:
		_, ok := v.(bool)
		return ok
	case v2Bytes:
		_, ok := v.(string)
		return ok
	}
	_, ok := v.(json.Number)
	return ok
}

func datatypeFits(dt string, fields []manifest.Field) bool {
	for _, f := range fields {
		switch {
		case f.Type == manifest.TypeString && dt != "BYTES",
			f.Type == manifest.TypeBool && dt != "BOOL",
			f.Type.IsNumeric() && v2Kinds[dt] != v2Number:
			return false
		}
	}
	return true
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case []any:
		return "an array"
	}
	return "an object"
}

// invalidAt is errclass.Invalid with the message starting with the field.
func invalidAt(field, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if field != "" {
		msg = field + ": " + msg
	}
	return errclass.New(errclass.InvalidArgument, field, "%s", msg)
}
