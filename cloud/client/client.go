// Package client is a typed Go client for the mlfleet cloud REST API
// (docs/api.md). It uses only the standard library and the wire types of
// package cloud (and the shared/twin documents they carry).
//
// Every method that talks to the server takes a context first. JSON calls get
// a default timeout (see WithTimeout) unless the context already ends sooner;
// model uploads and downloads get none, so that only their context bounds them.
// Errors answered by the server come back as *Error, which errclass.ClassOf
// and errclass.FieldOf understand.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// DefaultTimeout bounds each JSON call unless WithTimeout says otherwise.
const DefaultTimeout = 30 * time.Second

// maxJSONBody caps how much of a JSON answer (or error body) is read.
const maxJSONBody = 64 << 20

// Client calls one mlfleet cloud with one token. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	token     string
	hc        *http.Client
	timeout   time.Duration
	userAgent string
}

// Option changes a Client made by New.
type Option func(*Client)

// WithHTTPClient makes the client send requests through hc. Its Timeout
// should be zero: a timeout there would also cut streamed uploads/downloads.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithTimeout sets the timeout of each JSON call (not of streaming calls).
// Zero or less means no timeout beyond the caller's context.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithUserAgent sets the User-Agent header sent with every request.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// New returns a client of the cloud at baseURL (e.g. "http://127.0.0.1:8480")
// that authenticates with token (may be empty for Health and OpenAPI).
func New(baseURL, token string, opts ...Option) (*Client, error) {
	if baseURL == "" {
		return nil, errclass.Invalid("cloud", "cloud URL is empty")
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, errclass.Wrap(errclass.InvalidArgument, err, "cloud URL %q", baseURL)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, errclass.Invalid("cloud", "cloud URL %q: scheme must be http or https", baseURL)
	}
	if u.Host == "" {
		return nil, errclass.Invalid("cloud", "cloud URL %q has no host", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errclass.Invalid("cloud", "cloud URL %q must not have a query or fragment", baseURL)
	}
	if strings.ContainsAny(token, "\r\n") {
		return nil, errclass.Invalid("token", "token contains a line break")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	c := &Client{
		base:      u,
		token:     token,
		hc:        &http.Client{Transport: http.DefaultTransport},
		timeout:   DefaultTimeout,
		userAgent: "mlfleet-client",
	}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		c.hc = &http.Client{Transport: http.DefaultTransport}
	}
	return c, nil
}

// BaseURL returns the cloud URL the client talks to.
func (c *Client) BaseURL() string { return c.base.String() }

// Error is an error answered by the API. It unwraps to an *errclass.Error of
// the class its code names, so errclass.ClassOf(err) and errclass.FieldOf(err)
// work on it and on anything wrapping it.
type Error struct {
	Status  int    // HTTP status code
	Code    string // API error code, e.g. "not_found"
	Message string
	Field   string // input field at fault, if any
}

func (e *Error) Error() string {
	if e.Message != "" {
		return e.Message
	}
	if e.Code != "" {
		return fmt.Sprintf("%s (HTTP %d)", e.Code, e.Status)
	}
	return fmt.Sprintf("HTTP %d %s", e.Status, http.StatusText(e.Status))
}

// Class returns the error's class.
func (e *Error) Class() errclass.Class {
	switch c := errclass.Class(e.Code); c {
	case errclass.NotFound, errclass.InvalidArgument, errclass.Conflict, errclass.Unauthenticated,
		errclass.PermissionDenied, errclass.FailedPrecondition, errclass.Unavailable, errclass.TooLarge,
		errclass.Unknown:
		return c
	}
	return classOfStatus(e.Status)
}

// Unwrap exposes the classification to errors.As.
func (e *Error) Unwrap() error {
	return &errclass.Error{Class: e.Class(), Field: e.Field, Msg: e.Error()}
}

func classOfStatus(status int) errclass.Class {
	switch status {
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return errclass.InvalidArgument
	case http.StatusUnauthorized:
		return errclass.Unauthenticated
	case http.StatusForbidden:
		return errclass.PermissionDenied
	case http.StatusNotFound:
		return errclass.NotFound
	case http.StatusConflict:
		return errclass.Conflict
	case http.StatusRequestEntityTooLarge:
		return errclass.TooLarge
	case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout, http.StatusTooManyRequests:
		return errclass.Unavailable
	}
	return errclass.Unknown
}

// decodeError turns a non-2xx answer body into an *Error. It never fails:
// a body that is not the API's error document becomes the message.
func decodeError(status int, body []byte) *Error {
	e := &Error{Status: status}
	var eb struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Field   string `json:"field"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &eb); err == nil && eb.Error != nil {
		e.Code, e.Message, e.Field = eb.Error.Code, eb.Error.Message, eb.Error.Field
	} else {
		msg := strings.TrimSpace(string(body))
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
		if msg == "" {
			msg = http.StatusText(status)
		}
		e.Message = fmt.Sprintf("HTTP %d: %s", status, msg)
	}
	if e.Code == "" {
		e.Code = string(classOfStatus(status))
	}
	return e
}

// endpoint builds the URL of path (already escaped segment by segment) with query q.
func (c *Client) endpoint(path string, q url.Values) string {
	u := *c.base
	u.RawPath = c.base.Path + path
	p, err := url.PathUnescape(u.RawPath)
	if err != nil {
		p = u.RawPath
	}
	u.Path = p
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	} else {
		u.RawQuery = ""
	}
	return u.String()
}

// pathOf joins escaped segments into "/seg1/seg2...".
func pathOf(segs ...string) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

func (c *Client) newRequest(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.endpoint(path, q), body)
	if err != nil {
		return nil, errclass.Wrap(errclass.InvalidArgument, err, "build %s %s", method, path)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	return req, nil
}

// do sends req and returns the response if its status is 2xx; otherwise it
// reads and closes the body and returns an *Error.
func (c *Client) do(req *http.Request) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			if errors.Is(ctxErr, context.DeadlineExceeded) {
				return nil, errclass.Wrap(errclass.Unavailable, err, "%s %s: timed out", req.Method, req.URL.Path)
			}
			return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
		}
		return nil, errclass.Wrap(errclass.Unavailable, err, "%s %s", req.Method, req.URL.Path)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return nil, decodeError(resp.StatusCode, body)
}

// doJSON sends in (if non-nil) as JSON and decodes the answer into out (if non-nil).
func (c *Client) doJSON(ctx context.Context, method, path string, q url.Values, in, out any) error {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return errclass.Wrap(errclass.InvalidArgument, err, "encode %s %s body", method, path)
		}
		body = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil || resp.StatusCode == http.StatusNoContent {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxJSONBody))
	if err := dec.Decode(out); err != nil {
		return errclass.Wrap(errclass.Unknown, err, "decode answer of %s %s", method, path)
	}
	return nil
}

func decodeJSON(r io.Reader, out any) error {
	if err := json.NewDecoder(io.LimitReader(r, maxJSONBody)).Decode(out); err != nil {
		return errclass.Wrap(errclass.Unknown, err, "decode answer")
	}
	return nil
}
