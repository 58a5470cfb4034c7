package httpapi

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

var paramRE = regexp.MustCompile(`:([A-Za-z]+)`)

// openAPIPath turns an echo path into an OpenAPI one (/a/:b -> /a/{b}).
func openAPIPath(p string) string { return paramRE.ReplaceAllString(p, "{$1}") }

// openAPI builds the OpenAPI 3 document from the route table, so it cannot
// drift from the routes echo serves.
func (a *API) openAPI() map[string]any {
	paths := map[string]map[string]any{}
	for _, r := range a.routes {
		p := openAPIPath(r.path)
		if paths[p] == nil {
			paths[p] = map[string]any{}
		}
		op := map[string]any{
			"summary":     r.summary,
			"operationId": strings.ToLower(r.method) + strings.NewReplacer("/", "_", "{", "", "}", "").Replace(strings.TrimPrefix(p, "/api/v1")),
			"responses": map[string]any{
				strconv.Itoa(r.ok): map[string]any{"description": http.StatusText(r.ok)},
				"default": map[string]any{"description": "error",
					"content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Error"}}}},
			},
		}
		var params []map[string]any
		for _, m := range paramRE.FindAllStringSubmatch(r.path, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		if strings.HasPrefix(r.summary, "List") {
			for _, q := range []string{"limit", "pageToken"} {
				params = append(params, map[string]any{"name": q, "in": "query", "schema": map[string]any{"type": "string"}})
			}
		}
		if params != nil {
			op["parameters"] = params
		}
		switch r.body {
		case "json":
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}}
		case "bytes":
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/octet-stream": map[string]any{"schema": map[string]any{"type": "string", "format": "binary"}}}}
		}
		if !public(r.path) {
			op["security"] = []map[string]any{{"bearer": []string{}}}
		}
		paths[p][strings.ToLower(r.method)] = op
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info":    map[string]any{"title": "mlfleet cloud API", "version": "v1"},
		"paths":   paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}},
			"schemas": map[string]any{"Error": map[string]any{"type": "object", "properties": map[string]any{
				"error": map[string]any{"type": "object", "properties": map[string]any{
					"code": map[string]any{"type": "string"}, "message": map[string]any{"type": "string"}, "field": map[string]any{"type": "string"}}}}}},
		},
	}
}
