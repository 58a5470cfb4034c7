package imagebuild

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func init() {
	// Fail fast on transient errors in tests (real builds wait 1s, 3s, 9s).
	retryBackoff = remote.Backoff{Duration: 1e6, Factor: 2, Steps: 2}
}

var (
	amd64 = Platform{OS: "linux", Arch: "amd64"}
	arm64 = Platform{OS: "linux", Arch: "arm64"}
	armv7 = Platform{OS: "linux", Arch: "arm", Variant: "v7"}
)

// testRegistry is an in-process registry on 127.0.0.1:0.
type testRegistry struct {
	srv  *httptest.Server
	host string

	mu   sync.Mutex
	wrap func(w http.ResponseWriter, r *http.Request) bool // true: handled (rejected)
}

// newRegistry starts a registry; blobDir, if not empty, keeps blobs on disk.
func newRegistry(t testing.TB, blobDir string) *testRegistry {
	t.Helper()
	opts := []registry.Option{registry.Logger(log.New(io.Discard, "", 0))}
	if blobDir != "" {
		if err := os.MkdirAll(blobDir, 0o755); err != nil {
			t.Fatal(err)
		}
		opts = append(opts, registry.WithBlobHandler(registry.NewDiskBlobHandler(blobDir)))
	}
	h := registry.New(opts...)
	tr := &testRegistry{}
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		wrap := tr.wrap
		tr.mu.Unlock()
		if wrap != nil && wrap(w, r) {
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(tr.srv.Close)
	tr.host = strings.TrimPrefix(tr.srv.URL, "http://")
	return tr
}

// intercept installs (or, with nil, removes) a request filter.
func (tr *testRegistry) intercept(f func(w http.ResponseWriter, r *http.Request) bool) {
	tr.mu.Lock()
	tr.wrap = f
	tr.mu.Unlock()
}

// requireBasicAuth rejects requests without the given credentials.
func requireBasicAuth(user, pass string) func(w http.ResponseWriter, r *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		u, p, ok := r.BasicAuth()
		if ok && u == user && p == pass {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return true
	}
}

// writeFile writes data to dir/name and returns the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// pseudoRandom returns n reproducible bytes for seed, half of them
// compressible text, like a binary.
func pseudoRandom(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		if i%64 < 32 {
			b[i] = byte(r.Uint32())
		} else {
			b[i] = "abcdefgh"[r.IntN(8)]
		}
	}
	return b
}

// incompressible returns n reproducible random bytes.
func incompressible(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// fakeScorers writes a few-KB fake scorer per platform.
func fakeScorers(t testing.TB, dir string, ps ...Platform) map[Platform]string {
	t.Helper()
	m := map[Platform]string{}
	for i, p := range ps {
		m[p] = writeFile(t, dir, "scorer-"+strings.ReplaceAll(p.String(), "/", "-"), pseudoRandom(uint64(i+1), 4096+i*512))
	}
	return m
}

// testSpec is a 3-platform spec with a small model, pushed to reg.
func testSpec(t testing.TB, reg *testRegistry, repo string, model []byte) Spec {
	t.Helper()
	dir := t.TempDir()
	return Spec{
		Repository: reg.host + "/" + repo,
		Tag:        "v1",
		Scorers:    fakeScorers(t, dir, amd64, arm64, armv7),
		Models:     []File{{Name: "iris.onnx", Path: writeFile(t, dir, "iris.onnx", model)}},
		Manifest:   []byte(`{"id":"m-1","model":"iris","runtime":"onnx"}`),
		Labels:     map[string]string{LabelModelName: "iris", LabelModelVersion: "3", "mlfleet.manifest.id": "m-1"},
		Insecure:   true,
		Log:        t.Logf,
	}
}

// tarEntry is what the tests check of a tar header.
type tarEntry struct {
	Name   string
	Type   byte
	Mode   int64
	Size   int64
	Uid    int
	Gid    int
	Uname  string
	Gname  string
	Mtime  int64
	Format tar.Format
}

// readTar lists the entries of an uncompressed layer and returns the
// contents of its regular files.
func readTar(t testing.TB, l v1.Layer) ([]tarEntry, map[string][]byte) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var es []tarEntry
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, tarEntry{h.Name, h.Typeflag, h.Mode, h.Size, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime.Unix(), h.Format})
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
	return es, files
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
