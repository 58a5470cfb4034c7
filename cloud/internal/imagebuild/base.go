package imagebuild

import (
	"context"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// loadBase reads spec.Base, an image index or a single image, and returns
// its image for each of want it offers. Index entries without a platform
// (attestations) and platforms not in want are ignored.
func loadBase(ctx context.Context, spec *Spec, want []Platform) (map[Platform]v1.Image, error) {
	ref, err := name.ParseReference(spec.Base, spec.nameOptions()...)
	if err != nil {
		return nil, errclass.Invalid("base", "base %q: %v", spec.Base, err)
	}
	desc, err := remote.Get(ref, spec.remoteOptions(ctx)...)
	if err != nil {
		return nil, classify(ctx, err, "read base image %s", ref)
	}
	out := map[Platform]v1.Image{}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, classify(ctx, err, "read base index %s", ref)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, classify(ctx, err, "read base index %s", ref)
		}
		for _, m := range im.Manifests {
			if m.Platform == nil || !m.MediaType.IsImage() {
				continue
			}
			p, ok := matchPlatform(*m.Platform, want)
			if !ok {
				continue
			}
			if _, dup := out[p]; dup {
				continue
			}
			img, err := idx.Image(m.Digest)
			if err != nil {
				return nil, classify(ctx, err, "read base image %s for %s", m.Digest, p)
			}
			out[p] = img
		}
		return out, nil
	}
	if !desc.MediaType.IsImage() {
		return nil, errclass.Invalid("base", "base %q is a %s, not an image or image index", spec.Base, desc.MediaType)
	}
	img, err := desc.Image()
	if err != nil {
		return nil, classify(ctx, err, "read base image %s", ref)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, classify(ctx, err, "read base image config %s", ref)
	}
	if p, ok := matchPlatform(v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}, want); ok {
		out[p] = img
	}
	return out, nil
}

// matchPlatform finds bp among want, treating arm64 with no variant and
// arm64/v8 as the same platform.
func matchPlatform(bp v1.Platform, want []Platform) (Platform, bool) {
	norm := func(arch, variant string) string {
		if arch == "arm64" && variant == "v8" {
			return ""
		}
		return variant
	}
	for _, p := range want {
		if p.OS == bp.OS && p.Arch == bp.Architecture && norm(p.Arch, p.Variant) == norm(bp.Architecture, bp.Variant) {
			return p, true
		}
	}
	return Platform{}, false
}
