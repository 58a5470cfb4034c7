package registry

import (
	"net/http"
	"net/url"
	"regexp"

	v2 "github.com/distribution/distribution/v3/registry/api/v2"
	"github.com/distribution/reference"
	"github.com/gorilla/mux"
)

// routeKind is what a request under /v2/ asks for.
type routeKind int

const (
	routeUnknown    routeKind = iota // no such endpoint
	routeBase                        // GET /v2/ (the ping)
	routeCatalog                     // /v2/_catalog
	routeManifest                    // /v2/<name>/manifests/<reference>
	routeBlob                        // /v2/<name>/blobs/<digest>
	routeBlobUpload                  // /v2/<name>/blobs/uploads/[<uuid>]
	routeTags                        // /v2/<name>/tags/list
	routeReferrers                   // /v2/<name>/referrers/<digest>
)

func (k routeKind) String() string {
	return [...]string{"unknown", "base", "catalog", "manifest", "blob", "blob-upload", "tags", "referrers"}[k]
}

// route is a parsed request path.
type route struct {
	kind routeKind
	repo string // repository name; "" for base, catalog and unknown
}

// referrersPath matches the referrers API, which distribution's router lacks.
var referrersPath = regexp.MustCompile(`^/v2/(?P<name>` + reference.NameRegexp.String() + `)/referrers/(?P<digest>` + reference.DigestRegexp.String() + `)$`)

// manifestDigestPath matches a manifest path whose reference is a digest.
var manifestDigestPath = regexp.MustCompile(`/manifests/(?P<digest>` + reference.DigestRegexp.String() + `)$`)

// parseRoute tells what a request path asks for. It matches with the very
// router the registry dispatches with, so the repository authorized here is
// always the one the registry then acts on.
func parseRoute(method, path string) route {
	req := &http.Request{Method: method, URL: &url.URL{Path: path}, Header: http.Header{}}
	var m mux.RouteMatch
	if v2.Router().Match(req, &m) && m.Route != nil && m.MatchErr == nil {
		name := m.Vars["name"]
		switch m.Route.GetName() {
		case v2.RouteNameBase:
			return route{kind: routeBase}
		case v2.RouteNameCatalog:
			return route{kind: routeCatalog}
		case v2.RouteNameManifest:
			return route{kind: routeManifest, repo: name}
		case v2.RouteNameBlob:
			return route{kind: routeBlob, repo: name}
		case v2.RouteNameBlobUpload, v2.RouteNameBlobUploadChunk:
			return route{kind: routeBlobUpload, repo: name}
		case v2.RouteNameTags:
			return route{kind: routeTags, repo: name}
		}
		return route{kind: routeUnknown}
	}
	if sm := referrersPath.FindStringSubmatch(path); sm != nil {
		return route{kind: routeReferrers, repo: sm[referrersPath.SubexpIndex("name")]}
	}
	return route{kind: routeUnknown}
}
