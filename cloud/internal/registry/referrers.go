package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"

	"github.com/opencontainers/go-digest"
)

// The OCI referrers API, which distribution v3.1.2 lacks, is kept beside its
// store: when a manifest with a "subject" is pushed, its descriptor is
// recorded under <root>/mlfleet/referrers/<repo>/<alg>/<subject hex>/, the
// push is answered with an OCI-Subject header, and
// GET /v2/<repo>/referrers/<digest> lists the records as an image index.
// Deleting the manifest by digest removes its record.

const (
	// maxManifestBytes is distribution's own limit on a manifest body.
	maxManifestBytes = 4 << 20
	mediaTypeIndex   = "application/vnd.oci.image.index.v1+json"
)

// descriptor is an OCI content descriptor as the referrers index lists it.
type descriptor struct {
	MediaType    string            `json:"mediaType"`
	Digest       string            `json:"digest"`
	Size         int64             `json:"size"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
}

// referrerOf is what parseReferrer reads from a pushed manifest.
type referrerOf struct {
	subject digest.Digest
	desc    descriptor // without Digest, which the registry computes
}

// parseReferrer reads the subject of a pushed image manifest or index. ok is
// false when the body is not JSON, has no subject, or its subject digest is
// not valid: the registry itself then judges the manifest.
func parseReferrer(contentType string, body []byte) (ref referrerOf, ok bool) {
	var m struct {
		MediaType    string `json:"mediaType"`
		ArtifactType string `json:"artifactType"`
		Config       *struct {
			MediaType string `json:"mediaType"`
		} `json:"config"`
		Subject *struct {
			Digest string `json:"digest"`
		} `json:"subject"`
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(body, &m); err != nil || m.Subject == nil {
		return ref, false
	}
	d, err := digest.Parse(m.Subject.Digest)
	if err != nil {
		return ref, false
	}
	mt := m.MediaType
	if mt == "" {
		mt = contentType
	}
	at := m.ArtifactType
	if at == "" && m.Config != nil && mt != mediaTypeIndex {
		at = m.Config.MediaType
	}
	return referrerOf{subject: d, desc: descriptor{MediaType: mt, Size: int64(len(body)), ArtifactType: at, Annotations: m.Annotations}}, true
}

// referrersDir is where the referrers of subject in repo are recorded.
func (g *Registry) referrersDir(repo string, subject digest.Digest) string {
	return filepath.Join(g.root, "mlfleet", "referrers", filepath.FromSlash(repo), subject.Algorithm().String(), subject.Encoded())
}

func recordName(d digest.Digest) string { return d.Algorithm().String() + "-" + d.Encoded() + ".json" }

// recordReferrer stores the descriptor of manifest d, which refers to ref.subject.
func (g *Registry) recordReferrer(repo string, ref referrerOf, d digest.Digest) error {
	dir := g.referrersDir(repo, ref.subject)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("record referrer %s of %s in %q: %w", d, ref.subject, repo, err)
	}
	desc := ref.desc
	desc.Digest = d.String()
	b, err := json.Marshal(desc)
	if err != nil {
		return fmt.Errorf("record referrer %s: %w", d, err)
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("record referrer %s of %s in %q: %w", d, ref.subject, repo, err)
	}
	_, werr := tmp.Write(b)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("record referrer %s of %s in %q: %w", d, ref.subject, repo, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, recordName(d))); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("record referrer %s of %s in %q: %w", d, ref.subject, repo, err)
	}
	return nil
}

// forgetReferrer removes the record of manifest d in repo, whatever its subject.
func (g *Registry) forgetReferrer(repo string, d digest.Digest) error {
	pattern := filepath.Join(g.root, "mlfleet", "referrers", filepath.FromSlash(repo), "*", "*", recordName(d))
	matches, err := filepath.Glob(pattern)
	if err != nil {
		return fmt.Errorf("forget referrer %s in %q: %w", d, repo, err)
	}
	var errs []error
	for _, m := range matches {
		if err := os.Remove(m); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("forget referrer %s in %q: %w", d, repo, err)
	}
	return nil
}

// listReferrers returns the recorded referrers of subject, sorted by digest,
// keeping only those of artifactType when it is not "".
func (g *Registry) listReferrers(repo string, subject digest.Digest, artifactType string) ([]descriptor, error) {
	dir := g.referrersDir(repo, subject)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return []descriptor{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list referrers of %s in %q: %w", subject, repo, err)
	}
	out := []descriptor{}
	for _, e := range entries {
		if e.IsDir() || filepath.Ext(e.Name()) != ".json" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted meanwhile
			}
			return nil, fmt.Errorf("list referrers of %s in %q: %w", subject, repo, err)
		}
		var d descriptor
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("list referrers of %s in %q: record %s: %w", subject, repo, e.Name(), err)
		}
		if artifactType == "" || d.ArtifactType == artifactType {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out, nil
}

// serveReferrers answers GET /v2/<repo>/referrers/<digest>[?artifactType=].
func (g *Registry) serveReferrers(w http.ResponseWriter, r *http.Request, repo string) {
	sm := referrersPath.FindStringSubmatch(r.URL.Path)
	if sm == nil { // parseRoute matched this very pattern
		writeError(w, r, http.StatusNotFound, errorBody{Code: "UNSUPPORTED", Message: "no such registry endpoint"})
		return
	}
	subject, err := digest.Parse(sm[referrersPath.SubexpIndex("digest")])
	if err != nil || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		code, status := "DIGEST_INVALID", http.StatusBadRequest
		if err == nil {
			code, status = "UNSUPPORTED", http.StatusMethodNotAllowed
		}
		writeError(w, r, status, errorBody{Code: code, Message: "bad referrers request", Detail: map[string]string{"path": r.URL.Path, "method": r.Method}})
		return
	}
	at := r.URL.Query().Get("artifactType")
	list, err := g.listReferrers(repo, subject, at)
	if err != nil {
		g.log.ErrorContext(r.Context(), "registry: referrers", "repo", repo, "subject", subject.String(), "err", err)
		writeError(w, r, http.StatusInternalServerError, errorBody{Code: "UNKNOWN", Message: "cannot list referrers"})
		return
	}
	b := marshalReferrers(list)
	w.Header().Set("Content-Type", mediaTypeIndex)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	if at != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

// marshalReferrers encodes the referrers image index.
func marshalReferrers(list []descriptor) []byte {
	b, _ := json.Marshal(struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Manifests     []descriptor `json:"manifests"`
	}{2, mediaTypeIndex, list}) // cannot fail: strings and ints only
	return append(b, '\n')
}

// trackManifest wraps a manifest PUT or DELETE so that the referrers records
// follow the registry's answer. It returns the writer to serve through.
func (g *Registry) trackManifest(w http.ResponseWriter, r *http.Request, repo string) http.ResponseWriter {
	switch r.Method {
	case http.MethodPut:
		buf, err := io.ReadAll(io.LimitReader(r.Body, maxManifestBytes+1))
		// Give the registry the body unchanged, however much was read.
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
		if err != nil || len(buf) > maxManifestBytes {
			return w
		}
		ref, ok := parseReferrer(r.Header.Get("Content-Type"), buf)
		if !ok {
			return w
		}
		return &statusHook{ResponseWriter: w, status: http.StatusCreated, fn: func(h http.Header) {
			d, err := digest.Parse(h.Get("Docker-Content-Digest"))
			if err == nil {
				err = g.recordReferrer(repo, ref, d)
			}
			if err != nil {
				g.log.ErrorContext(r.Context(), "registry: referrers", "repo", repo, "err", err)
				return
			}
			h.Set("OCI-Subject", ref.subject.String())
		}}
	case http.MethodDelete:
		sm := manifestDigestPath.FindStringSubmatch(r.URL.Path)
		if sm == nil {
			return w // by tag: the manifest stays
		}
		d, err := digest.Parse(sm[manifestDigestPath.SubexpIndex("digest")])
		if err != nil {
			return w
		}
		return &statusHook{ResponseWriter: w, status: http.StatusAccepted, fn: func(http.Header) {
			if err := g.forgetReferrer(repo, d); err != nil {
				g.log.ErrorContext(r.Context(), "registry: referrers", "repo", repo, "err", err)
			}
		}}
	}
	return w
}

// statusHook runs fn, which may add headers, just before a response with
// status is sent.
type statusHook struct {
	http.ResponseWriter
	status int
	fn     func(http.Header)
	sent   bool
}

func (s *statusHook) WriteHeader(code int) {
	if !s.sent {
		s.sent = true
		if code == s.status {
			s.fn(s.Header())
		}
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusHook) Write(b []byte) (int, error) {
	if !s.sent {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusHook) Unwrap() http.ResponseWriter { return s.ResponseWriter }
