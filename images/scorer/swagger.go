package scorer

import (
	"encoding/json"

	"github.com/mlfleet/mlfleet/shared/manifest"
)

// swaggerDoc generates the Swagger 2.0 document of POST /score from the
// schema, with the sample data as the example request.
func swaggerDoc(m *manifest.Manifest) ([]byte, error) {
	props := map[string]any{}
	var required []string
	for _, f := range m.Schema.Inputs {
		props[f.Name] = fieldSchema(f)
		if !f.Nullable {
			required = append(required, f.Name)
		}
	}
	row := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		row["required"] = required
	}
	input := map[string]any{
		"type":       "object",
		"required":   []string{"input_df"},
		"properties": map[string]any{"input_df": map[string]any{"type": "array", "items": row}},
	}
	if len(m.SampleData) > 0 {
		input["example"] = map[string]any{"input_df": m.SampleData}
	}
	outProps := map[string]any{}
	for _, f := range m.Schema.Outputs {
		outProps[f.Name] = fieldSchema(f)
	}
	outRow := map[string]any{"type": "object"}
	if len(outProps) > 0 {
		outRow["properties"] = outProps
	}
	errDef := map[string]any{"type": "object", "properties": map[string]any{"error": map[string]any{
		"type": "object",
		"properties": map[string]any{
			"message": map[string]any{"type": "string"},
			"row":     map[string]any{"type": "integer"},
			"field":   map[string]any{"type": "string"},
		},
	}}}
	resp := func(desc string) map[string]any {
		return map[string]any{"description": desc, "schema": map[string]any{"$ref": "#/definitions/Error"}}
	}
	doc := map[string]any{
		"swagger": "2.0",
		"info": map[string]any{
			"title":       m.Name,
			"description": m.Description,
			"version":     "1.0",
		},
		"schemes":  []string{"http"},
		"consumes": []string{"application/json"},
		"produces": []string{"application/json"},
		"paths": map[string]any{
			"/score": map[string]any{"post": map[string]any{
				"operationId": "RunMLService",
				"description": "Score rows with the model.",
				"parameters": []any{map[string]any{
					"name": "serviceInputPayload", "in": "body", "required": true,
					"schema": map[string]any{"$ref": "#/definitions/ServiceInput"},
				}},
				"responses": map[string]any{
					"200": map[string]any{"description": "one result per row", "schema": map[string]any{"$ref": "#/definitions/ServiceOutput"}},
					"400": resp("a row does not match the schema"),
					"413": resp("the body is too large"),
					"429": resp("too many requests; retry after Retry-After seconds"),
					"503": resp("the model is not ready"),
					"504": resp("the scoring command timed out"),
				},
			}},
		},
		"definitions": map[string]any{
			"ServiceInput":  input,
			"ServiceOutput": map[string]any{"type": "object", "properties": map[string]any{"result": map[string]any{"type": "array", "items": outRow}}},
			"Error":         errDef,
		},
	}
	return json.MarshalIndent(doc, "", "  ")
}

// fieldSchema is the JSON schema of one field's value.
func fieldSchema(f manifest.Field) map[string]any {
	elem := map[string]any{}
	switch {
	case f.Type == manifest.TypeBool:
		elem["type"] = "boolean"
	case f.Type == manifest.TypeString:
		elem["type"] = "string"
		if len(f.Categories) > 0 {
			elem["enum"] = f.Categories
		}
	case f.Type.IsInteger():
		elem["type"] = "integer"
		elem["format"] = string(f.Type)
	default:
		elem["type"] = "number"
		elem["format"] = string(f.Type)
	}
	if f.Min != nil {
		elem["minimum"] = *f.Min
	}
	if f.Max != nil {
		elem["maximum"] = *f.Max
	}
	if f.Description != "" && len(f.Shape) == 0 {
		elem["description"] = f.Description
	}
	if f.Nullable {
		elem["x-nullable"] = true
	}
	if len(f.Shape) == 0 {
		return elem
	}
	n := 1
	for _, d := range f.Shape {
		n *= d
	}
	arr := map[string]any{"type": "array", "items": elem, "description": f.Description}
	if n > 0 {
		arr["minItems"], arr["maxItems"] = n, n
	}
	return arr
}
