package httpapi

import (
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mlfleet/mlfleet/cloud"
)

// The authorization matrix: every route of the API, called by every kind of
// principal, on a fresh copy of one seeded store. A principal with no role in
// a subscription must get 404 (never 403) for anything inside it.

type principal struct {
	name   string
	admin  bool
	grants map[string]cloud.Role
}

const (
	subA = "/subscriptions/a"
	eaA  = subA + "/accounts/ea"
	maA  = subA + "/accounts/ma"
	wA   = eaA + "/workspaces/w"
)

var principals = []principal{
	{name: "admin", admin: true},
	{name: "sub-owner", grants: map[string]cloud.Role{subA: cloud.Owner}},
	{name: "sub-contrib", grants: map[string]cloud.Role{subA: cloud.Contributor}},
	{name: "sub-reader", grants: map[string]cloud.Role{subA: cloud.Reader}},
	{name: "ma-contrib", grants: map[string]cloud.Role{maA: cloud.Contributor}},
	{name: "ws-reader", grants: map[string]cloud.Role{wA: cloud.Reader}},
	{name: "outsider", grants: map[string]cloud.Role{"/subscriptions/b": cloud.Owner}},
	{name: "nobody"},
	{name: ""}, // no token at all
}

func rankOf(r cloud.Role) int {
	return map[cloud.Role]int{cloud.Reader: 1, cloud.Contributor: 2, cloud.Owner: 3}[r]
}

func within(scope, path string) bool { return scope == path || strings.HasPrefix(path, scope+"/") }

func (p principal) roleOn(path string) int {
	best := 0
	for s, r := range p.grants {
		if within(s, path) && rankOf(r) > best {
			best = rankOf(r)
		}
	}
	return best
}

func (p principal) sees(path string) bool {
	for s := range p.grants {
		if within(s, path) || within(path, s) {
			return true
		}
	}
	return p.admin
}

type access struct {
	kind  string // public, any, admin, self, visible, role
	role  cloud.Role
	scope string
}

func (a access) want(p principal, ok int) int {
	if p.name == "" {
		if a.kind == "public" {
			return ok
		}
		return http.StatusUnauthorized
	}
	switch a.kind {
	case "public", "any":
		return ok
	case "admin":
		if p.admin {
			return ok
		}
		return http.StatusForbidden
	case "self":
		if p.admin || p.name == "sub-reader" {
			return ok
		}
		return http.StatusNotFound
	case "visible":
		if p.sees(a.scope) {
			return ok
		}
		return http.StatusNotFound
	}
	if p.admin || p.roleOn(a.scope) >= rankOf(a.role) {
		return ok
	}
	if p.sees(a.scope) {
		return http.StatusForbidden
	}
	return http.StatusNotFound
}

type matrixCase struct {
	method, route string // the route as registered
	path          string // concrete path
	body          string
	raw           bool // body is a model file
	ok            int
	access        access
}

func role(r cloud.Role, scope string) access { return access{kind: "role", role: r, scope: scope} }

