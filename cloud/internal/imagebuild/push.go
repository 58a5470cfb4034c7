package imagebuild

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// retryBackoff is how go-containerregistry retries transient failures
// (network errors, 5xx). Tests shorten it.
var retryBackoff = remote.Backoff{Duration: 1e9, Factor: 3, Jitter: 0.1, Steps: 3}

// Build builds the image index described by spec and pushes it: blobs the
// registry already has are skipped, the index is written by digest, and the
// tag (if any) is written last, so a failed push leaves no tag. Cancelling
// ctx stops the build and the upload.
//
// Errors are classified with errclass: a bad spec is InvalidArgument naming
// the field; an unreachable registry Unavailable; rejected credentials
// Unauthenticated; a refused push PermissionDenied.
func Build(ctx context.Context, spec Spec) (*Result, error) {
	ct := &countingTransport{base: remote.DefaultTransport}
	if spec.Transport != nil {
		ct.base = spec.Transport
	}
	spec.transport = ct
	b, err := build(ctx, &spec)
	if err != nil {
		return nil, err
	}
	logf := spec.logf()

	var emitMu sync.Mutex
	emit := func(e Event) {
		if spec.Progress == nil {
			return
		}
		emitMu.Lock()
		defer emitMu.Unlock()
		spec.Progress(e)
	}
	for _, l := range b.own {
		l.setProgress(func(kind string, d v1.Hash, done, total int64) {
			emit(Event{Kind: kind, Digest: d.String(), Done: done, Total: total})
		})
	}
	ct.onExisting = func(digest string) {
		h, err := v1.NewHash(digest)
		if err != nil {
			return
		}
		if bi, ok := b.blobKinds[h]; ok {
			emit(Event{Kind: bi.kind, Digest: digest, Done: 0, Total: bi.size, Skipped: true})
		}
	}
	ct.n.Store(0) // count the push only, not reading the base

	d, err := b.index.Digest()
	if err != nil {
		return nil, fmt.Errorf("digest of image index: %w", err)
	}
	ref := b.repo.Digest(d.String())
	opts := spec.remoteOptions(ctx)
	logf("pushing %s", ref)
	if err := remote.WriteIndex(ref, b.index, opts...); err != nil {
		return nil, classify(ctx, err, "push image index to %s", b.repo)
	}
	if spec.Tag != "" {
		tag := b.repo.Tag(spec.Tag)
		if cur, err := remote.Head(tag, opts...); err == nil && cur.Digest == d {
			logf("tag %s already points at %s", tag, d)
		} else if err := remote.Tag(tag, b.index, opts...); err != nil {
			return nil, classify(ctx, err, "tag %s as %s", ref, tag)
		} else {
			logf("tagged %s", tag)
		}
	}
	res := &Result{
		Digest:        d.String(),
		Reference:     ref.String(),
		Platforms:     b.platforms,
		Layers:        b.layers,
		BytesUploaded: ct.n.Load(),
	}
	logf("pushed %s: %d bytes uploaded", ref, res.BytesUploaded)
	return res, nil
}

// remoteOptions are the go-containerregistry options for talking to the
// target and base registries.
func (s *Spec) remoteOptions(ctx context.Context) []remote.Option {
	var rt http.RoundTripper = remote.DefaultTransport
	if s.transport != nil {
		rt = s.transport
	}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuth(s.Auth),
		remote.WithTransport(rt),
		remote.WithRetryBackoff(retryBackoff),
	}
}

// nameOptions are the reference parsing options of s.
func (s *Spec) nameOptions() []name.Option {
	if s.Insecure {
		return []name.Option{name.Insecure}
	}
	return nil
}

// LocalTransport returns a transport that reaches host (a registry's
// advertised host[:port]) at addr instead: a cloud pushes to its own
// registry without leaving the machine, whatever name devices know it by.
func LocalTransport(host, addr string) http.RoundTripper {
	tr := remote.DefaultTransport.(*http.Transport).Clone()
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, a string) (net.Conn, error) {
		if a == host || a == host+":80" || a == host+":443" {
			a = addr
		}
		return dial(ctx, network, a)
	}
	return tr
}

// countingTransport counts request body bytes and reports blobs the
// registry says it already has.
type countingTransport struct {
	base       http.RoundTripper
	n          atomic.Int64
	onExisting func(digest string) // set before the push starts
}

func (t *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		r2 := req.Clone(req.Context())
		r2.Body = &countingBody{rc: req.Body, n: &t.n}
		req = r2
	}
	resp, err := t.base.RoundTrip(req)
	if err == nil && req.Method == http.MethodHead && resp.StatusCode == http.StatusOK && t.onExisting != nil {
		if i := strings.LastIndex(req.URL.Path, "/blobs/"); i >= 0 {
			t.onExisting(req.URL.Path[i+len("/blobs/"):])
		}
	}
	return resp, err
}

type countingBody struct {
	rc io.ReadCloser
	n  *atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingBody) Close() error { return c.rc.Close() }

// classify wraps a registry error with context and, unless it is classified
// already or the build was cancelled, an errclass class.
func classify(ctx context.Context, err error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if errclass.ClassOf(err) != errclass.Unknown || (ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled)) {
		return fmt.Errorf("%s: %w", msg, err)
	}
	return errclass.Wrap(registryClass(err), err, "%s", msg)
}

// registryClass maps a go-containerregistry or network error to a class.
func registryClass(err error) errclass.Class {
	var te *transport.Error
	if errors.As(err, &te) {
		for _, d := range te.Errors {
			switch d.Code {
			case transport.UnauthorizedErrorCode:
				return errclass.Unauthenticated
			case transport.DeniedErrorCode:
				return errclass.PermissionDenied
			case transport.NameUnknownErrorCode, transport.ManifestUnknownErrorCode, transport.BlobUnknownErrorCode:
				return errclass.NotFound
			case transport.TooManyRequestsErrorCode, transport.UnavailableErrorCode:
				return errclass.Unavailable
			}
		}
		switch sc := te.StatusCode; {
		case sc == http.StatusUnauthorized:
			return errclass.Unauthenticated
		case sc == http.StatusForbidden:
			return errclass.PermissionDenied
		case sc == http.StatusNotFound:
			return errclass.NotFound
		case sc == http.StatusRequestTimeout || sc == http.StatusTooManyRequests || sc >= 500:
			return errclass.Unavailable
		}
		return errclass.Unknown
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return errclass.Unavailable
	}
	var ne net.Error
	var oe *net.OpError
	var de *net.DNSError
	var ue *url.Error
	if errors.As(err, &oe) || errors.As(err, &de) || errors.As(err, &ne) || errors.As(err, &ue) {
		return errclass.Unavailable
	}
	return errclass.Unknown
}
