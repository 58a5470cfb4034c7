package registry

import (
	"net/http"
	"strings"
	"testing"
)

var digestA = "sha256:" + strings.Repeat("a", 64)

func TestParseRoute(t *testing.T) {
	tests := []struct {
		method, path string
		want         route
	}{
		{"GET", "/v2/", route{kind: routeBase}},
		{"GET", "/v2", route{kind: routeBase}}, // redirected to /v2/ by the registry
		{"GET", "/v2/_catalog", route{kind: routeCatalog}},
		{"GET", "/v2/s/a/img/manifests/v1", route{routeManifest, "s/a/img"}},
		{"PUT", "/v2/s/a/img/manifests/" + digestA, route{routeManifest, "s/a/img"}},
		{"DELETE", "/v2/s/a/img/manifests/v1", route{routeManifest, "s/a/img"}},
		{"HEAD", "/v2/s/a/img/blobs/" + digestA, route{routeBlob, "s/a/img"}},
		{"POST", "/v2/s/a/img/blobs/uploads/", route{routeBlobUpload, "s/a/img"}},
		{"PATCH", "/v2/s/a/img/blobs/uploads/0b7c9a6e-1f62-4f8e-9a59-4c1f4f2d7c11", route{routeBlobUpload, "s/a/img"}},
		{"GET", "/v2/s/a/img/tags/list", route{routeTags, "s/a/img"}},
		{"GET", "/v2/s/a/img/referrers/" + digestA, route{routeReferrers, "s/a/img"}},
		// Names that contain route words are still parsed as the registry does.
		{"GET", "/v2/s/blobs/img/manifests/v1", route{routeManifest, "s/blobs/img"}},
		{"GET", "/v2/s/manifests/x/tags/list", route{routeTags, "s/manifests/x"}},
		{"GET", "/v2/s/a/img/blobs/uploads/blobs/" + digestA, route{routeBlob, "s/a/img/blobs/uploads"}},
		// Not endpoints.
		// The router lets invalid names through (the registry answers
		// NAME_INVALID): the authorizer still sees them.
		{"GET", "/v2/S/a/img/manifests/v1", route{routeManifest, "S/a/img"}},
		{"GET", "/v2/s/a/img/unknown", route{kind: routeUnknown}},
		{"GET", "/v2/s/a/img/referrers/notadigest", route{kind: routeUnknown}},
		{"GET", "/v3/", route{kind: routeUnknown}},
		{"GET", "/", route{kind: routeUnknown}},
		{"GET", "", route{kind: routeUnknown}},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			if got := parseRoute(tc.method, tc.path); got != tc.want {
				t.Fatalf("parseRoute = {%s %q}, want {%s %q}", got.kind, got.repo, tc.want.kind, tc.want.repo)
			}
		})
	}
}

// FuzzParseRoute: any path parses without panicking, and a repository route
// always names a repository, the one that starts the path.
func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/_catalog", "/v2/a/b/manifests/latest", "/v2/a/blobs/uploads/",
		"/v2/a/referrers/" + digestA, "/v2/a/b/c/blobs/" + digestA, "/v2/a/tags/list", "/v2/a//b/manifests/x", "/v2/../x"} {
		f.Add("GET", s)
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		rt := parseRoute(method, path)
		switch rt.kind {
		case routeBase, routeCatalog, routeUnknown:
			if rt.repo != "" {
				t.Fatalf("%s route with repo %q", rt.kind, rt.repo)
			}
		default:
			if rt.repo == "" {
				t.Fatalf("%s route without a repo", rt.kind)
			}
			if !strings.HasPrefix(path, "/v2/"+rt.repo+"/") {
				t.Fatalf("repo %q is not the start of path %q", rt.repo, path)
			}
		}
	})
}

func TestToken(t *testing.T) {
	tests := []struct {
		name, header, want string
	}{
		{"none", "", ""},
		{"bearer", "Bearer tok1", "tok1"},
		{"bearer lower case", "bearer tok1", "tok1"},
		{"basic", basicHeader("tok2"), "tok2"},
		{"basic empty user", "Basic OnRvazM=", "tok3"}, // ":tok3"
		{"basic garbage", "Basic !!!", ""},
		{"other scheme", "Digest x", ""},
		{"scheme only", "Bearer", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodGet, "http://x/v2/", nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			if got := Token(r); got != tc.want {
				t.Fatalf("Token = %q, want %q", got, tc.want)
			}
		})
	}
}

// FuzzToken: any Authorization header is handled, and a Bearer or Basic
// credential made from a token gives that token back.
func FuzzToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "Basic dTpw", "Basic", "bearer  x ", "Basic Og=="} {
		f.Add(s, "tok")
	}
	f.Fuzz(func(t *testing.T, header, tok string) {
		r, _ := http.NewRequest(http.MethodGet, "http://x/v2/", nil)
		r.Header["Authorization"] = []string{header}
		_ = Token(r)

		if tok == "" || strings.TrimSpace(tok) != tok {
			return
		}
		r.Header["Authorization"] = []string{"Bearer " + tok}
		if got := Token(r); got != tok {
			t.Fatalf("Bearer %q gave %q", tok, got)
		}
		r.Header.Del("Authorization")
		r.SetBasicAuth("u", tok)
		if got := Token(r); got != tok {
			t.Fatalf("Basic password %q gave %q", tok, got)
		}
	})
}
