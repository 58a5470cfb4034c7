package registry

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// errorBody is one entry of an OCI distribution error response.
type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// errorResponse is the OCI distribution error response: {"errors":[...]}.
type errorResponse struct {
	Errors []errorBody `json:"errors"`
}

// marshalError encodes the OCI error document for e.
func marshalError(e errorBody) []byte {
	b, err := json.Marshal(errorResponse{Errors: []errorBody{e}})
	if err != nil { // Detail is always a plain map or nil.
		b = []byte(`{"errors":[{"code":"UNKNOWN","message":"unencodable error"}]}`)
	}
	return append(b, '\n')
}

// writeError answers with status and an OCI error document (no body for HEAD).
func writeError(w http.ResponseWriter, r *http.Request, status int, e errorBody) {
	b := marshalError(e)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}
