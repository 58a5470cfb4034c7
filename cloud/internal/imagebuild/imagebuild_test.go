package imagebuild

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// layerDigests returns, per platform, the digests of the layers by kind.
func layerDigests(t *testing.T, idx v1.ImageIndex) map[Platform]map[string]string {
	t.Helper()
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[Platform]map[string]string{}
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		p := Platform{d.Platform.OS, d.Platform.Architecture, d.Platform.Variant}
		out[p] = map[string]string{}
		for _, l := range m.Layers {
			out[p][l.Annotations[layerKindAnnotation]] = l.Digest.String()
		}
	}
	return out
}

func TestBuildLocalReproducible(t *testing.T) {
	ctx := context.Background()
	reg := newRegistry(t, "")
	spec := testSpec(t, reg, "acme/iris", []byte("model version one"))

	idx1, err := BuildLocal(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	idx2, err := BuildLocal(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := idx1.Digest()
	d2, _ := idx2.Digest()
	if d1 != d2 {
		t.Fatalf("same inputs gave index digests %s and %s", d1, d2)
	}
	if err := validate.Index(idx1); err != nil {
		t.Fatalf("validate.Index: %v", err)
	}

	// Copying the inputs elsewhere changes nothing: paths are not part of
	// the image.
	moved := testSpec(t, reg, "acme/iris", []byte("model version one"))
	idx3, err := BuildLocal(ctx, moved)
	if err != nil {
		t.Fatal(err)
	}
	if d3, _ := idx3.Digest(); d3 != d1 {
		t.Fatalf("same contents at other paths gave %s, want %s", d3, d1)
	}

	// A new model: new model layer and index; scorer and manifest layers are
	// the same.
	spec2 := spec
	spec2.Models = []File{{Name: "iris.onnx", Path: writeFile(t, t.TempDir(), "iris.onnx", []byte("model version two"))}}
	idx4, err := BuildLocal(ctx, spec2)
	if err != nil {
		t.Fatal(err)
	}
	if d4, _ := idx4.Digest(); d4 == d1 {
		t.Fatal("a different model gave the same index digest")
	}
	a, b := layerDigests(t, idx1), layerDigests(t, idx4)
	for _, p := range []Platform{amd64, arm64, armv7} {
		if a[p][KindScorer] == "" || a[p][KindScorer] != b[p][KindScorer] {
			t.Errorf("%s scorer layer: %s then %s, want equal", p, a[p][KindScorer], b[p][KindScorer])
		}
		if a[p][KindManifest] != b[p][KindManifest] {
			t.Errorf("%s manifest layer changed with only the model changed", p)
		}
		if a[p][KindModel] == b[p][KindModel] {
			t.Errorf("%s model layer unchanged for a different model", p)
		}
		if a[p][KindModel] != a[amd64][KindModel] {
			t.Errorf("%s model layer %s differs from amd64's %s", p, a[p][KindModel], a[amd64][KindModel])
		}
	}
	if a[amd64][KindScorer] == a[arm64][KindScorer] {
		t.Error("different scorer binaries gave the same layer")
	}

	// The same scorer binary in another image (other model, other manifest,
	// other repository) gives a byte-identical scorer layer.
	other := testSpec(t, reg, "other/thing", []byte("x"))
	other.Scorers = spec.Scorers
	other.Manifest = []byte(`{"id":"m-9"}`)
	idx5, err := BuildLocal(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	if c := layerDigests(t, idx5); c[arm64][KindScorer] != a[arm64][KindScorer] {
		t.Errorf("scorer layer not shared across images: %s vs %s", c[arm64][KindScorer], a[arm64][KindScorer])
	}
}

func TestPushedImageContents(t *testing.T) {
	ctx := context.Background()
	reg := newRegistry(t, "")
	spec := testSpec(t, reg, "acme/iris", []byte("the model bytes"))
	dir := t.TempDir()
	spec.Extra = []File{
		{Name: "score.py", Path: writeFile(t, dir, "score.py", []byte("def run(x): return x\n"))},
		{Name: "lib/util.py", Path: writeFile(t, dir, "util.py", []byte("X = 1\n"))},
	}
	spec.Env = []string{"OMP_NUM_THREADS=1", "MLFLEET_ADDR=:9000"}
	spec.Port = 9000
	res, err := Build(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Platform{amd64, armv7, arm64}; !reflect.DeepEqual(res.Platforms, want) {
		t.Errorf("platforms %v, want %v", res.Platforms, want)
	}
	if !strings.HasPrefix(res.Reference, spec.Repository+"@sha256:") || !strings.HasSuffix(res.Reference, res.Digest) {
		t.Errorf("reference %q, digest %q", res.Reference, res.Digest)
	}

	// Read back what the registry holds, by tag.
	tagRef, err := name.ParseReference(spec.Repository+":v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(tagRef, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := idx.Digest(); d.String() != res.Digest {
		t.Fatalf("tag points at %s, want %s", d, res.Digest)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("validate.Index of the pushed index: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s", im.MediaType)
	}
	var got []string
	for _, d := range im.Manifests {
		got = append(got, d.Platform.String())
		if d.MediaType != types.OCIManifestSchema1 {
			t.Errorf("%s: manifest media type %s", d.Platform, d.MediaType)
		}
	}
	if want := []string{"linux/amd64", "linux/arm/v7", "linux/arm64"}; !reflect.DeepEqual(got, want) {
		t.Errorf("index platforms %v, want %v", got, want)
	}

	dirEntry := func(n string) tarEntry {
		return tarEntry{Name: n, Type: tar.TypeDir, Mode: 0o755, Format: tar.FormatUSTAR}
	}
	fileEntry := func(n string, mode, size int64) tarEntry {
		return tarEntry{Name: n, Type: tar.TypeReg, Mode: mode, Size: size, Format: tar.FormatUSTAR}
	}
	for _, d := range im.Manifests {
		p := Platform{d.Platform.OS, d.Platform.Architecture, d.Platform.Variant}
		t.Run(p.String(), func(t *testing.T) {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if m.Config.MediaType != types.OCIConfigJSON {
				t.Errorf("config media type %s", m.Config.MediaType)
			}
			var kinds []string
			for _, l := range m.Layers {
				kinds = append(kinds, l.Annotations[layerKindAnnotation])
				if l.MediaType != types.OCILayer {
					t.Errorf("layer media type %s", l.MediaType)
				}
			}
			if want := []string{KindScorer, KindModel, KindManifest}; !reflect.DeepEqual(kinds, want) {
				t.Fatalf("layer kinds %v, want %v", kinds, want)
			}
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			scorer, _ := os.ReadFile(spec.Scorers[p])
			wantLayers := []struct {
				entries []tarEntry
				files   map[string]string
			}{
				{
					[]tarEntry{dirEntry("mlfleet/"), dirEntry("mlfleet/bin/"), fileEntry("mlfleet/bin/mlfleet-scorer", 0o755, int64(len(scorer)))},
					map[string]string{"mlfleet/bin/mlfleet-scorer": string(scorer)},
				},
				{
					[]tarEntry{dirEntry("mlfleet/"), dirEntry("mlfleet/models/"), fileEntry("mlfleet/models/iris.onnx", 0o444, 15)},
					map[string]string{"mlfleet/models/iris.onnx": "the model bytes"},
				},
				{
					[]tarEntry{
						dirEntry("mlfleet/"), dirEntry("mlfleet/app/"), dirEntry("mlfleet/app/lib/"),
						fileEntry("mlfleet/app/lib/util.py", 0o444, 6),
						fileEntry("mlfleet/app/score.py", 0o444, 21),
						fileEntry("mlfleet/manifest.json", 0o444, int64(len(spec.Manifest))),
					},
					map[string]string{
						"mlfleet/app/lib/util.py": "X = 1\n",
						"mlfleet/app/score.py":    "def run(x): return x\n",
						"mlfleet/manifest.json":   string(spec.Manifest),
					},
				},
			}
			for i, l := range layers {
				es, files := readTar(t, l)
				if !reflect.DeepEqual(es, wantLayers[i].entries) {
					t.Errorf("layer %d (%s) entries:\n got %+v\nwant %+v", i, kinds[i], es, wantLayers[i].entries)
				}
				for n, want := range wantLayers[i].files {
					if string(files[n]) != want {
						t.Errorf("layer %d: %s has %d bytes, want %d", i, n, len(files[n]), len(want))
					}
				}
			}

			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.OS != p.OS || cf.Architecture != p.Arch || cf.Variant != p.Variant {
				t.Errorf("config platform %s/%s/%s", cf.OS, cf.Architecture, cf.Variant)
			}
			if cf.Created.Unix() != 0 {
				t.Errorf("created %v, want the epoch", cf.Created)
			}
			c := cf.Config
			checks := []struct {
				what      string
				got, want any
			}{
				{"entrypoint", c.Entrypoint, []string{"/mlfleet/bin/mlfleet-scorer"}},
				{"cmd", c.Cmd, []string(nil)},
				{"env", c.Env, []string{"MLFLEET_MANIFEST=/mlfleet/manifest.json", "MLFLEET_MODEL_DIR=/mlfleet/models", "MLFLEET_ADDR=:9000", "OMP_NUM_THREADS=1"}},
				{"exposed ports", c.ExposedPorts, map[string]struct{}{"9000/tcp": {}}},
				{"user", c.User, "65532:65532"},
				{"working dir", c.WorkingDir, "/mlfleet"},
				{"labels", c.Labels, map[string]string{
					"org.opencontainers.image.title":   "iris",
					"org.opencontainers.image.version": "3",
					"org.opencontainers.image.created": "1970-01-01T00:00:00Z",
					"org.opencontainers.image.source":  "mlfleet",
					"org.opencontainers.image.vendor":  "mlfleet",
					LabelModelName:                     "iris",
					LabelModelVersion:                  "3",
					"mlfleet.manifest.id":              "m-1",
				}},
				{"history length", len(cf.History), 3},
				{"diff ids", len(cf.RootFS.DiffIDs), 3},
			}
			for _, ck := range checks {
				if !reflect.DeepEqual(ck.got, ck.want) {
					t.Errorf("%s = %#v, want %#v", ck.what, ck.got, ck.want)
				}
			}
		})
	}

	// Result.Layers lists the three layers for each platform.
	if len(res.Layers) != 9 {
		t.Errorf("result lists %d layers, want 9", len(res.Layers))
	}
	for _, li := range res.Layers {
		if li.Size <= 0 || !strings.HasPrefix(li.Digest, "sha256:") {
			t.Errorf("layer info %+v", li)
		}
	}
}

func TestIncrementalPush(t *testing.T) {
	ctx := context.Background()
	reg := newRegistry(t, "")
	spec := testSpec(t, reg, "acme/iris", incompressible(1, 256<<10))

	var mu sync.Mutex
	var events []Event
	spec.Progress = func(e Event) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}
	r1, err := Build(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	var all int64
	for _, li := range uniqueLayers(r1.Layers) {
		all += li.Size
	}
	if r1.BytesUploaded < all || r1.BytesUploaded > all+20<<10 {
		t.Errorf("v1 uploaded %d bytes, want the %d bytes of its layers plus under 20 KB", r1.BytesUploaded, all)
	}
	for _, k := range []string{KindScorer, KindModel, KindManifest} {
		if !slices.ContainsFunc(events, func(e Event) bool { return e.Kind == k && !e.Skipped && e.Done == e.Total && e.Total > 0 }) {
			t.Errorf("v1: no completed upload event for a %s layer in %+v", k, events)
		}
	}

	// v2: a new model and manifest; the scorer layers are already there.
	events = nil
	spec2 := spec
	spec2.Tag = "v2"
	spec2.Models = []File{{Name: "iris.onnx", Path: writeFile(t, t.TempDir(), "iris.onnx", incompressible(2, 256<<10))}}
	spec2.Manifest = []byte(`{"id":"m-2","model":"iris","runtime":"onnx"}`)
	r2, err := Build(ctx, spec2)
	if err != nil {
		t.Fatal(err)
	}
	var newBytes int64
	for _, li := range uniqueLayers(r2.Layers) {
		if li.Kind != KindScorer {
			newBytes += li.Size
		}
	}
	meta := r2.BytesUploaded - newBytes
	t.Logf("v2: %d bytes uploaded = %d model+manifest layer bytes + %d bytes of configs/manifests/index", r2.BytesUploaded, newBytes, meta)
	if meta < 0 || meta >= 20<<10 {
		t.Errorf("v2 uploaded %d bytes: model+manifest layers are %d, so %d bytes of metadata; want under 20 KB", r2.BytesUploaded, newBytes, meta)
	}
	skipped := 0
	for _, e := range events {
		if e.Kind == KindScorer {
			if !e.Skipped {
				t.Errorf("v2 uploaded a scorer layer: %+v", e)
			}
			skipped++
		}
	}
	if skipped != 3 {
		t.Errorf("v2: %d skipped scorer events, want 3: %+v", skipped, events)
	}
	if r1.Digest == r2.Digest {
		t.Error("v1 and v2 have the same digest")
	}

	// Pushing v2 again uploads nothing but the tag's manifest check.
	r3, err := Build(ctx, spec2)
	if err != nil {
		t.Fatal(err)
	}
	if r3.Digest != r2.Digest || r3.BytesUploaded != 0 {
		t.Errorf("re-push: digest %s (want %s), %d bytes uploaded (want 0)", r3.Digest, r2.Digest, r3.BytesUploaded)
	}
}

// uniqueLayers drops repeats of a digest (a layer shared by platforms is
// uploaded once).
func uniqueLayers(ls []LayerInfo) []LayerInfo {
	seen := map[string]bool{}
	var out []LayerInfo
	for _, l := range ls {
		if !seen[l.Digest] {
			seen[l.Digest] = true
			out = append(out, l)
		}
	}
	return out
}

// tagExists reports whether repo:tag resolves, straight from the registry.
func tagExists(t *testing.T, reg *testRegistry, repo, tag string) bool {
	t.Helper()
	ref, err := name.ParseReference(reg.host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	_, err = remote.Head(ref, remote.WithAuth(authn.FromConfig(authn.AuthConfig{Username: "ok", Password: "ok"})))
	return err == nil
}

func TestPushFailures(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		setup     func(t *testing.T, reg *testRegistry, spec *Spec) (fix func())
		wantClass errclass.Class
	}{
		{
			name: "registry down",
			setup: func(t *testing.T, reg *testRegistry, spec *Spec) func() {
				// A closed server: its port refuses connections.
				down := newRegistry(t, "")
				down.srv.Close()
				spec.Repository = down.host + "/acme/iris"
				return func() { spec.Repository = reg.host + "/acme/iris" }
			},
			wantClass: errclass.Unavailable,
		},
		{
			name: "wrong password",
			setup: func(t *testing.T, reg *testRegistry, spec *Spec) func() {
				reg.intercept(requireBasicAuth("ok", "ok"))
				spec.Auth = authn.FromConfig(authn.AuthConfig{Username: "ok", Password: "wrong"})
				return func() { spec.Auth = authn.FromConfig(authn.AuthConfig{Username: "ok", Password: "ok"}) }
			},
			wantClass: errclass.Unauthenticated,
		},
		{
			name: "no credentials",
			setup: func(t *testing.T, reg *testRegistry, spec *Spec) func() {
				reg.intercept(requireBasicAuth("ok", "ok"))
				return func() { spec.Auth = authn.FromConfig(authn.AuthConfig{Username: "ok", Password: "ok"}) }
			},
			wantClass: errclass.Unauthenticated,
		},
		{
			name: "push denied mid-way",
			setup: func(t *testing.T, reg *testRegistry, spec *Spec) func() {
				// Blobs go in, then the registry refuses the arm64 manifest.
				reg.intercept(func(w http.ResponseWriter, r *http.Request) bool {
					if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/") {
						w.Header().Set("Content-Type", "application/json")
						w.WriteHeader(http.StatusForbidden)
						fmt.Fprint(w, `{"errors":[{"code":"DENIED","message":"quota exceeded"}]}`)
						return true
					}
					return false
				})
				return func() { reg.intercept(nil) }
			},
			wantClass: errclass.PermissionDenied,
		},
		{
			name: "registry failing",
			setup: func(t *testing.T, reg *testRegistry, spec *Spec) func() {
				reg.intercept(func(w http.ResponseWriter, r *http.Request) bool {
					if r.Method == http.MethodPatch || r.Method == http.MethodPut {
						w.WriteHeader(http.StatusServiceUnavailable)
						return true
					}
					return false
				})
				return func() { reg.intercept(nil) }
			},
			wantClass: errclass.Unavailable,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newRegistry(t, "")
			spec := testSpec(t, reg, "acme/iris", []byte("model"))
			fix := tt.setup(t, reg, &spec)
			_, err := Build(ctx, spec)
			if err == nil {
				t.Fatal("Build succeeded")
			}
			if got := errclass.ClassOf(err); got != tt.wantClass {
				t.Fatalf("class %s, want %s: %v", got, tt.wantClass, err)
			}
			t.Logf("error: %v", err)
			if tagExists(t, reg, "acme/iris", "v1") {
				t.Fatal("a failed build left the tag")
			}
			fix()
			res, err := Build(ctx, spec)
			if err != nil {
				t.Fatalf("retry: %v", err)
			}
			if !tagExists(t, reg, "acme/iris", "v1") {
				t.Fatalf("retry succeeded (%s) but the tag is missing", res.Reference)
			}
		})
	}
}

func TestBuildCancelled(t *testing.T) {
	reg := newRegistry(t, "")
	spec := testSpec(t, reg, "acme/iris", []byte("model"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Build(ctx, spec); err == nil || !errors.Is(err, context.Canceled) {
		t.Fatalf("Build with a cancelled context: %v, want context.Canceled", err)
	}
	if tagExists(t, reg, "acme/iris", "v1") {
		t.Fatal("cancelled build left a tag")
	}
}

func TestSpecValidation(t *testing.T) {
	reg := newRegistry(t, "")
	dir := t.TempDir()
	tests := []struct {
		name      string
		mutate    func(s *Spec)
		wantField string
		wantClass errclass.Class
	}{
		{"no repository", func(s *Spec) { s.Repository = "" }, "repository", errclass.InvalidArgument},
		{"repository with tag", func(s *Spec) { s.Repository += ":v1" }, "repository", errclass.InvalidArgument},
		{"repository without host", func(s *Spec) { s.Repository = "iris" }, "repository", errclass.InvalidArgument},
		{"bad tag", func(s *Spec) { s.Tag = "v 1" }, "tag", errclass.InvalidArgument},
		{"no scorers", func(s *Spec) { s.Scorers = nil }, "scorers", errclass.InvalidArgument},
		{"bad platform", func(s *Spec) { s.Scorers = map[Platform]string{{OS: "Linux", Arch: "amd64"}: "x"} }, "scorers", errclass.InvalidArgument},
		{"missing scorer file", func(s *Spec) { s.Scorers[amd64] = dir + "/nope" }, "scorers[linux/amd64]", errclass.InvalidArgument},
		{"scorer is a directory", func(s *Spec) { s.Scorers[amd64] = dir }, "scorers[linux/amd64]", errclass.InvalidArgument},
		{"model name escapes", func(s *Spec) { s.Models[0].Name = "../etc/passwd" }, "models[0].name", errclass.InvalidArgument},
		{"model name absolute", func(s *Spec) { s.Models[0].Name = "/m.onnx" }, "models[0].name", errclass.InvalidArgument},
		{"duplicate model", func(s *Spec) { s.Models = append(s.Models, s.Models[0]) }, "models[1].name", errclass.InvalidArgument},
		{"missing model file", func(s *Spec) { s.Models[0].Path = dir + "/nope" }, "models[0].path", errclass.InvalidArgument},
		{"extra name with space", func(s *Spec) { s.Extra = []File{{Name: "a b.py", Path: s.Models[0].Path}} }, "extra[0].name", errclass.InvalidArgument},
		{"manifest not JSON", func(s *Spec) { s.Manifest = []byte("{") }, "manifest", errclass.InvalidArgument},
		{"empty manifest", func(s *Spec) { s.Manifest = nil }, "manifest", errclass.InvalidArgument},
		{"bad env", func(s *Spec) { s.Env = []string{"A=1", "no-equals"} }, "env[1]", errclass.InvalidArgument},
		{"bad port", func(s *Spec) { s.Port = 70000 }, "port", errclass.InvalidArgument},
		{"root user", func(s *Spec) { s.User = "0:0" }, "user", errclass.InvalidArgument},
		{"root by name", func(s *Spec) { s.User = "root" }, "user", errclass.InvalidArgument},
		{"bad base", func(s *Spec) { s.Base = "UPPER/Case::x" }, "base", errclass.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec(t, reg, "acme/iris", []byte("m"))
			tt.mutate(&spec)
			_, err := BuildLocal(context.Background(), spec)
			if err == nil {
				t.Fatal("no error")
			}
			if c, f := errclass.ClassOf(err), errclass.FieldOf(err); c != tt.wantClass || f != tt.wantField {
				t.Fatalf("class %s field %q, want %s %q: %v", c, f, tt.wantClass, tt.wantField, err)
			}
			t.Log(err)
		})
	}
}

func TestParsePlatform(t *testing.T) {
	tests := []struct {
		in      string
		want    Platform
		wantErr bool
	}{
		{"linux/amd64", amd64, false},
		{"linux/arm/v7", armv7, false},
		{"linux", Platform{}, true},
		{"linux/arm/v7/x", Platform{}, true},
		{"linux//v7", Platform{}, true},
		{"Linux/amd64", Platform{}, true},
		{"linux/amd64/", Platform{}, true},
	}
	for _, tt := range tests {
		got, err := ParsePlatform(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParsePlatform(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("%q round-trips to %q", tt.in, got.String())
		}
	}
}
