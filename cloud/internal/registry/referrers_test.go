package registry

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// pushBlob uploads b into repo in one monolithic PUT.
func pushBlob(t *testing.T, base, repo, tok string, b []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(b)
	resp, body := do(t, http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/", "Bearer "+tok, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start upload: %d %s", resp.StatusCode, body)
	}
	loc := resp.Header.Get("Location")
	if strings.HasPrefix(loc, "/") {
		loc = base + loc
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	resp, body = do(t, http.MethodPut, loc+sep+"digest="+d.String(), "Bearer "+tok, bytes.NewReader(b))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("finish upload: %d %s", resp.StatusCode, body)
	}
	return d
}

// pushManifest PUTs an OCI image manifest and returns the response.
func pushManifest(t *testing.T, base, repo, ref, tok string, m []byte) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, base+"/v2/"+repo+"/manifests/"+ref, bytes.NewReader(m))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func manifestJSON(config digest.Digest, configType string, artifactType string, subject *digest.Digest, subjectSize int) []byte {
	s := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",`+
		`"config":{"mediaType":%q,"digest":%q,"size":2},"layers":[]`, configType, config)
	if artifactType != "" {
		s += fmt.Sprintf(`,"artifactType":%q`, artifactType)
	}
	if subject != nil {
		s += fmt.Sprintf(`,"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":%q,"size":%d}`, *subject, subjectSize)
	}
	return []byte(s + "}")
}

func TestReferrers(t *testing.T) {
	_, srv := startRegistry(t)
	const repo = "suba/acct/model"
	cfg := pushBlob(t, srv.URL, repo, tokA, []byte("{}"))

	subjectM := manifestJSON(cfg, "application/vnd.oci.image.config.v1+json", "", nil, 0)
	if resp := pushManifest(t, srv.URL, repo, "v1", tokA, subjectM); resp.StatusCode != http.StatusCreated {
		t.Fatalf("push subject: %d", resp.StatusCode)
	}
	subject := digest.FromBytes(subjectM)

	sig := manifestJSON(cfg, "application/vnd.oci.empty.v1+json", "application/vnd.example.signature", &subject, len(subjectM))
	sbom := manifestJSON(cfg, "application/vnd.example.sbom", "", &subject, len(subjectM))
	for _, m := range [][]byte{sig, sbom} {
		d := digest.FromBytes(m)
		resp := pushManifest(t, srv.URL, repo, d.String(), tokA, m)
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("push referrer: %d", resp.StatusCode)
		}
		if got := resp.Header.Get("OCI-Subject"); got != subject.String() {
			t.Fatalf("OCI-Subject %q, want %q", got, subject)
		}
	}

	list := func(tok, query string) (int, []descriptor, http.Header) {
		resp, body := do(t, http.MethodGet, srv.URL+"/v2/"+repo+"/referrers/"+subject.String()+query, "Bearer "+tok, nil)
		if resp.StatusCode != http.StatusOK {
			return resp.StatusCode, nil, resp.Header
		}
		var idx struct {
			SchemaVersion int          `json:"schemaVersion"`
			MediaType     string       `json:"mediaType"`
			Manifests     []descriptor `json:"manifests"`
		}
		if err := json.Unmarshal(body, &idx); err != nil {
			t.Fatalf("referrers body %s: %v", body, err)
		}
		if idx.SchemaVersion != 2 || idx.MediaType != mediaTypeIndex || resp.Header.Get("Content-Type") != mediaTypeIndex {
			t.Fatalf("not an OCI index: %s (%s)", body, resp.Header.Get("Content-Type"))
		}
		return resp.StatusCode, idx.Manifests, resp.Header
	}

	tests := []struct {
		name       string
		tok, query string
		wantStatus int
		wantTypes  []string // artifact types, in digest order
		filtered   bool
	}{
		{"all", tokARO, "", 200, sortedTypes(sig, sbom), false},
		{"filtered", tokARO, "?artifactType=application/vnd.example.sbom", 200, []string{"application/vnd.example.sbom"}, true},
		{"other tenant", tokB, "", 404, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, got, h := list(tc.tok, tc.query)
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d", status, tc.wantStatus)
			}
			var types []string
			for _, d := range got {
				types = append(types, d.ArtifactType)
				if d.MediaType != "application/vnd.oci.image.manifest.v1+json" || d.Size == 0 {
					t.Errorf("descriptor %+v", d)
				}
			}
			if fmt.Sprint(types) != fmt.Sprint(tc.wantTypes) {
				t.Fatalf("artifact types %v, want %v", types, tc.wantTypes)
			}
			if (h.Get("OCI-Filters-Applied") == "artifactType") != tc.filtered {
				t.Fatalf("OCI-Filters-Applied %q", h.Get("OCI-Filters-Applied"))
			}
		})
	}

	// Deleting a referrer by digest removes it from the list.
	resp, body := do(t, http.MethodDelete, srv.URL+"/v2/"+repo+"/manifests/"+digest.FromBytes(sig).String(), "Bearer "+tokA, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("delete: %d %s", resp.StatusCode, body)
	}
	if _, got, _ := list(tokA, ""); len(got) != 1 || got[0].Digest != digest.FromBytes(sbom).String() {
		t.Fatalf("after delete: %+v", got)
	}
}

