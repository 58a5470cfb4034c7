// Package imagebuild turns a model manifest into a multi-arch OCI image index
// and pushes it to a registry, with no container daemon and, unless a base
// image is asked for, nothing pulled from anywhere.
//
// Every image is three layers on an empty root file system:
//
//	/mlfleet/bin/mlfleet-scorer   the static scorer for the platform (0755)
//	/mlfleet/models/<name>        the model file(s)                  (0444)
//	/mlfleet/manifest.json        the manifest, plus /mlfleet/app/*   (0444)
//
// Layers are deterministic tar+gzip streams (sorted entries, epoch mtimes,
// uid/gid 0, no owner names, fixed modes, a gzip header with no name and no
// time), so the same inputs always give the same digests: every image built
// from one scorer binary shares its scorer layer, and a new model version
// changes only the model and manifest layers. Model files are streamed, never
// held in memory: a layer is hashed in one pass when the index is built and
// compressed again while it is uploaded.
//
// The package is a pure adapter over go-containerregistry: it knows nothing
// of the cloud's store or accounts. Build builds and pushes; BuildLocal only
// builds.
package imagebuild

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// Paths inside the image.
const (
	ScorerPath   = "/mlfleet/bin/mlfleet-scorer"
	ModelDir     = "/mlfleet/models"
	ManifestPath = "/mlfleet/manifest.json"
	AppDir       = "/mlfleet/app"
	WorkDir      = "/mlfleet"
)

// Defaults applied to a Spec's zero fields.
const (
	DefaultPort = 8080
	DefaultUser = "65532:65532"
)

// Label keys read from Spec.Labels to fill the OCI title and version labels.
const (
	LabelModelName    = "mlfleet.model.name"
	LabelModelVersion = "mlfleet.model.version"
)

// Platform is an OS/architecture[/variant] triple, as in "linux/arm/v7".
type Platform struct{ OS, Arch, Variant string }

// String formats p as os/arch[/variant].
func (p Platform) String() string {
	if p.Variant != "" {
		return p.OS + "/" + p.Arch + "/" + p.Variant
	}
	return p.OS + "/" + p.Arch
}

var platformElem = regexp.MustCompile(`^[a-z0-9_]{1,32}$`)

// ParsePlatform parses "os/arch" or "os/arch/variant" ("linux/arm/v7").
func ParsePlatform(s string) (Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return Platform{}, errclass.Invalid("platform", "platform %q: want os/arch or os/arch/variant", s)
	}
	p := Platform{OS: parts[0], Arch: parts[1]}
	if len(parts) == 3 {
		if parts[2] == "" {
			return Platform{}, errclass.Invalid("platform", "platform %q: empty variant", s)
		}
		p.Variant = parts[2]
	}
	if err := p.validate(); err != nil {
		return Platform{}, err
	}
	return p, nil
}

func (p Platform) validate() error {
	for _, e := range []struct{ field, v string }{{"os", p.OS}, {"arch", p.Arch}, {"variant", p.Variant}} {
		if e.v == "" && e.field == "variant" {
			continue
		}
		if !platformElem.MatchString(e.v) {
			return errclass.Invalid("platform", "platform %q: %s %q must be 1-32 of [a-z0-9_]", p.String(), e.field, e.v)
		}
	}
	return nil
}

func (p Platform) less(q Platform) bool {
	if p.OS != q.OS {
		return p.OS < q.OS
	}
	if p.Arch != q.Arch {
		return p.Arch < q.Arch
	}
	return p.Variant < q.Variant
}

// File is a file to put into the image: Name is its path below the directory
// the Spec field puts it in, Path the file on disk (streamed, never read
// whole into memory).
type File struct {
	Name string
	Path string
}

// Event reports push progress of one layer or config blob.
type Event struct {
	Kind    string // KindScorer, KindModel, KindManifest, KindConfig, KindBase
	Digest  string
	Done    int64 // bytes uploaded so far
	Total   int64 // compressed size
	Skipped bool  // the registry already had the blob; nothing uploaded
}

