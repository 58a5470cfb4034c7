package cloud

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/manifest"
)

// Image is one built version of an image: a multi-arch OCI index in a
// registry, addressed by digest.
type Image struct {
	Meta
	Subscription string `json:"subscription"`
	Account      string `json:"account"`
	Name         string `json:"name"`
	Version      int    `json:"version"`
	// Manifest is the manifest version it was built from (name:version) and its digest.
	Manifest       string `json:"manifest"`
	ManifestDigest string `json:"manifestDigest"`
	// Digest is the index digest; Reference is repository@digest.
	Digest    string       `json:"digest"`
	Reference string       `json:"reference"`
	Tag       string       `json:"tag,omitempty"`
	Platforms []string     `json:"platforms"`
	Layers    []ImageLayer `json:"layers"`
	// BytesUploaded is what the build pushed (blobs the registry had are skipped).
	BytesUploaded int64 `json:"bytesUploaded"`
}

// ImageLayer is one layer of one platform's image.
type ImageLayer struct {
	Platform string `json:"platform"`
	Kind     string `json:"kind"` // scorer, model, manifest, base
	Digest   string `json:"digest"`
	Size     int64  `json:"size"` // compressed
}

// ImagePath is the path of one image version.
func ImagePath(sub, acct, name string, v int) string {
	return ImageVersionsPath(sub, acct, name) + "/" + strconv.Itoa(v)
}

// ImageVersionsPath is the collection of an image name's versions.
func ImageVersionsPath(sub, acct, name string) string {
	return AccountPath(sub, acct) + "/images/" + name + "/versions"
}

// BuildFile is a file that goes into an image.
type BuildFile struct {
	Name string // path inside the image's directory for its kind
	Path string // on the cloud's disk
}

// BuildRequest is what the image builder needs.
type BuildRequest struct {
	// Repository is host/path of the target repository (no tag).
	Repository string
	Tag        string
	Models     []BuildFile
	Manifest   []byte // canonical manifest JSON
	// Files are the manifest's script files (exec runtime).
	Files []manifest.File
	// Base is the base image reference (exec runtime), "" for none.
	Base     string
	Labels   map[string]string
	Username string
	Password string
	Insecure bool
	// Local: the target is the cloud's own registry.
	Local bool
	Logf  func(format string, args ...any)
}

// BuildResult is what a build pushed.
type BuildResult struct {
	Digest        string
	Reference     string
	Platforms     []string
	Layers        []ImageLayer
	BytesUploaded int64
}

// ImageBuilder builds and pushes images (go-containerregistry in
// cloud/internal/imagebuild).
type ImageBuilder interface {
	Build(ctx context.Context, req BuildRequest) (*BuildResult, error)
}

// RegistryTarget is where images are pushed: the cloud's embedded registry,
// or an account's external one.
type RegistryTarget struct {
	Host     string // host:port
	Insecure bool   // plain HTTP
	external *ExternalRegistry
}

// SetImageBuilder wires the builder and the embedded registry.
func (s *Service) SetImageBuilder(b ImageBuilder, target RegistryTarget) {
	s.devMu.Lock()
	defer s.devMu.Unlock()
	s.builder, s.registry = b, target
}

// CreateImage is an image build request.
type CreateImage struct {
	Name string `json:"name"`
	// Manifest names the manifest version to build: "name:version".
	Manifest string `json:"manifest"`
	Tag      string `json:"tag,omitempty"`
	// Registry names an external registry of the account to push to
	// (default: the cloud's embedded registry).
	Registry string `json:"registry,omitempty"`
}

func parseNameVersion(field, s string) (string, int, error) {
	name, v, ok := strings.Cut(s, ":")
	n, err := strconv.Atoi(v)
	if !ok || err != nil || n < 1 || !manifest.ValidName(name) {
		return "", 0, errclass.Invalid(field, "%s %q is not NAME:VERSION", field, s)
	}
	return name, n, nil
}

// tagOK reports whether t is a valid OCI tag.
func tagOK(t string) bool {
	if len(t) == 0 || len(t) > 128 {
		return false
	}
	for i, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || (i > 0 && (r == '.' || r == '-'))) {
			return false
		}
	}
	return true
}