// sortedTypes gives the artifact types of the manifests in digest order.
func sortedTypes(ms ...[]byte) []string {
	type pair struct{ d, t string }
	var ps []pair
	for _, m := range ms {
		ref, _ := parseReferrer("", m)
		ps = append(ps, pair{digest.FromBytes(m).String(), ref.desc.ArtifactType})
	}
	if len(ps) == 2 && ps[0].d > ps[1].d {
		ps[0], ps[1] = ps[1], ps[0]
	}
	var out []string
	for _, p := range ps {
		out = append(out, p.t)
	}
	return out
}

func TestMarshalReferrersGolden(t *testing.T) {
	list := []descriptor{
		{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: "sha256:" + strings.Repeat("1", 64), Size: 512,
			ArtifactType: "application/vnd.example.signature", Annotations: map[string]string{"org.opencontainers.image.created": "2026-01-02T03:04:05Z"}},
		{MediaType: "application/vnd.oci.image.index.v1+json", Digest: "sha256:" + strings.Repeat("2", 64), Size: 300},
	}
	checkGolden(t, "referrers_index.golden", marshalReferrers(list))
}

func TestParseReferrer(t *testing.T) {
	sub := "sha256:" + strings.Repeat("b", 64)
	tests := []struct {
		name, ct, body   string
		ok               bool
		wantType, wantMT string
	}{
		{"artifactType wins", "", `{"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"a/b","config":{"mediaType":"c/d"},"subject":{"digest":"` + sub + `"}}`, true, "a/b", "application/vnd.oci.image.manifest.v1+json"},
		{"config type", "", `{"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"c/d"},"subject":{"digest":"` + sub + `"}}`, true, "c/d", "application/vnd.oci.image.manifest.v1+json"},
		{"media type from header", "application/vnd.oci.image.manifest.v1+json", `{"config":{"mediaType":"c/d"},"subject":{"digest":"` + sub + `"}}`, true, "c/d", "application/vnd.oci.image.manifest.v1+json"},
		{"index has no config type", "", `{"mediaType":"application/vnd.oci.image.index.v1+json","subject":{"digest":"` + sub + `"}}`, true, "", mediaTypeIndex},
		{"no subject", "", `{"mediaType":"application/vnd.oci.image.manifest.v1+json"}`, false, "", ""},
		{"bad subject digest", "", `{"subject":{"digest":"sha256:xyz"}}`, false, "", ""},
		{"not json", "", `{`, false, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ref, ok := parseReferrer(tc.ct, []byte(tc.body))
			if ok != tc.ok {
				t.Fatalf("ok %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if ref.subject.String() != sub || ref.desc.ArtifactType != tc.wantType || ref.desc.MediaType != tc.wantMT || ref.desc.Size != int64(len(tc.body)) {
				t.Fatalf("got %+v", ref)
			}
		})
	}
}

// FuzzParseReferrer: any manifest body is handled, and an accepted one has a
// valid subject digest and the body's size.
func FuzzParseReferrer(f *testing.F) {
	f.Add("", `{"subject":{"digest":"sha256:`+strings.Repeat("b", 64)+`"}}`)
	f.Add("application/vnd.oci.image.manifest.v1+json", `{"config":{"mediaType":"x"},"subject":{"digest":"sha512:`+strings.Repeat("c", 128)+`"},"annotations":{"a":"b"}}`)
	f.Add("", `{"subject":null}`)
	f.Add("", `[]`)
	f.Fuzz(func(t *testing.T, ct, body string) {
		ref, ok := parseReferrer(ct, []byte(body))
		if !ok {
			return
		}
		if err := ref.subject.Validate(); err != nil {
			t.Fatalf("accepted invalid subject %q: %v", ref.subject, err)
		}
		if ref.desc.Size != int64(len(body)) {
			t.Fatalf("size %d, body %d bytes", ref.desc.Size, len(body))
		}
	})
}
