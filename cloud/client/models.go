package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/manifest"
)

// Progress is told how many bytes of total have been moved so far. total is
// -1 when unknown. It is called from the goroutine doing the transfer.
type Progress func(done, total int64)

// ModelUpload describes a model file to register.
type ModelUpload struct {
	// Body is read once, streamed as the request body, never buffered whole.
	Body io.Reader
	// Size is Body's exact length in bytes.
	Size        int64
	Format      string // "onnx", "file", or "" to let the server detect it
	Description string
	Tags        map[string]string
	RunID       string
	Progress    Progress // optional
}

func modelsPath(sub, acct string) string { return acctPath(sub, acct) + "/models" }
func versionPath(sub, acct, name string, v int) string {
	return acctPath(sub, acct) + pathOf("models", name, "versions", strconv.Itoa(v))
}

// countingReader reports progress as it is read.
type countingReader struct {
	r        io.Reader
	n, total int64
	progress Progress
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.n += int64(n)
		if c.progress != nil {
			c.progress(c.n, c.total)
		}
	}
	return n, err
}

// RegisterModel uploads a new version of model name, streaming in.Body. It has
// no timeout of its own: ctx bounds it.
func (c *Client) RegisterModel(ctx context.Context, sub, acct, name string, in ModelUpload) (*cloud.Model, error) {
	if in.Body == nil {
		return nil, errclass.Invalid("body", "model upload has no body")
	}
	if in.Size < 0 {
		return nil, errclass.Invalid("size", "model size %d is negative", in.Size)
	}
	q := url.Values{}
	if in.Format != "" {
		q.Set("format", in.Format)
	}
	if in.Description != "" {
		q.Set("description", in.Description)
	}
	if in.RunID != "" {
		q.Set("runId", in.RunID)
	}
	keys := make([]string, 0, len(in.Tags))
	for k := range in.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		q.Add("tag", k+"="+in.Tags[k])
	}
	cr := &countingReader{r: io.LimitReader(in.Body, in.Size), total: in.Size, progress: in.Progress}
	var body io.Reader = cr
	if in.Size == 0 {
		body = http.NoBody
	}
	path := modelsPath(sub, acct) + pathOf(name, "versions")
	req, err := c.newRequest(ctx, "POST", path, q, body)
	if err != nil {
		return nil, err
	}
	if in.Size == 0 {
		req.Body = http.NoBody
	} else {
		// Wrap so net/http cannot see through to a seekable or sized reader:
		// it streams whatever we give it with this exact Content-Length.
		req.Body = io.NopCloser(cr)
	}
	req.ContentLength = in.Size
	req.GetBody = nil
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Accept", "application/json")
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out cloud.Model
	if err := decodeJSON(resp.Body, &out); err != nil {
		return nil, fmt.Errorf("register model %q: %w", name, err)
	}
	return &out, nil
}