// Spec describes one image index to build.
type Spec struct {
	// Repository is the registry host and path, with no tag or digest
	// ("127.0.0.1:8480/acme/models/iris").
	Repository string
	// Tag is pushed last, after the index is complete (optional; the index
	// is always addressed by digest).
	Tag string
	// Scorers is the static scorer binary per platform. Equal file
	// contents give equal layers.
	Scorers map[Platform]string
	// Models go to /mlfleet/models/<Name>, in one layer.
	Models []File
	// Manifest is the canonical manifest JSON, written to
	// /mlfleet/manifest.json.
	Manifest []byte
	// Extra files (scripts of exec manifests) go to /mlfleet/app/<Name>, in
	// the manifest layer.
	Extra []File
	// Base is an optional base image or index reference (exec runtimes):
	// our layers are appended to each of its platforms we have a scorer for.
	Base string
	// Labels are added to the image config labels (mlfleet.* keys).
	Labels map[string]string
	// Env is added to the scorer's environment ("KEY=value"); it may
	// override the MLFLEET_* defaults.
	Env []string
	// Port is the scorer's listening port (default 8080).
	Port int
	// User is the user the scorer runs as (default "65532:65532"); root is
	// refused.
	User string
	// Auth authenticates to the target (and base) registry; nil is anonymous.
	Auth authn.Authenticator
	// Insecure talks plain HTTP to the registry.
	Insecure bool
	// Progress, if set, receives per-layer push progress. Calls are
	// serialized.
	Progress func(Event)
	// Log, if set, receives one line per build step.
	Log func(format string, args ...any)
	// Cache, if set, remembers layer digests across builds so unchanged
	// files (the scorer binaries, above all) are hashed once. Files must
	// not be rewritten in place with the same size and modification time.
	Cache *LayerCache
	// Transport, if set, carries the registry requests (default: the
	// go-containerregistry default transport).
	Transport http.RoundTripper

	transport http.RoundTripper // set by Build to count uploaded bytes
}

// LayerInfo describes one layer of one platform's image.
type LayerInfo struct {
	Platform Platform
	Kind     string
	Digest   string
	Size     int64 // compressed
}

// Result describes a pushed image index.
type Result struct {
	Digest        string // of the index
	Reference     string // repository@digest
	Platforms     []Platform
	Layers        []LayerInfo
	BytesUploaded int64 // request body bytes sent to the registry
}

// built is an index ready to push, with what Build needs to report on it.
type built struct {
	repo      name.Repository
	index     v1.ImageIndex
	platforms []Platform
	layers    []LayerInfo
	own       []*fileLayer
	blobKinds map[v1.Hash]blobInfo // digests we may push -> kind and size
}

type blobInfo struct {
	kind string
	size int64
}

// BuildLocal builds the image index described by spec without pushing it
// (spec.Base, if set, is still read from its registry). The index's layers
// stream from the files named in spec, which must stay unchanged while the
// index is used.
func BuildLocal(ctx context.Context, spec Spec) (v1.ImageIndex, error) {
	b, err := build(ctx, &spec)
	if err != nil {
		return nil, err
	}
	return b.index, nil
}