// CreateImage checks the request and queues the build as an operation. The
// image record appears only when the push has succeeded.
func (s *Service) CreateImage(ctx context.Context, sub, acct string, in CreateImage) (*Operation, error) {
	if _, err := authorize(ctx, AccountPath(sub, acct), Contributor); err != nil {
		return nil, err
	}
	if err := manifest.CheckName("name", in.Name); err != nil {
		return nil, err
	}
	mname, mver, err := parseNameVersion("manifest", in.Manifest)
	if err != nil {
		return nil, err
	}
	if in.Tag != "" && !tagOK(in.Tag) {
		return nil, errclass.Invalid("tag", "tag %q is not a valid image tag", in.Tag)
	}
	s.devMu.Lock()
	builder, target := s.builder, s.registry
	s.devMu.Unlock()
	if builder == nil {
		return nil, errclass.New(errclass.Unavailable, "", "this cloud has no image builder configured")
	}
	var mf Manifest
	var models []Model
	var ext *ExternalRegistry
	err = s.store.View(ctx, func(tx Tx) error {
		if _, err := account(tx, sub, acct, ModelManagement); err != nil {
			return err
		}
		if in.Registry != "" {
			ext = &ExternalRegistry{}
			if err := tx.Get(RegistryPath(sub, acct, in.Registry), ext); err != nil {
				if errclass.Is(err, errclass.NotFound) {
					return errclass.Invalid("registry", "registry %q is not configured in account %q", in.Registry, acct)
				}
				return err
			}
		}
		if err := tx.Get(ManifestPath(sub, acct, mname, mver), &mf); err != nil {
			if errclass.Is(err, errclass.NotFound) {
				return errclass.Invalid("manifest", "manifest %s version %d does not exist", mname, mver)
			}
			return err
		}
		for i, r := range mf.Spec.Models {
			var m Model
			if err := tx.Get(ModelPath(sub, acct, r.Name, r.Version), &m); err != nil {
				if errclass.Is(err, errclass.NotFound) {
					return errclass.Conflictf("manifest %s:%d uses model %s:%d, which was deleted", mname, mver, r.Name, r.Version)
				}
				return err
			}
			if m.Digest != r.Digest {
				return errclass.Conflictf("manifest %s:%d models[%d]: model %s:%d digest changed", mname, mver, i, r.Name, r.Version)
			}
			models = append(models, m)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	repo := RepositoryOf(sub, acct, in.Name)
	target.Host = strings.TrimSuffix(target.Host, "/")
	if ext != nil {
		repo = in.Name
		if ext.Prefix != "" {
			repo = ext.Prefix + "/" + in.Name
		}
		target = RegistryTarget{Host: ext.Host, Insecure: ext.Insecure, external: ext}
	}
	work := func(ctx context.Context, logf func(string, ...any)) (string, error) {
		return s.buildImage(ctx, builder, target, repo, sub, acct, in, mf, models, logf)
	}
	return s.SubmitOperation(ctx, sub, acct, "image.build", ImageVersionsPath(sub, acct, in.Name), work)
}

func (s *Service) buildImage(ctx context.Context, builder ImageBuilder, target RegistryTarget, repo, sub, acct string,
	in CreateImage, mf Manifest, models []Model, logf func(string, ...any)) (string, error) {
	canonical, err := mf.Spec.Canonical()
	if err != nil {
		return "", err
	}
	req := BuildRequest{Repository: target.Host + "/" + repo, Tag: in.Tag, Manifest: canonical, Files: mf.Spec.Scoring.Files,
		Base: mf.Spec.Scoring.BaseImage, Insecure: target.Insecure, Local: target.external == nil, Logf: logf,
		Labels: map[string]string{
			"mlfleet.manifest":        mf.Name + ":" + strconv.Itoa(mf.Version),
			"mlfleet.manifest.digest": mf.Digest,
		}}
	spec := *mf.Spec
	spec.Models = append([]manifest.ModelRef(nil), mf.Spec.Models...)
	spec.ApplyDefaults()
	for i, m := range models {
		path, err := s.blobs.Path(m.Digest)
		if err != nil {
			return "", fmt.Errorf("model %s:%d: %w", m.Name, m.Version, err)
		}
		req.Models = append(req.Models, BuildFile{Name: spec.Models[i].Path, Path: path})
		req.Labels[fmt.Sprintf("mlfleet.model.%d", i)] = fmt.Sprintf("%s:%d@%s", m.Name, m.Version, m.Digest)
	}
	if target.external != nil {
		req.Username, req.Password = target.external.Username, target.external.Password
		logf("pushing to external registry %s (%s)", target.external.Name, target.Host)
	} else {
		// The builder pushes with a short-lived token valid for this repository only.
		req.Username = "mlfleet-builder"
		req.Password, _, err = s.registryToken(ctx, repo, "", true, time.Hour)
		if err != nil {
			return "", err
		}
	}
	logf("building %s from manifest %s:%d (%d model file(s))", repo, mf.Name, mf.Version, len(models))
	res, err := builder.Build(ctx, req)
	if err != nil {
		return "", fmt.Errorf("build %s: %w", repo, err)
	}
	logf("pushed %s (%d bytes uploaded)", res.Reference, res.BytesUploaded)
	img := Image{Subscription: sub, Account: acct, Name: in.Name, Manifest: mf.Name + ":" + strconv.Itoa(mf.Version),
		ManifestDigest: mf.Digest, Digest: res.Digest, Reference: res.Reference, Tag: in.Tag,
		Platforms: res.Platforms, Layers: res.Layers, BytesUploaded: res.BytesUploaded}
	sort.Strings(img.Platforms)
	err = s.store.Update(context.WithoutCancel(ctx), func(tx Tx) error {
		v, err := tx.NextSeq(ImageVersionsPath(sub, acct, in.Name))
		if err != nil {
			return err
		}
		img.Version = int(v)
		img.Meta = s.meta(ctx, ImagePath(sub, acct, in.Name, img.Version))
		if err := tx.Create(img.Path, &img); err != nil {
			return err
		}
		return tx.AddRef(mf.Path, img.Path)
	})
	if err != nil {
		return "", err
	}
	return img.Path, nil
}

// ListImages lists an account's image versions, optionally of one name.
func (s *Service) ListImages(ctx context.Context, sub, acct, name string, o ListOptions) (Page[Image], error) {
	return listVersions[Image](ctx, s, sub, acct, "images", name, o)
}

// GetImage reads one image version.
func (s *Service) GetImage(ctx context.Context, sub, acct, name string, v int) (*Image, error) {
	return get[Image](ctx, s, ImagePath(sub, acct, name, v), Reader)
}

// DeleteImage deletes an image version's record; refused while a service
// uses it. (The registry keeps the blobs; its garbage collection reclaims them.)
func (s *Service) DeleteImage(ctx context.Context, sub, acct, name string, v int) error {
	return s.deleteUnused(ctx, ImagePath(sub, acct, name, v), fmt.Sprintf("image %s version %d", name, v))
}

// listVersions lists the versions of one name of a versioned collection
// (models, manifests, images) of an account, or of every name.
func listVersions[T any](ctx context.Context, s *Service, sub, acct, collection, name string, o ListOptions) (Page[T], error) {
	if _, err := authorize(ctx, AccountPath(sub, acct), Reader); err != nil {
		return Page[T]{}, err
	}
	if name != "" {
		if err := manifest.CheckName("name", name); err != nil {
			return Page[T]{}, err
		}
		return list[T](ctx, s, AccountPath(sub, acct)+"/"+collection+"/"+name+"/versions", 1, o, nil)
	}
	return list[T](ctx, s, AccountPath(sub, acct)+"/"+collection, 3, o, nil)
}

// deleteUnused deletes the resource at path unless something refers to it.
func (s *Service) deleteUnused(ctx context.Context, path, what string) error {
	if _, err := authorize(ctx, path, Contributor); err != nil {
		return err
	}
	return s.store.Update(ctx, func(tx Tx) error {
		users, err := tx.Referrers(path, 3)
		if err != nil {
			return err
		}
		if len(users) > 0 {
			return errclass.Conflictf("%s is used by %s; delete those first", what, strings.Join(users, ", "))
		}
		return tx.Delete(path)
	})
}