// ListModels returns one page of an account's models (every version); name,
// if not empty, keeps only that model's versions.
func (c *Client) ListModels(ctx context.Context, sub, acct, name string, opts ListOptions) (*cloud.Page[cloud.Model], error) {
	q := opts.query()
	if name != "" {
		q.Set("name", name)
	}
	var out cloud.Page[cloud.Model]
	if err := c.doJSON(ctx, "GET", modelsPath(sub, acct), q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAllModels returns every model version of an account (of model name if not empty).
func (c *Client) ListAllModels(ctx context.Context, sub, acct, name string) ([]cloud.Model, error) {
	return ListAll(ctx, func(ctx context.Context, o ListOptions) (*cloud.Page[cloud.Model], error) {
		return c.ListModels(ctx, sub, acct, name, o)
	})
}

// ListModelVersions returns one page of model name's versions.
func (c *Client) ListModelVersions(ctx context.Context, sub, acct, name string, opts ListOptions) (*cloud.Page[cloud.Model], error) {
	var out cloud.Page[cloud.Model]
	if err := c.doJSON(ctx, "GET", modelsPath(sub, acct)+pathOf(name, "versions"), opts.query(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAllModelVersions returns every version of model name.
func (c *Client) ListAllModelVersions(ctx context.Context, sub, acct, name string) ([]cloud.Model, error) {
	return ListAll(ctx, func(ctx context.Context, o ListOptions) (*cloud.Page[cloud.Model], error) {
		return c.ListModelVersions(ctx, sub, acct, name, o)
	})
}

// GetModel returns one model version.
func (c *Client) GetModel(ctx context.Context, sub, acct, name string, version int) (*cloud.Model, error) {
	var out cloud.Model
	if err := c.doJSON(ctx, "GET", versionPath(sub, acct, name, version), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ModelUpdate is the body of UpdateModel: nil fields are left unchanged; a
// non-nil Tags replaces all tags.
type ModelUpdate struct {
	Description *string            `json:"description,omitempty"`
	Tags        *map[string]string `json:"tags,omitempty"`
}

// UpdateModel changes a model version's description or tags.
func (c *Client) UpdateModel(ctx context.Context, sub, acct, name string, version int, in ModelUpdate) (*cloud.Model, error) {
	var out cloud.Model
	if err := c.doJSON(ctx, "PATCH", versionPath(sub, acct, name, version), nil, in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteModel deletes a model version (refused while a manifest uses it).
func (c *Client) DeleteModel(ctx context.Context, sub, acct, name string, version int) error {
	return c.doJSON(ctx, "DELETE", versionPath(sub, acct, name, version), nil, nil, nil)
}

// Download tells what DownloadModel wrote.
type Download struct {
	Size   int64
	Digest string // "sha256:<hex>" of the bytes written
}

// DownloadModel streams a model version's file into w, checking it against
// the digest the server announces (ETag). It has no timeout of its own.
func (c *Client) DownloadModel(ctx context.Context, sub, acct, name string, version int, w io.Writer, progress Progress) (*Download, error) {
	req, err := c.newRequest(ctx, "GET", versionPath(sub, acct, name, version)+"/content", nil, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	h := sha256.New()
	cr := &countingReader{r: resp.Body, total: resp.ContentLength, progress: progress}
	n, err := io.Copy(io.MultiWriter(w, h), cr)
	if err != nil {
		return nil, errclass.Wrap(errclass.Unavailable, err, "download model %s:%d after %d bytes", name, version, n)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return nil, errclass.New(errclass.Unavailable, "", "download model %s:%d: got %d of %d bytes", name, version, n, resp.ContentLength)
	}
	got := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if want := strings.Trim(resp.Header.Get("ETag"), `"`); strings.HasPrefix(want, "sha256:") && want != got {
		return nil, errclass.New(errclass.Unknown, "digest", "download model %s:%d: digest %s, server announced %s", name, version, got, want)
	}
	return &Download{Size: n, Digest: got}, nil
}

// ---- manifests ----

func manifestsPath(sub, acct string) string { return acctPath(sub, acct) + "/manifests" }

// CreateManifest stores m as the next version of its name.
func (c *Client) CreateManifest(ctx context.Context, sub, acct string, m *manifest.Manifest) (*cloud.Manifest, error) {
	if m == nil {
		return nil, errclass.Invalid("manifest", "manifest is nil")
	}
	var out cloud.Manifest
	if err := c.doJSON(ctx, "POST", manifestsPath(sub, acct), nil, m, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListManifests returns one page of an account's manifests (every version);
// name, if not empty, keeps only that manifest's versions.
func (c *Client) ListManifests(ctx context.Context, sub, acct, name string, opts ListOptions) (*cloud.Page[cloud.Manifest], error) {
	q := opts.query()
	if name != "" {
		q.Set("name", name)
	}
	var out cloud.Page[cloud.Manifest]
	if err := c.doJSON(ctx, "GET", manifestsPath(sub, acct), q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAllManifests returns every manifest version of an account (of name if not empty).
func (c *Client) ListAllManifests(ctx context.Context, sub, acct, name string) ([]cloud.Manifest, error) {
	return ListAll(ctx, func(ctx context.Context, o ListOptions) (*cloud.Page[cloud.Manifest], error) {
		return c.ListManifests(ctx, sub, acct, name, o)
	})
}

// ListManifestVersions returns one page of manifest name's versions.
func (c *Client) ListManifestVersions(ctx context.Context, sub, acct, name string, opts ListOptions) (*cloud.Page[cloud.Manifest], error) {
	var out cloud.Page[cloud.Manifest]
	if err := c.doJSON(ctx, "GET", manifestsPath(sub, acct)+pathOf(name, "versions"), opts.query(), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ListAllManifestVersions returns every version of manifest name.
func (c *Client) ListAllManifestVersions(ctx context.Context, sub, acct, name string) ([]cloud.Manifest, error) {
	return ListAll(ctx, func(ctx context.Context, o ListOptions) (*cloud.Page[cloud.Manifest], error) {
		return c.ListManifestVersions(ctx, sub, acct, name, o)
	})
}

func manifestVersionPath(sub, acct, name string, v int) string {
	return manifestsPath(sub, acct) + pathOf(name, "versions", strconv.Itoa(v))
}

// GetManifest returns one manifest version.
func (c *Client) GetManifest(ctx context.Context, sub, acct, name string, version int) (*cloud.Manifest, error) {
	var out cloud.Manifest
	if err := c.doJSON(ctx, "GET", manifestVersionPath(sub, acct, name, version), nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteManifest deletes one manifest version.
func (c *Client) DeleteManifest(ctx context.Context, sub, acct, name string, version int) error {
	return c.doJSON(ctx, "DELETE", manifestVersionPath(sub, acct, name, version), nil, nil, nil)
}