// build validates spec (filling its defaults), hashes the layers and
// assembles the index.
func build(ctx context.Context, spec *Spec) (*built, error) {
	repo, err := spec.validate()
	if err != nil {
		return nil, err
	}
	logf := spec.logf()

	// Our layers, described first (so bad input fails before any hashing)
	// then hashed in parallel. Scorer layers are shared between platforms
	// naming the same file.
	b := &built{repo: repo, blobKinds: map[v1.Hash]blobInfo{}}
	type job struct {
		kind, what string
		entries    []entry
		layer      *fileLayer
	}
	var jobs []*job
	scorerJob := map[string]*job{}
	platforms := sortedPlatforms(spec.Scorers)
	for _, p := range platforms {
		file := spec.Scorers[p]
		if _, ok := scorerJob[file]; ok {
			continue
		}
		e, err := fileEntry(fmt.Sprintf("scorers[%s]", p), "bin/mlfleet-scorer", file, 0o755)
		if err != nil {
			return nil, err
		}
		j := &job{kind: KindScorer, what: "scorer layer for " + p.String(), entries: []entry{e}}
		scorerJob[file] = j
		jobs = append(jobs, j)
	}
	var modelJob *job
	if len(spec.Models) > 0 {
		modelJob = &job{kind: KindModel, what: "model layer"}
		for i, m := range spec.Models {
			e, err := fileEntry(fmt.Sprintf("models[%d].path", i), "models/"+m.Name, m.Path, 0o444)
			if err != nil {
				return nil, err
			}
			modelJob.entries = append(modelJob.entries, e)
		}
		jobs = append(jobs, modelJob)
	}
	manifestJob := &job{kind: KindManifest, what: "manifest layer", entries: []entry{
		{name: rootDir + "/manifest.json", mode: 0o444, data: spec.Manifest, size: int64(len(spec.Manifest))},
	}}
	for i, x := range spec.Extra {
		e, err := fileEntry(fmt.Sprintf("extra[%d].path", i), "app/"+x.Name, x.Path, 0o444)
		if err != nil {
			return nil, err
		}
		manifestJob.entries = append(manifestJob.entries, e)
	}
	jobs = append(jobs, manifestJob)

	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			l, err := newFileLayer(ctx, j.kind, j.entries, spec.Cache)
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", j.what, err)
				return
			}
			j.layer = l
		}()
	}
	wg.Wait()
	for i, j := range jobs {
		if errs[i] != nil {
			return nil, errs[i]
		}
		logf("%s: %s (%d bytes)", j.what, j.layer.digest, j.layer.size)
		b.own = append(b.own, j.layer)
	}
	scorerByPath := map[string]*fileLayer{}
	for file, j := range scorerJob {
		scorerByPath[file] = j.layer
	}
	var modelLayer *fileLayer
	if modelJob != nil {
		modelLayer = modelJob.layer
	}
	manifestLayer := manifestJob.layer
	for _, l := range b.own {
		b.blobKinds[l.digest] = blobInfo{l.kind, l.size}
	}

	// The images to append to: scratch, or each platform of the base.
	bases := map[Platform]v1.Image{}
	if spec.Base != "" {
		if bases, err = loadBase(ctx, spec, platforms); err != nil {
			return nil, err
		}
		var kept []Platform
		for _, p := range platforms {
			if _, ok := bases[p]; ok {
				kept = append(kept, p)
			} else {
				logf("base %s has no %s image; skipping that platform", spec.Base, p)
			}
		}
		if len(kept) == 0 {
			return nil, errclass.New(errclass.FailedPrecondition, "base",
				"base image %q offers none of the platforms we have scorers for (%s)", spec.Base, platformList(platforms))
		}
		platforms = kept
	}

	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		base := bases[p]
		img, err := assemble(spec, p, base, []*fileLayer{scorerByPath[spec.Scorers[p]], modelLayer, manifestLayer})
		if err != nil {
			return nil, fmt.Errorf("image for %s: %w", p, err)
		}
		infos, err := layerInfos(p, img)
		if err != nil {
			return nil, fmt.Errorf("image for %s: %w", p, err)
		}
		b.layers = append(b.layers, infos...)
		for _, li := range infos {
			if li.Kind == KindBase {
				h, _ := v1.NewHash(li.Digest)
				b.blobKinds[h] = blobInfo{KindBase, li.Size}
			}
		}
		if m, err := img.Manifest(); err == nil {
			b.blobKinds[m.Config.Digest] = blobInfo{KindConfig, m.Config.Size}
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add: img,
			Descriptor: v1.Descriptor{
				MediaType: types.OCIManifestSchema1,
				Platform:  &v1.Platform{OS: p.OS, Architecture: p.Arch, Variant: p.Variant},
			},
		})
	}
	d, err := idx.Digest()
	if err != nil {
		return nil, fmt.Errorf("digest of image index: %w", err)
	}
	logf("image index %s@%s (%s)", repo, d, platformList(platforms))
	b.index = idx
	b.platforms = platforms
	return b, nil
}