func matrixCases(tokenID string) []matrixCase {
	onnx := "@affine"
	return []matrixCase{
		{"GET", "/healthz", "/healthz", "", false, 200, access{kind: "public"}},
		{"GET", v1 + "/openapi.json", v1 + "/openapi.json", "", false, 200, access{kind: "public"}},
		{"GET", v1 + "/whoami", v1 + "/whoami", "", false, 200, access{kind: "any"}},
		{"POST", v1 + "/users", v1 + "/users", `{"name":"new-user"}`, false, 201, access{kind: "admin"}},
		{"GET", v1 + "/users", v1 + "/users", "", false, 200, access{kind: "admin"}},
		{"GET", v1 + "/users/:user", v1 + "/users/sub-reader", "", false, 200, access{kind: "self"}},
		{"DELETE", v1 + "/users/:user", v1 + "/users/sub-reader", "", false, 204, access{kind: "admin"}},
		{"POST", v1 + "/users/:user/tokens", v1 + "/users/sub-reader/tokens", `{"name":"ci","expiresInHours":24}`, false, 201, access{kind: "self"}},
		{"GET", v1 + "/users/:user/tokens", v1 + "/users/sub-reader/tokens", "", false, 200, access{kind: "self"}},
		{"DELETE", v1 + "/users/:user/tokens/:id", v1 + "/users/sub-reader/tokens/" + tokenID, "", false, 204, access{kind: "self"}},
		{"POST", v1 + "/subscriptions", v1 + "/subscriptions", `{"name":"c"}`, false, 201, access{kind: "admin"}},
		{"GET", v1 + "/subscriptions", v1 + "/subscriptions", "", false, 200, access{kind: "any"}},
		{"GET", subP, v1 + subA, "", false, 200, access{kind: "visible", scope: subA}},
		{"PATCH", subP, v1 + subA, `{"description":"x"}`, false, 200, role(cloud.Contributor, subA)},
		{"DELETE", subP, v1 + subA + "?force=true", "", false, 204, role(cloud.Owner, subA)},
		{"POST", subP + "/accounts", v1 + subA + "/accounts", `{"name":"new","kind":"experimentation"}`, false, 201, role(cloud.Contributor, subA)},
		{"GET", subP + "/accounts", v1 + subA + "/accounts", "", false, 200, access{kind: "visible", scope: subA}},
		{"GET", acP, v1 + eaA, "", false, 200, access{kind: "visible", scope: eaA}},
		{"PATCH", acP, v1 + eaA, `{"description":"x"}`, false, 200, role(cloud.Contributor, eaA)},
		{"DELETE", acP, v1 + eaA + "?force=true", "", false, 204, role(cloud.Contributor, eaA)},
		{"POST", acP + "/workspaces", v1 + eaA + "/workspaces", `{"name":"new"}`, false, 201, role(cloud.Contributor, eaA)},
		{"GET", acP + "/workspaces", v1 + eaA + "/workspaces", "", false, 200, access{kind: "visible", scope: eaA}},
		{"GET", wsP, v1 + wA, "", false, 200, access{kind: "visible", scope: wA}},
		{"PATCH", wsP, v1 + wA, `{"description":"x"}`, false, 200, role(cloud.Contributor, wA)},
		{"DELETE", wsP, v1 + wA + "?force=true", "", false, 204, role(cloud.Contributor, wA)},
		{"POST", wsP + "/projects", v1 + wA + "/projects", `{"name":"new","folder":"new"}`, false, 201, role(cloud.Contributor, wA)},
		{"GET", wsP + "/projects", v1 + wA + "/projects", "", false, 200, role(cloud.Reader, wA)},
		{"GET", wsP + "/projects/:proj", v1 + wA + "/projects/p", "", false, 200, role(cloud.Reader, wA)},
		{"PATCH", wsP + "/projects/:proj", v1 + wA + "/projects/p", `{"gitRemote":"https://git.invalid/p.git"}`, false, 200, role(cloud.Contributor, wA)},
		{"DELETE", wsP + "/projects/:proj", v1 + wA + "/projects/p", "", false, 204, role(cloud.Contributor, wA)},
		{"GET", subP + "/roleAssignments", v1 + subA + "/roleAssignments", "", false, 200, role(cloud.Reader, subA)},
		{"PUT", subP + "/roleAssignments/:user", v1 + subA + "/roleAssignments/nobody", `{"role":"Reader"}`, false, 200, role(cloud.Owner, subA)},
		{"DELETE", subP + "/roleAssignments/:user", v1 + subA + "/roleAssignments/sub-reader", "", false, 204, role(cloud.Owner, subA)},
		{"GET", acP + "/roleAssignments", v1 + maA + "/roleAssignments", "", false, 200, role(cloud.Reader, maA)},
		{"PUT", acP + "/roleAssignments/:user", v1 + maA + "/roleAssignments/nobody", `{"role":"Reader"}`, false, 200, role(cloud.Owner, maA)},
		{"DELETE", acP + "/roleAssignments/:user", v1 + maA + "/roleAssignments/ma-contrib", "", false, 204, role(cloud.Owner, maA)},
		{"GET", wsP + "/roleAssignments", v1 + wA + "/roleAssignments", "", false, 200, role(cloud.Reader, wA)},
		{"PUT", wsP + "/roleAssignments/:user", v1 + wA + "/roleAssignments/nobody", `{"role":"Reader"}`, false, 200, role(cloud.Owner, wA)},
		{"DELETE", wsP + "/roleAssignments/:user", v1 + wA + "/roleAssignments/ws-reader", "", false, 204, role(cloud.Owner, wA)},
		{"POST", acP + "/models/:name/versions", v1 + maA + "/models/m/versions?tag=stage=dev", onnx, true, 201, role(cloud.Contributor, maA)},
		{"GET", acP + "/models", v1 + maA + "/models", "", false, 200, role(cloud.Reader, maA)},
		{"GET", acP + "/models/:name/versions", v1 + maA + "/models/m/versions", "", false, 200, role(cloud.Reader, maA)},
		{"GET", acP + "/models/:name/versions/:version", v1 + maA + "/models/m/versions/1", "", false, 200, role(cloud.Reader, maA)},
		{"PATCH", acP + "/models/:name/versions/:version", v1 + maA + "/models/m/versions/1", `{"tags":{"a":"b"}}`, false, 200, role(cloud.Contributor, maA)},
		{"DELETE", acP + "/models/:name/versions/:version", v1 + maA + "/models/spare/versions/1", "", false, 204, role(cloud.Contributor, maA)},
		{"GET", acP + "/models/:name/versions/:version/content", v1 + maA + "/models/m/versions/1/content", "", false, 200, role(cloud.Reader, maA)},
		{"POST", acP + "/manifests", v1 + maA + "/manifests", manifestDoc("mf", "m", 1), false, 201, role(cloud.Contributor, maA)},
		{"GET", acP + "/manifests", v1 + maA + "/manifests", "", false, 200, role(cloud.Reader, maA)},
		{"GET", acP + "/manifests/:name/versions", v1 + maA + "/manifests/mf/versions", "", false, 200, role(cloud.Reader, maA)},
		{"GET", acP + "/manifests/:name/versions/:version", v1 + maA + "/manifests/mf/versions/1", "", false, 200, role(cloud.Reader, maA)},
		{"DELETE", acP + "/manifests/:name/versions/:version", v1 + maA + "/manifests/mf/versions/1", "", false, 204, role(cloud.Contributor, maA)},
		{"POST", acP + "/images", v1 + maA + "/images", `{"name":"iris","manifest":"mf:1","tag":"v1"}`, false, 202, role(cloud.Contributor, maA)},
		{"GET", acP + "/images", v1 + maA + "/images", "", false, 200, role(cloud.Reader, maA)},
		{"GET", acP + "/images/:name/versions", v1 + maA + "/images/img/versions", "", false, 200, role(cloud.Reader, maA)},
		{"GET", acP + "/images/:name/versions/:version", v1 + maA + "/images/img/versions/1", "", false, 200, role(cloud.Reader, maA)},
		{"DELETE", acP + "/images/:name/versions/:version", v1 + maA + "/images/old/versions/1", "", false, 204, role(cloud.Contributor, maA)},
		{"POST", acP + "/environments", v1 + maA + "/environments", `{"name":"e2","selector":{"site":"x"}}`, false, 201, role(cloud.Contributor, maA)},
		{"GET", acP + "/environments", v1 + maA + "/environments", "", false, 200, role(cloud.Reader, maA)},
		{"GET", acP + "/environments/:name", v1 + maA + "/environments/fleet", "", false, 200, role(cloud.Reader, maA)},
		{"DELETE", acP + "/environments/:name", v1 + maA + "/environments/spare", "", false, 204, role(cloud.Contributor, maA)},
		{"POST", acP + "/services", v1 + maA + "/services", `{"name":"svc2","environment":"fleet","image":"img:1"}`, false, 201, role(cloud.Contributor, maA)},
		{"GET", acP + "/services", v1 + maA + "/services", "", false, 200, role(cloud.Reader, maA)},
		{"GET", acP + "/services/:svc", v1 + maA + "/services/svc", "", false, 200, role(cloud.Reader, maA)},
		{"DELETE", acP + "/services/:svc", v1 + maA + "/services/svc", "", false, 204, role(cloud.Contributor, maA)},
		{"POST", acP + "/services/:svc/rollouts", v1 + maA + "/services/calm/rollouts", `{"image":"img:1","batches":[{"percent":50}]}`, false, 201, role(cloud.Contributor, maA)},
		{"POST", acP + "/services/:svc/rollback", v1 + maA + "/services/calm/rollback", "", false, 201, role(cloud.Contributor, maA)},
		{"GET", acP + "/services/:svc/rollouts", v1 + maA + "/services/svc/rollouts", "", false, 200, role(cloud.Reader, maA)},
		{"GET", acP + "/services/:svc/rollouts/:id", v1 + maA + "/services/svc/rollouts/000001", "", false, 200, role(cloud.Reader, maA)},
		{"POST", acP + "/services/:svc/rollouts/:id/:action", v1 + maA + "/services/svc/rollouts/000001/pause", "", false, 200, role(cloud.Contributor, maA)},
		{"POST", acP + "/registries", v1 + maA + "/registries", `{"name":"harbor","host":"registry.example:5000","username":"u","password":"p"}`, false, 201, role(cloud.Contributor, maA)},
		{"GET", acP + "/registries", v1 + maA + "/registries", "", false, 200, role(cloud.Reader, maA)},
		{"GET", acP + "/registries/:name", v1 + maA + "/registries/ext", "", false, 200, role(cloud.Reader, maA)},
		{"DELETE", acP + "/registries/:name", v1 + maA + "/registries/ext", "", false, 204, role(cloud.Contributor, maA)},
		{"POST", acP + "/enrollmentTokens", v1 + maA + "/enrollmentTokens", `{"labels":{"site":"lab"}}`, false, 201, role(cloud.Contributor, maA)},
		{"POST", v1 + "/enroll", v1 + "/enroll", `{"token":"@enroll","name":"pi-1"}`, false, 201, access{kind: "public"}},
		{"GET", acP + "/devices", v1 + maA + "/devices?label=site=lab", "", false, 200, role(cloud.Reader, maA)},
		{"GET", acP + "/devices/:id", v1 + maA + "/devices/@dev", "", false, 200, role(cloud.Reader, maA)},
		{"PATCH", acP + "/devices/:id", v1 + maA + "/devices/@dev", `{"labels":{"site":"hq"}}`, false, 200, role(cloud.Contributor, maA)},
		{"DELETE", acP + "/devices/:id", v1 + maA + "/devices/@dev", "", false, 204, role(cloud.Contributor, maA)},
		{"PUT", acP + "/devices/:id/desired", v1 + maA + "/devices/@dev/desired", `{"services":[]}`, false, 200, role(cloud.Contributor, maA)},
		{"GET", acP + "/operations", v1 + maA + "/operations", "", false, 200, role(cloud.Reader, maA)},
		{"GET", acP + "/operations/:id", v1 + maA + "/operations/@op", "", false, 200, role(cloud.Reader, maA)},
	}
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestAuthorizationMatrix(t *testing.T) {
	seedDir := t.TempDir()
	var tokenID, opID, enrollToken, deviceID string
	var secrets map[string]string
	func() {
		e := newEnv(t, seedDir, cloud.Config{})
		e.seed("a")
		e.seed("b")
		must[*cloud.Model](t)(e.svc.RegisterModel(adminCtx(), cloud.RegisterModel{Subscription: "a", Account: "ma", Name: "spare", Format: "file", Body: strings.NewReader("weights")}))
		for _, p := range principals {
			if p.name != "" {
				e.user(p.name, p.admin, p.grants)
			}
		}
		secrets = e.tokens
		toks := must[[]cloud.Token](t)(e.svc.ListTokens(adminCtx(), "sub-reader"))
		tokenID = toks[0].ID
		op := must[*cloud.Operation](t)(e.svc.SubmitOperation(adminCtx(), "a", "ma", "test.noop", maA, nil))
		opID = op.ID
		e.putImage("a", "ma", "img", 1)
		et := must[*cloud.EnrollmentToken](t)(e.svc.CreateEnrollmentToken(adminCtx(), "a", "ma", map[string]string{"site": "lab"}, 0))
		deviceID = must[*cloud.Enrollment](t)(e.svc.Enroll(adminCtx(), cloud.EnrollRequest{Token: et.Token})).DeviceID
		enrollToken = must[*cloud.EnrollmentToken](t)(e.svc.CreateEnrollmentToken(adminCtx(), "a", "ma", nil, 0)).Token
		e.putImage("a", "ma", "img", 2)
		e.putImage("a", "ma", "old", 1)
		must[*cloud.ExternalRegistry](t)(e.svc.CreateRegistry(adminCtx(), "a", "ma", cloud.ExternalRegistry{Name: "ext", Host: "registry.example:5000", Username: "u", Password: "secret"}))
		must[*cloud.Environment](t)(e.svc.CreateEnvironment(adminCtx(), "a", "ma", cloud.Environment{Name: "fleet", Selector: map[string]string{"site": "lab"}}))
		must[*cloud.Environment](t)(e.svc.CreateEnvironment(adminCtx(), "a", "ma", cloud.Environment{Name: "spare", Selector: map[string]string{"site": "none"}}))
		if _, _, err := e.svc.CreateService(adminCtx(), "a", "ma", cloud.CreateServiceRequest{Name: "svc", Environment: "fleet", Image: "img:1"}); err != nil {
			t.Fatal(err)
		}
		e.putService(cloud.ScoringService{Name: "calm", Environment: "fleet", Image: "img:2", ImageReference: imageRef("img", 2), Previous: "img:1", PreviousReference: imageRef("img", 1)})
	}()
	// The seed env's store is closed by its cleanup only at the end; copy
	// after closing it explicitly through a fresh open per case instead.
	cases := matrixCases(tokenID)

	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.method+" "+c.route] = true
	}
	probe := newEnv(t, t.TempDir(), cloud.Config{})
	for _, r := range probe.api.routes {
		if !covered[r.method+" "+r.path] {
			t.Errorf("route %s %s has no authorization matrix case", r.method, r.path)
		}
	}
	affine := affineONNX(t)
	for _, c := range cases {
		for _, p := range principals {
			name := p.name
			if name == "" {
				name = "anonymous"
			}
			t.Run(c.method+" "+c.route+" as "+name, func(t *testing.T) {
				dir := t.TempDir()
				copyTree(t, seedDir, dir)
				e := newEnv(t, dir, cloud.Config{})
				e.tokens = secrets
				fill := strings.NewReplacer("@op", opID, "@dev", deviceID, "@enroll", enrollToken)
				body, ctype := []byte(fill.Replace(c.body)), "application/json"
				if c.raw {
					body, ctype = affine, "application/octet-stream"
				}
				path := fill.Replace(c.path)
				got, resp := e.do(p.name, c.method, path, body, ctype)
				if want := c.access.want(p, c.ok); got != want {
					t.Errorf("%s %s as %s = %d, want %d: %s", c.method, path, name, got, want, resp)
				}
			})
		}
	}
}
