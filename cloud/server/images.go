package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/internal/imagebuild"
)

// Platforms the builder makes images for, and where their scorer binaries
// live under the scorer directory: <dir>/<os>-<arch>[-<variant>]/mlfleet-scorer.
var platforms = []imagebuild.Platform{
	{OS: "linux", Arch: "amd64"},
	{OS: "linux", Arch: "arm64"},
	{OS: "linux", Arch: "arm", Variant: "v7"},
}

// ScorerPath is where a platform's scorer binary is expected under dir.
func ScorerPath(dir string, p imagebuild.Platform) string {
	name := p.OS + "-" + p.Arch
	if p.Variant != "" {
		name += "-" + p.Variant
	}
	return filepath.Join(dir, name, "mlfleet-scorer")
}

// findScorers lists the scorer binaries present in dir.
func findScorers(dir string) (map[imagebuild.Platform]string, error) {
	out := map[imagebuild.Platform]string{}
	for _, p := range platforms {
		path := ScorerPath(dir, p)
		st, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if st.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("scorer %s is not executable", path)
		}
		out[p] = path
	}
	return out, nil
}

// defaultScorerDir is bin/scorers beside the running executable (make build
// puts them there).
func defaultScorerDir() string {
	exe, err := os.Executable()
	if err != nil {
		return "scorers"
	}
	return filepath.Join(filepath.Dir(exe), "scorers")
}

// builder adapts imagebuild to cloud.ImageBuilder.
type builder struct {
	scorers map[imagebuild.Platform]string
	cache   *imagebuild.LayerCache
	tmpDir  string
	// local reaches the embedded registry: pushes to its advertised host
	// dial the listen address, so they never leave the machine.
	local http.RoundTripper
}

func (b *builder) Build(ctx context.Context, req cloud.BuildRequest) (*cloud.BuildResult, error) {
	spec := imagebuild.Spec{
		Repository: req.Repository, Tag: req.Tag, Scorers: b.scorers, Manifest: req.Manifest, Base: req.Base,
		Labels: req.Labels, Insecure: req.Insecure, Cache: b.cache, Log: req.Logf,
	}
	if req.Local {
		spec.Transport = b.local
	}
	if req.Username != "" || req.Password != "" {
		spec.Auth = &authn.Basic{Username: req.Username, Password: req.Password}
	}
	for _, m := range req.Models {
		spec.Models = append(spec.Models, imagebuild.File{Name: m.Name, Path: m.Path})
	}
	// Script files travel inside the manifest; the builder reads files.
	if len(req.Files) > 0 {
		dir, err := os.MkdirTemp(b.tmpDir, "build-files-*")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		for i, f := range req.Files {
			path := filepath.Join(dir, fmt.Sprintf("%d", i))
			if err := os.WriteFile(path, []byte(f.Content), 0o600); err != nil {
				return nil, err
			}
			spec.Extra = append(spec.Extra, imagebuild.File{Name: f.Path, Path: path})
		}
	}
	progressed := map[string]bool{}
	spec.Progress = func(e imagebuild.Event) {
		switch {
		case e.Skipped && !progressed[e.Digest]:
			progressed[e.Digest] = true
			req.Logf("%s layer %s: already in the registry", e.Kind, short(e.Digest))
		case !e.Skipped && e.Done == e.Total && !progressed[e.Digest]:
			progressed[e.Digest] = true
			req.Logf("%s layer %s: uploaded %d bytes", e.Kind, short(e.Digest), e.Total)
		}
	}
	res, err := imagebuild.Build(ctx, spec)
	if err != nil {
		return nil, err
	}
	out := &cloud.BuildResult{Digest: res.Digest, Reference: res.Reference, BytesUploaded: res.BytesUploaded}
	for _, p := range res.Platforms {
		out.Platforms = append(out.Platforms, p.String())
	}
	for _, l := range res.Layers {
		out.Layers = append(out.Layers, cloud.ImageLayer{Platform: l.Platform.String(), Kind: l.Kind, Digest: l.Digest, Size: l.Size})
	}
	return out, nil
}

func short(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

// newBuilder sets up image builds if scorer binaries are present.
func (s *Server) newBuilder() error {
	dir := s.cfg.ScorerDir
	if dir == "" {
		dir = defaultScorerDir()
	}
	scorers, err := findScorers(dir)
	if err != nil {
		return err
	}
	if len(scorers) == 0 {
		s.cfg.Logger.Warn("no scorer binaries found: image builds are disabled (run make build)", "dir", dir)
		return nil
	}
	tmp := filepath.Join(s.cfg.DataDir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	// The embedded registry is served on the API's plain-HTTP listener:
	// pushes reach it there (Insecure), whatever devices call it.
	host, _ := s.registryHost()
	s.svc.SetImageBuilder(&builder{scorers: scorers, cache: imagebuild.NewLayerCache(64), tmpDir: tmp, local: imagebuild.LocalTransport(host, s.Addr())},
		cloud.RegistryTarget{Host: host, Insecure: true})
	return nil
}