// assemble appends our layers (nil ones skipped) to base (nil: scratch) and
// sets the config for platform p.
func assemble(spec *Spec, p Platform, base v1.Image, layers []*fileLayer) (v1.Image, error) {
	var baseCfg *v1.ConfigFile
	if base == nil {
		base = empty.Image
	} else {
		cf, err := base.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("read base config: %w", err)
		}
		baseCfg = cf
	}
	img := mutate.MediaType(base, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.ConfigFile(img, configFor(spec, p, baseCfg))
	if err != nil {
		return nil, err
	}
	var adds []mutate.Addendum
	for _, l := range layers {
		if l == nil {
			continue
		}
		adds = append(adds, mutate.Addendum{
			Layer:       l,
			MediaType:   types.OCILayer,
			Annotations: map[string]string{layerKindAnnotation: l.kind},
			History: v1.History{
				Created:   v1.Time{Time: epoch},
				CreatedBy: "mlfleet imagebuild: " + l.kind + " layer",
			},
		})
	}
	return mutate.Append(img, adds...)
}

// configFor returns the image config for platform p, on top of base's
// config if there is a base.
func configFor(spec *Spec, p Platform, base *v1.ConfigFile) *v1.ConfigFile {
	cf := &v1.ConfigFile{RootFS: v1.RootFS{Type: "layers"}}
	if base != nil {
		cf = base.DeepCopy()
	}
	cf.Created = v1.Time{Time: epoch}
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Arch, p.Variant
	cf.Author = ""
	cf.Container = ""
	cf.DockerVersion = ""

	c := &cf.Config
	port := strconv.Itoa(spec.Port)
	c.Entrypoint = []string{ScorerPath}
	c.Cmd = nil
	c.Env = mergeEnv(c.Env, []string{
		"MLFLEET_MANIFEST=" + ManifestPath,
		"MLFLEET_MODEL_DIR=" + ModelDir,
		"MLFLEET_ADDR=:" + port,
	}, spec.Env)
	if c.ExposedPorts == nil {
		c.ExposedPorts = map[string]struct{}{}
	}
	c.ExposedPorts[port+"/tcp"] = struct{}{}
	c.User = spec.User
	c.WorkingDir = WorkDir

	labels := map[string]string{}
	for k, v := range c.Labels {
		labels[k] = v
	}
	title := spec.Labels[LabelModelName]
	if title == "" {
		title = path.Base(spec.Repository)
	}
	labels["org.opencontainers.image.title"] = title
	if v := spec.Labels[LabelModelVersion]; v != "" {
		labels["org.opencontainers.image.version"] = v
	} else if spec.Tag != "" {
		labels["org.opencontainers.image.version"] = spec.Tag
	}
	labels["org.opencontainers.image.created"] = epoch.Format("2006-01-02T15:04:05Z")
	labels["org.opencontainers.image.source"] = "mlfleet"
	labels["org.opencontainers.image.vendor"] = "mlfleet"
	for k, v := range spec.Labels {
		labels[k] = v
	}
	c.Labels = labels
	return cf
}

