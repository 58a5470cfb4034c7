// Package httpapi serves the cloud's REST API (/api/v1) on echo v4. It is the
// only package of the cloud that knows echo: it decodes requests strictly,
// calls cloud.Service, and maps classified errors to HTTP statuses in one
// place (errorHandler).
package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/shared/errclass"
)

// MaxJSONBody bounds a JSON request body (manifests with sample data included).
const MaxJSONBody = 8 << 20

// API is the REST API's echo instance and its route table.
type API struct {
	echo   *echo.Echo
	svc    *cloud.Service
	routes []route
	log    *slog.Logger
}

// Options tune the API.
type Options struct {
	Logger *slog.Logger
	// Extra handlers mounted beside the API (e.g. the OCI registry at /v2/),
	// by path prefix; they do their own authentication.
	Mounts map[string]http.Handler
}

// New builds the API over svc. It starts nothing.
func New(svc *cloud.Service, o Options) *API {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	a := &API{echo: e, svc: svc, log: o.Logger}
	e.HTTPErrorHandler = a.errorHandler
	e.Use(a.authenticate)
	a.register()
	for prefix, h := range o.Mounts {
		e.Any(prefix+"*", echo.WrapHandler(h))
	}
	return a
}

// ServeHTTP makes the API an http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.echo.ServeHTTP(w, r) }

// Status maps an error class to its HTTP status. It is the one place where
// that mapping lives.
func Status(c errclass.Class) int {
	switch c {
	case errclass.InvalidArgument:
		return http.StatusBadRequest
	case errclass.Unauthenticated:
		return http.StatusUnauthorized
	case errclass.PermissionDenied:
		return http.StatusForbidden
	case errclass.NotFound:
		return http.StatusNotFound
	case errclass.Conflict, errclass.FailedPrecondition:
		return http.StatusConflict
	case errclass.TooLarge:
		return http.StatusRequestEntityTooLarge
	case errclass.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func (a *API) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	body := cloud.APIError{Code: string(errclass.ClassOf(err)), Message: err.Error(), Field: errclass.FieldOf(err)}
	status := Status(errclass.ClassOf(err))
	var he *echo.HTTPError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		status, body.Code = http.StatusRequestEntityTooLarge, string(errclass.TooLarge)
		body.Message = fmt.Sprintf("request body is larger than the limit of %d bytes", mbe.Limit)
	case errors.As(err, &he):
		status = he.Code
		body.Message = fmt.Sprint(he.Message)
		switch status {
		case http.StatusNotFound:
			body.Code = string(errclass.NotFound)
		case http.StatusMethodNotAllowed:
			body.Code = string(errclass.InvalidArgument)
		default:
			body.Code = strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_"))
		}
	}
	if status == http.StatusInternalServerError {
		a.log.Error("internal error", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
		body.Message = "internal error; see the cloud's log"
	}
	if err := c.JSON(status, cloud.ErrorBody{Error: body}); err != nil {
		a.log.Warn("write error answer", "err", err)
	}
}

// public routes need no token.
func public(path string) bool {
	return path == "/healthz" || path == "/api/v1/openapi.json" || path == "/api/v1/enroll" || path == "/v2" || strings.HasPrefix(path, "/v2/")
}

func (a *API) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if public(req.URL.Path) {
			return next(c)
		}
		h := req.Header.Get("Authorization")
		secret, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || secret == "" {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="mlfleet"`)
			return errclass.New(errclass.Unauthenticated, "", "missing bearer token (Authorization: Bearer <token>)")
		}
		p, err := a.svc.Authenticate(req.Context(), secret)
		if err != nil {
			c.Response().Header().Set("WWW-Authenticate", `Bearer realm="mlfleet", error="invalid_token"`)
			return err
		}
		c.SetRequest(req.WithContext(cloud.WithPrincipal(req.Context(), p)))
		return next(c)
	}
}

// decode reads a JSON body strictly into v: unknown fields, trailing data and
// oversize bodies are refused with the field named.
func decode(c echo.Context, v any) error {
	body := http.MaxBytesReader(c.Response(), c.Request().Body, MaxJSONBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errclass.Invalid("", "request body has data after the JSON value")
	}
	return nil
}

// readBody reads a raw JSON body (bounded) for parsers of their own.
func readBody(c echo.Context) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, MaxJSONBody))
	if err != nil {
		return nil, jsonError(err)
	}
	return b, nil
}

func jsonError(err error) error {
	var mbe *http.MaxBytesError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return errclass.New(errclass.TooLarge, "", "request body is larger than the limit of %d bytes", mbe.Limit)
	case errors.Is(err, io.EOF):
		return errclass.Invalid("", "request body is empty; a JSON object is required")
	case errors.As(err, &se):
		return errclass.Invalid("", "malformed JSON at byte %d: %v", se.Offset, err)
	case errors.As(err, &te):
		return errclass.Invalid(te.Field, "field %q: %s is not allowed here (want %s)", te.Field, te.Value, te.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return errclass.Invalid(f, "unknown field %q", f)
	}
	return errclass.Wrap(errclass.InvalidArgument, err, "malformed JSON")
}

func listOptions(c echo.Context) (cloud.ListOptions, error) {
	o := cloud.ListOptions{PageToken: c.QueryParam("pageToken")}
	if l := c.QueryParam("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil {
			return o, errclass.Invalid("limit", "limit %q is not a number", l)
		}
		if n == 0 {
			return o, errclass.Invalid("limit", "limit 0 is not between 1 and %d", cloud.MaxPageSize)
		}
		o.Limit = n
	}
	return o, nil
}

func boolQuery(c echo.Context, name string) (bool, error) {
	v := c.QueryParam(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errclass.Invalid(name, "%s=%q is not true or false", name, v)
	}
	return b, nil
}

func version(c echo.Context) (int, error) {
	v := c.Param("version")
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, errclass.Invalid("version", "version %q is not a positive number", v)
	}
	return n, nil
}
