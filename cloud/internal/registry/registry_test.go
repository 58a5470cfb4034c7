package registry

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// grant is what one test token may do.
type grant struct {
	admin    bool
	prefix   string // repositories the token sees
	readOnly bool
}

// testAuthorizer stands in for the cloud: tokens map to grants.
type testAuthorizer map[string]grant

func (a testAuthorizer) AuthorizeRegistry(_ context.Context, r *http.Request, repo string, push bool) error {
	tok := Token(r)
	if tok == "" {
		return errclass.New(errclass.Unauthenticated, "Authorization", "authentication required")
	}
	g, ok := a[tok]
	if !ok {
		return errclass.New(errclass.Unauthenticated, "Authorization", "unknown or expired token")
	}
	switch {
	case g.admin:
		return nil
	case repo == "":
		return errclass.New(errclass.PermissionDenied, "", "registry-wide access needs the admin role")
	case !strings.HasPrefix(repo, g.prefix):
		return errclass.NotFoundf("repository %q not found", repo)
	case push && g.readOnly:
		return errclass.New(errclass.PermissionDenied, "", "token may not push to repository %q", repo)
	}
	return nil
}

const (
	tokAdmin = "admin-token"
	tokA     = "tenant-a-rw"
	tokARO   = "tenant-a-ro"
	tokB     = "tenant-b-rw"
)

var testAuthz = testAuthorizer{
	tokAdmin: {admin: true},
	tokA:     {prefix: "suba/acct/"},
	tokARO:   {prefix: "suba/acct/", readOnly: true},
	tokB:     {prefix: "subb/acct/"},
}

// quietLogger discards everything (the registry logs every request).
func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startRegistry serves a fresh registry over a temp dir.
func startRegistry(t *testing.T) (*Registry, *httptest.Server) {
	t.Helper()
	reg, err := New(context.Background(), Config{RootDir: filepath.Join(t.TempDir(), "registry"), Authorizer: testAuthz, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(reg)
	t.Cleanup(func() {
		srv.Close()
		if err := reg.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return reg, srv
}

func hostOf(srv *httptest.Server) string { return strings.TrimPrefix(srv.URL, "http://") }

func basic(tok string) remote.Option {
	return remote.WithAuth(&authn.Basic{Username: "anyone", Password: tok})
}

func statusOf(err error) int {
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode
	}
	return 0
}

func codeOf(err error) string {
	var te *transport.Error
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return string(te.Errors[0].Code)
	}
	return ""
}

func TestPushPull(t *testing.T) {
	_, srv := startRegistry(t)
	ref, err := name.ParseReference(hostOf(srv)+"/suba/acct/model:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, basic(tokA)); err != nil {
		t.Fatalf("push with a read-write token: %v", err)
	}

	tests := []struct {
		name       string
		tok        string
		push       bool
		wantStatus int // 0: success
		wantCode   string
	}{
		{"pull rw", tokA, false, 0, ""},
		{"pull read-only", tokARO, false, 0, ""},
		{"pull admin", tokAdmin, false, 0, ""},
		{"push again rw", tokA, true, 0, ""},
		{"pull bad token", "nope", false, http.StatusUnauthorized, "UNAUTHORIZED"},
		{"push bad token", "nope", true, http.StatusUnauthorized, "UNAUTHORIZED"},
		{"push read-only", tokARO, true, http.StatusForbidden, "DENIED"},
		{"pull other tenant", tokB, false, http.StatusNotFound, "NAME_UNKNOWN"},
		{"push other tenant", tokB, true, http.StatusNotFound, "NAME_UNKNOWN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.push {
				// A new image, so that the push really uploads blobs.
				img2, err := random.Image(512, 1)
				if err != nil {
					t.Fatal(err)
				}
				ref2, _ := name.ParseReference(hostOf(srv)+"/suba/acct/model:"+strings.ReplaceAll(tc.name, " ", "-"), name.Insecure)
				err = remote.Write(ref2, img2, basic(tc.tok))
				checkErr(t, err, tc.wantStatus, tc.wantCode)
				return
			}
			got, err := remote.Image(ref, basic(tc.tok))
			if err == nil {
				var d interface{ String() string }
				d, err = got.Digest()
				if err == nil && d.String() != want.String() {
					t.Fatalf("pulled digest %s, pushed %s", d, want)
				}
				if err == nil {
					// Pull every layer too.
					layers, lerr := got.Layers()
					if lerr != nil {
						t.Fatal(lerr)
					}
					for _, l := range layers {
						rc, lerr := l.Compressed()
						if lerr != nil {
							t.Fatal(lerr)
						}
						_, lerr = io.Copy(io.Discard, rc)
						rc.Close()
						if lerr != nil {
							t.Fatal(lerr)
						}
					}
				}
			}
			checkErr(t, err, tc.wantStatus, tc.wantCode)
		})
	}
}