// mergeEnv concatenates KEY=value lists; a later KEY replaces an earlier one
// in place.
func mergeEnv(lists ...[]string) []string {
	var out []string
	pos := map[string]int{}
	for _, l := range lists {
		for _, kv := range l {
			k, _, _ := strings.Cut(kv, "=")
			if i, ok := pos[k]; ok {
				out[i] = kv
				continue
			}
			pos[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}

// layerInfos lists img's layers, classifying ours by their annotation.
func layerInfos(p Platform, img v1.Image) ([]LayerInfo, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	out := make([]LayerInfo, 0, len(m.Layers))
	for _, d := range m.Layers {
		kind := d.Annotations[layerKindAnnotation]
		if kind == "" {
			kind = KindBase
		}
		out = append(out, LayerInfo{Platform: p, Kind: kind, Digest: d.Digest.String(), Size: d.Size})
	}
	return out, nil
}

// fileEntry describes the file at file as rel below /mlfleet, checking that
// it is a regular file. field names the Spec field for errors.
func fileEntry(field, rel, file string, mode int64) (entry, error) {
	if file == "" {
		return entry{}, errclass.Invalid(field, "%s is empty", field)
	}
	fi, err := os.Stat(file)
	if err != nil {
		return entry{}, &errclass.Error{Class: errclass.InvalidArgument, Field: field, Msg: fmt.Sprintf("%s %q", field, file), Err: err}
	}
	if !fi.Mode().IsRegular() {
		return entry{}, errclass.Invalid(field, "%s %q is not a regular file", field, file)
	}
	e := entry{name: rootDir + "/" + rel, mode: mode, path: file, size: fi.Size(), modTime: fi.ModTime().UnixNano()}
	e.dev, e.ino = fileID(fi)
	return e, nil
}

var envKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validate checks spec, fills its defaults and returns the parsed
// repository.
func (s *Spec) validate() (name.Repository, error) {
	opts := s.nameOptions()
	if s.Repository == "" {
		return name.Repository{}, errclass.Invalid("repository", "repository is empty")
	}
	repo, err := name.NewRepository(s.Repository, append(opts, name.StrictValidation)...)
	if err != nil {
		return name.Repository{}, errclass.Invalid("repository", "repository %q: %v", s.Repository, err)
	}
	if s.Tag != "" {
		if _, err := name.NewTag(s.Repository+":"+s.Tag, append(opts, name.StrictValidation)...); err != nil {
			return name.Repository{}, errclass.Invalid("tag", "tag %q: %v", s.Tag, err)
		}
	}
	if len(s.Scorers) == 0 {
		return name.Repository{}, errclass.Invalid("scorers", "scorers is empty: need a scorer binary for at least one platform")
	}
	for p := range s.Scorers {
		if err := p.validate(); err != nil {
			return name.Repository{}, errclass.Invalid("scorers", "scorers: %v", err)
		}
	}
	seen := map[string]bool{}
	for i, m := range s.Models {
		if err := validName(m.Name); err != nil {
			return name.Repository{}, errclass.Invalid(fmt.Sprintf("models[%d].name", i), "models[%d].name %q %v", i, m.Name, err)
		}
		if seen[m.Name] {
			return name.Repository{}, errclass.Invalid(fmt.Sprintf("models[%d].name", i), "models[%d].name %q appears twice", i, m.Name)
		}
		seen[m.Name] = true
	}
	seen = map[string]bool{}
	for i, x := range s.Extra {
		if err := validName(x.Name); err != nil {
			return name.Repository{}, errclass.Invalid(fmt.Sprintf("extra[%d].name", i), "extra[%d].name %q %v", i, x.Name, err)
		}
		if seen[x.Name] {
			return name.Repository{}, errclass.Invalid(fmt.Sprintf("extra[%d].name", i), "extra[%d].name %q appears twice", i, x.Name)
		}
		seen[x.Name] = true
	}
	if len(s.Manifest) == 0 || !json.Valid(s.Manifest) {
		return name.Repository{}, errclass.Invalid("manifest", "manifest is not valid JSON (%d bytes)", len(s.Manifest))
	}
	if s.Base != "" {
		if _, err := name.ParseReference(s.Base, opts...); err != nil {
			return name.Repository{}, errclass.Invalid("base", "base %q: %v", s.Base, err)
		}
	}
	for k := range s.Labels {
		if k == "" || strings.ContainsAny(k, "\x00\n") {
			return name.Repository{}, errclass.Invalid("labels", "label key %q is empty or has a NUL or newline", k)
		}
	}
	for i, kv := range s.Env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || !envKey.MatchString(k) {
			return name.Repository{}, errclass.Invalid(fmt.Sprintf("env[%d]", i), "env[%d] %q: want KEY=value with KEY of [A-Za-z0-9_]", i, kv)
		}
	}
	if s.Port == 0 {
		s.Port = DefaultPort
	}
	if s.Port < 1 || s.Port > 65535 {
		return name.Repository{}, errclass.Invalid("port", "port %d is outside 1-65535", s.Port)
	}
	if s.User == "" {
		s.User = DefaultUser
	}
	if u, _, _ := strings.Cut(s.User, ":"); u == "0" || u == "root" {
		return name.Repository{}, errclass.Invalid("user", "user %q is root; the scorer must run as a non-root user", s.User)
	}
	if s.Auth == nil {
		s.Auth = authn.Anonymous
	}
	return repo, nil
}

func (s *Spec) logf() func(string, ...any) {
	if s.Log == nil {
		return func(string, ...any) {}
	}
	return s.Log
}

func sortedPlatforms(m map[Platform]string) []Platform {
	ps := make([]Platform, 0, len(m))
	for p := range m {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].less(ps[j]) })
	return ps
}

func platformList(ps []Platform) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}
