package imagebuild

import (
	"context"
	"reflect"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// pushBase pushes a 2-layer random "python" base for each platform to
// reg as repo:tag and returns its reference.
func pushBase(t *testing.T, reg *testRegistry, repoTag string, ps ...Platform) string {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range ps {
		img, err := random.Image(2048, 2)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture, cf.Variant = p.OS, p.Arch, p.Variant
		cf.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "PYTHONUNBUFFERED=1", "MLFLEET_ADDR=:1"}
		cf.Config.Cmd = []string{"python3"}
		cf.Config.Labels = map[string]string{"org.example.base": "python", "org.opencontainers.image.vendor": "someone"}
		img, err = mutate.ConfigFile(img, cf)
		if err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: p.OS, Architecture: p.Arch, Variant: p.Variant},
		}})
	}
	ref := reg.host + "/" + repoTag
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	return ref
}

func TestExecImageOnBase(t *testing.T) {
	ctx := context.Background()
	reg := newRegistry(t, "")
	base := pushBase(t, reg, "base/python:3.12", amd64, Platform{OS: "linux", Arch: "arm64", Variant: "v8"})

	spec := testSpec(t, reg, "acme/exec-model", []byte("pickle bytes"))
	spec.Base = base
	spec.Extra = []File{{Name: "score.py", Path: writeFile(t, t.TempDir(), "score.py", []byte("def run(x): return x\n"))}}
	res, err := Build(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	// The base has no arm/v7 image: that platform is dropped; arm64/v8
	// matches our arm64.
	if want := []Platform{amd64, arm64}; !reflect.DeepEqual(res.Platforms, want) {
		t.Fatalf("platforms %v, want %v", res.Platforms, want)
	}
	ref, err := name.ParseReference(res.Reference, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("validate.Index: %v", err)
	}
	im, _ := idx.IndexManifest()
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := img.Manifest()
		var kinds []string
		for _, l := range m.Layers {
			k := l.Annotations[layerKindAnnotation]
			if k == "" {
				k = KindBase
			}
			kinds = append(kinds, k)
		}
		if want := []string{KindBase, KindBase, KindScorer, KindModel, KindManifest}; !reflect.DeepEqual(kinds, want) {
			t.Errorf("%s: layers %v, want %v", d.Platform, kinds, want)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		c := cf.Config
		wantEnv := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "PYTHONUNBUFFERED=1", "MLFLEET_ADDR=:8080", "MLFLEET_MANIFEST=/mlfleet/manifest.json", "MLFLEET_MODEL_DIR=/mlfleet/models"}
		if !reflect.DeepEqual(c.Env, wantEnv) {
			t.Errorf("%s: env %v, want %v", d.Platform, c.Env, wantEnv)
		}
		if c.Cmd != nil || !reflect.DeepEqual(c.Entrypoint, []string{ScorerPath}) {
			t.Errorf("%s: entrypoint %v cmd %v", d.Platform, c.Entrypoint, c.Cmd)
		}
		if c.Labels["org.example.base"] != "python" || c.Labels["org.opencontainers.image.vendor"] != "mlfleet" {
			t.Errorf("%s: labels %v", d.Platform, c.Labels)
		}
		if len(cf.History) != 5 || len(cf.RootFS.DiffIDs) != 5 {
			t.Errorf("%s: %d history entries, %d diff ids, want 5 each", d.Platform, len(cf.History), len(cf.RootFS.DiffIDs))
		}
		if cf.Architecture != d.Platform.Architecture || cf.Variant != d.Platform.Variant {
			t.Errorf("config platform %s/%s, index says %s", cf.Architecture, cf.Variant, d.Platform)
		}
	}
	var baseLayers int
	for _, li := range res.Layers {
		if li.Kind == KindBase {
			baseLayers++
		}
	}
	if baseLayers != 4 {
		t.Errorf("result lists %d base layers, want 4", baseLayers)
	}

	// Building again gives the same digest.
	again, err := Build(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if again.Digest != res.Digest {
		t.Errorf("rebuild on the same base: %s, want %s", again.Digest, res.Digest)
	}
}

func TestBaseFailures(t *testing.T) {
	ctx := context.Background()
	reg := newRegistry(t, "")
	s390 := pushBase(t, reg, "base/s390x:1", Platform{OS: "linux", Arch: "s390x"})
	tests := []struct {
		name      string
		base      string
		wantClass errclass.Class
	}{
		{"missing base", reg.host + "/base/nope:1", errclass.NotFound},
		{"no common platform", s390, errclass.FailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec(t, reg, "acme/exec", []byte("m"))
			spec.Base = tt.base
			_, err := Build(ctx, spec)
			if got := errclass.ClassOf(err); got != tt.wantClass {
				t.Fatalf("class %s, want %s: %v", got, tt.wantClass, err)
			}
			t.Log(err)
		})
	}
}