func checkErr(t *testing.T, err error, wantStatus int, wantCode string) {
	t.Helper()
	if wantStatus == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("succeeded; want status %d", wantStatus)
	}
	if got := statusOf(err); got != wantStatus {
		t.Fatalf("status %d, want %d (err %v)", got, wantStatus, err)
	}
	// HEAD responses (ggcr checks manifests with HEAD first) have no body.
	if got := codeOf(err); got != wantCode && got != "" {
		t.Fatalf("code %q, want %q (err %v)", got, wantCode, err)
	}
}

// do sends one raw request.
func do(t *testing.T, method, url, auth string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func basicHeader(tok string) string {
	req, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	req.SetBasicAuth("whoever", tok)
	return req.Header.Get("Authorization")
}

// TestWire checks status, headers and the exact error bodies (golden files).
func TestWire(t *testing.T) {
	_, srv := startRegistry(t)
	// Something to find: push an image as tenant A.
	ref, _ := name.ParseReference(hostOf(srv)+"/suba/acct/model:v1", name.Insecure)
	img, _ := random.Image(256, 1)
	if err := remote.Write(ref, img, basic(tokA)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		method     string
		path       string
		auth       string
		wantStatus int
		golden     string // file under testdata/, "" to skip the body check
		wantInBody string
	}{
		{"ping no auth", "GET", "/v2/", "", 401, "ping_noauth.golden", ""},
		{"ping bad token", "GET", "/v2/", "Bearer nope", 401, "ping_badtoken.golden", ""},
		{"ping bearer", "GET", "/v2/", "Bearer " + tokA, 200, "", "{}"},
		{"ping basic", "GET", "/v2/", basicHeader(tokARO), 200, "", "{}"},
		{"ping no slash", "GET", "/v2", basicHeader(tokARO), 301, "", ""},
		{"catalog admin", "GET", "/v2/_catalog", "Bearer " + tokAdmin, 200, "", `"suba/acct/model"`},
		{"catalog tenant", "GET", "/v2/_catalog", "Bearer " + tokA, 403, "catalog_denied.golden", ""},
		{"catalog no auth", "GET", "/v2/_catalog", "", 401, "", "UNAUTHORIZED"},
		{"tags own", "GET", "/v2/suba/acct/model/tags/list", "Bearer " + tokARO, 200, "", `"v1"`},
		{"tags other tenant", "GET", "/v2/suba/acct/model/tags/list", "Bearer " + tokB, 404, "name_unknown.golden", ""},
		{"delete read-only", "DELETE", "/v2/suba/acct/model/manifests/v1", "Bearer " + tokARO, 403, "push_denied.golden", ""},
		{"upload read-only", "POST", "/v2/suba/acct/model/blobs/uploads/", "Bearer " + tokARO, 403, "", "DENIED"},
		{"unknown endpoint", "GET", "/v2/suba/acct/model/nothing/here", "Bearer " + tokA, 404, "unknown_endpoint.golden", ""},
		{"unknown endpoint no auth", "GET", "/v2/suba/acct/model/nothing/here", "", 401, "", "UNAUTHORIZED"},
		{"referrers none", "GET", "/v2/suba/acct/model/referrers/sha256:" + strings.Repeat("a", 64), "Bearer " + tokARO, 200, "referrers_empty.golden", ""},
		{"referrers push method", "PUT", "/v2/suba/acct/model/referrers/sha256:" + strings.Repeat("a", 64), "Bearer " + tokA, 405, "", "UNSUPPORTED"},
		{"referrers push read-only", "PUT", "/v2/suba/acct/model/referrers/sha256:" + strings.Repeat("a", 64), "Bearer " + tokARO, 403, "", "DENIED"},
		{"referrers other tenant", "GET", "/v2/suba/acct/model/referrers/sha256:" + strings.Repeat("a", 64), "Bearer " + tokB, 404, "", "NAME_UNKNOWN"},
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.wantStatus, body)
			}
			if got := resp.Header.Get("Docker-Distribution-API-Version"); got != "registry/2.0" {
				t.Errorf("Docker-Distribution-API-Version %q", got)
			}
			if resp.StatusCode == 401 {
				if got := resp.Header.Get("WWW-Authenticate"); got != `Basic realm="mlfleet"` {
					t.Errorf("WWW-Authenticate %q", got)
				}
			}
			if resp.StatusCode >= 400 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
			}
			if tc.wantInBody != "" && !bytes.Contains(body, []byte(tc.wantInBody)) {
				t.Errorf("body %s lacks %s", body, tc.wantInBody)
			}
			if tc.golden != "" {
				checkGolden(t, tc.golden, body)
			}
		})
	}
}

func checkGolden(t *testing.T, file string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", file)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden %s: %v (run with -update to create)", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("body differs from %s:\n got: %s\nwant: %s", path, got, want)
	}
}

// TestMount checks that a cross-repository mount reads the source repository
// only when the caller may.
func TestMount(t *testing.T) {
	_, srv := startRegistry(t)
	img, _ := random.Image(300, 1)
	ref, _ := name.ParseReference(hostOf(srv)+"/suba/acct/model:v1", name.Insecure)
	if err := remote.Write(ref, img, basic(tokA)); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	dig, _ := layers[0].Digest()
	tests := []struct {
		name       string
		tok        string
		into       string
		wantStatus int
	}{
		{"same tenant mounts", tokA, "suba/acct/other", http.StatusCreated},
		{"other tenant gets a plain upload", tokB, "subb/acct/stolen", http.StatusAccepted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url := srv.URL + "/v2/" + tc.into + "/blobs/uploads/?mount=" + dig.String() + "&from=suba/acct/model"
			resp, body := do(t, http.MethodPost, url, "Bearer "+tc.tok, nil)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.wantStatus, body)
			}
			if tc.wantStatus == http.StatusAccepted {
				// The blob must still be unknown in the other tenant's repository.
				resp, _ := do(t, http.MethodHead, srv.URL+"/v2/"+tc.into+"/blobs/"+dig.String(), "Bearer "+tc.tok, nil)
				if resp.StatusCode != http.StatusNotFound {
					t.Fatalf("blob in %s after refused mount: status %d", tc.into, resp.StatusCode)
				}
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		cfg       Config
		wantField string
	}{
		{"no root", Config{Authorizer: testAuthz}, "RootDir"},
		{"no authorizer", Config{RootDir: t.TempDir()}, "Authorizer"},
		{"root is a file", Config{RootDir: filepath.Join(file, "sub"), Authorizer: testAuthz}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg, err := New(context.Background(), tc.cfg)
			if err == nil {
				reg.Close()
				t.Fatal("New succeeded")
			}
			if got := errclass.FieldOf(err); got != tc.wantField {
				t.Fatalf("field %q, want %q (err %v)", got, tc.wantField, err)
			}
		})
	}
}

func TestNewStartsNoGoroutinesAndCloseIsIdempotent(t *testing.T) {
	// Warm up process-wide state (logrus hook, routers) first.
	r0, err := New(context.Background(), Config{RootDir: t.TempDir(), Authorizer: testAuthz, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	r0.Close()
	before := runtime.NumGoroutine()
	reg, err := New(context.Background(), Config{RootDir: t.TempDir(), Authorizer: testAuthz, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("New started %d goroutines", after-before)
	}
	for i := 0; i < 3; i++ {
		if err := reg.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/v2/suba/acct/model/manifests/v1", nil)
	req.Header.Set("Authorization", "Bearer "+tokA)
	reg.ServeHTTP(rec, req)
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("request after Close: status %d, want 503", rec.Code)
	}
}

func TestPurgeUploads(t *testing.T) {
	reg, srv := startRegistry(t)
	if n, err := reg.PurgeUploads(context.Background(), 0); err != nil || n != 0 {
		t.Fatalf("empty store: purged %d, err %v", n, err)
	}
	resp, body := do(t, http.MethodPost, srv.URL+"/v2/suba/acct/model/blobs/uploads/", "Bearer "+tokA, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload: %d %s", resp.StatusCode, body)
	}
	if n, err := reg.PurgeUploads(context.Background(), time.Hour); err != nil || n != 0 {
		t.Fatalf("fresh upload: purged %d, err %v", n, err)
	}
	// The upload's start time is stored with a clock; purge everything
	// started before a moment in the future.
	if n, err := reg.PurgeUploads(context.Background(), -time.Minute); err != nil || n != 1 {
		t.Fatalf("purge all: purged %d, err %v", n, err)
	}
}

func TestLogsAreRouted(t *testing.T) {
	buf := &syncWriter{}
	logger := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg, err := New(context.Background(), Config{RootDir: t.TempDir(), Authorizer: testAuthz, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	srv := httptest.NewServer(reg)
	defer srv.Close()
	do(t, http.MethodGet, srv.URL+"/v2/suba/acct/none/manifests/v1", "Bearer "+tokA, nil)
	routeLogs(quietLogger()) // stop writing into buf before reading it
	if !strings.Contains(buf.String(), "component=distribution") {
		t.Fatalf("no distribution log routed to slog; got %q", buf.String())
	}
}

// syncWriter is a bytes.Buffer safe for the registry's request goroutines.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}
