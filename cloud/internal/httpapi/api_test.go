package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/mlfleet/mlfleet/cloud"
)

func decodeJSON[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

func seeded(t *testing.T, cfg cloud.Config) *env {
	e := newEnv(t, t.TempDir(), cfg)
	e.seed("a")
	e.user("admin", true, nil)
	return e
}

// storedState lists every model and manifest of account a/ma, to prove bad
// input stored nothing.
func storedState(t *testing.T, e *env) string {
	t.Helper()
	_, models := e.json("admin", "GET", v1+maA+"/models", nil)
	_, manifests := e.json("admin", "GET", v1+maA+"/manifests", nil)
	_, subs := e.json("admin", "GET", v1+"/subscriptions", nil)
	return string(models) + string(manifests) + string(subs)
}

func TestBadInputIsRefusedAndNothingStored(t *testing.T) {
	e := seeded(t, cloud.Config{MaxModelBytes: 1 << 20})
	before := storedState(t, e)
	cases := []struct {
		name, method, path, body, ctype string
		status                          int
		code, field                     string
	}{
		{"malformed JSON", "POST", v1 + "/subscriptions", `{"name": "x"`, "application/json", 400, "invalid_argument", ""},
		{"not JSON at all", "POST", v1 + "/subscriptions", `hello`, "application/json", 400, "invalid_argument", ""},
		{"empty body", "POST", v1 + "/subscriptions", ``, "application/json", 400, "invalid_argument", ""},
		{"trailing data", "POST", v1 + "/subscriptions", `{"name":"x"} {}`, "application/json", 400, "invalid_argument", ""},
		{"unknown field", "POST", v1 + "/subscriptions", `{"name":"x","color":"red"}`, "application/json", 400, "invalid_argument", "color"},
		{"wrong type", "POST", v1 + "/subscriptions", `{"name":7}`, "application/json", 400, "invalid_argument", "name"},
		{"name with spaces", "POST", v1 + "/subscriptions", `{"name":"my sub"}`, "application/json", 400, "invalid_argument", "name"},
		{"upper-case name", "POST", v1 + "/subscriptions", `{"name":"Prod"}`, "application/json", 400, "invalid_argument", "name"},
		{"bad account kind", "POST", v1 + subA + "/accounts", `{"name":"x","kind":"compute"}`, "application/json", 400, "invalid_argument", "kind"},
		{"workspace in model management account", "POST", v1 + maA + "/workspaces", `{"name":"x"}`, "application/json", 409, "failed_precondition", "account"},
		{"duplicate subscription", "POST", v1 + "/subscriptions", `{"name":"a"}`, "application/json", 409, "conflict", ""},
		{"empty model file", "POST", v1 + maA + "/models/x/versions", ``, "application/octet-stream", 400, "invalid_argument", "file"},
		{"non-ONNX declared ONNX", "POST", v1 + maA + "/models/x/versions?format=onnx", `this is not a model`, "application/octet-stream", 400, "invalid_argument", "format"},
		{"model name with spaces", "POST", v1 + maA + "/models/my%20model/versions", `abc`, "application/octet-stream", 400, "invalid_argument", "name"},
		{"unknown format", "POST", v1 + maA + "/models/x/versions?format=pickle", `abc`, "application/octet-stream", 400, "invalid_argument", "format"},
		{"unknown upload parameter", "POST", v1 + maA + "/models/x/versions?colour=red", `abc`, "application/octet-stream", 400, "invalid_argument", "colour"},
		{"bad tag", "POST", v1 + maA + "/models/x/versions?tag=novalue", `abc`, "application/octet-stream", 400, "invalid_argument", "tag"},
		{"oversize model", "POST", v1 + maA + "/models/x/versions", strings.Repeat("x", 1<<20+1), "application/octet-stream", 413, "too_large", ""},
		{"oversize JSON", "POST", v1 + "/subscriptions", `{"name":"x","description":"` + strings.Repeat("d", MaxJSONBody) + `"}`, "application/json", 413, "too_large", ""},
		{"manifest naming a missing model version", "POST", v1 + maA + "/manifests", manifestDoc("mf2", "m", 9), "application/json", 400, "invalid_argument", "models[0]"},
		{"manifest naming a missing model", "POST", v1 + maA + "/manifests", manifestDoc("mf2", "ghost", 1), "application/json", 400, "invalid_argument", "models[0]"},
		{"manifest with unknown field", "POST", v1 + maA + "/manifests", `{"apiVersion":"mlfleet.io/v1","name":"mf2","runtime":"onnx","models":[{"name":"m","version":1}],"extra":1}`, "application/json", 400, "invalid_argument", "extra"},
		{"manifest with bad runtime", "POST", v1 + maA + "/manifests", `{"apiVersion":"mlfleet.io/v1","name":"mf2","runtime":"java","models":[{"name":"m","version":1}]}`, "application/json", 400, "invalid_argument", "runtime"},
		{"manifest malformed", "POST", v1 + maA + "/manifests", `{"apiVersion":`, "application/json", 400, "invalid_argument", "apiVersion"},
		{"bad version", "GET", v1 + maA + "/models/m/versions/zero", ``, "", 400, "invalid_argument", "version"},
		{"bad limit", "GET", v1 + "/subscriptions?limit=100000", ``, "", 400, "invalid_argument", "limit"},
		{"bad page token", "GET", v1 + "/subscriptions?pageToken=zzz", ``, "", 400, "invalid_argument", "pageToken"},
		{"bad force", "DELETE", v1 + subA + "?force=maybe", ``, "", 400, "invalid_argument", "force"},
		{"bad role", "PUT", v1 + subA + "/roleAssignments/admin", `{"role":"God"}`, "application/json", 400, "invalid_argument", "role"},
		{"patch of a field the resource lacks", "PATCH", v1 + subA, `{"folder":"x"}`, "application/json", 400, "invalid_argument", "folder"},
		{"unknown route", "GET", v1 + "/nothing", ``, "", 404, "not_found", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := e.do("admin", c.method, c.path, []byte(c.body), c.ctype)
			if status != c.status {
				t.Fatalf("status %d, want %d: %s", status, c.status, body)
			}
			got := decodeJSON[cloud.ErrorBody](t, body)
			if got.Error.Code != c.code || got.Error.Field != c.field || got.Error.Message == "" {
				t.Errorf("error = %+v, want code %q field %q", got.Error, c.code, c.field)
			}
		})
	}
	if after := storedState(t, e); after != before {
		t.Errorf("bad input changed the stored state:\nbefore %s\nafter  %s", before, after)
	}
	// No upload left anything behind: only the seed's model blob exists.
	left, _ := filepath.Glob(filepath.Join(e.dir, "blobs", "tmp", "*"))
	blobs, _ := filepath.Glob(filepath.Join(e.dir, "blobs", "sha256", "*", "*"))
	if len(left) != 0 || len(blobs) != 1 {
		t.Errorf("after bad uploads: temp files %v, blobs %v; want none and the seed's one", left, blobs)
	}
}

func TestDeleteNonEmptyNeedsForce(t *testing.T) {
	e := seeded(t, cloud.Config{})
	for _, p := range []string{subA, eaA, wA, maA} {
		status, body := e.json("admin", "DELETE", v1+p, nil)
		if status != http.StatusConflict {
			t.Errorf("DELETE %s = %d, want 409: %s", p, status, body)
		}
	}
	// A model used by a manifest cannot go, even with the account's permission.
	if status, body := e.json("admin", "DELETE", v1+maA+"/models/m/versions/1", nil); status != http.StatusConflict ||
		!strings.Contains(string(body), "manifests/mf/versions/1") {
		t.Errorf("delete used model = %d %s, want 409 naming the manifest", status, body)
	}
	if status, _ := e.json("admin", "DELETE", v1+maA+"/manifests/mf/versions/1", nil); status != 204 {
		t.Fatalf("delete manifest = %d", status)
	}
	if status, _ := e.json("admin", "DELETE", v1+maA+"/models/m/versions/1", nil); status != 204 {
		t.Fatalf("delete unused model = %d", status)
	}
	if status, body := e.json("admin", "DELETE", v1+subA+"?force=true", nil); status != 204 {
		t.Fatalf("forced delete = %d %s", status, body)
	}
	for _, p := range []string{subA, eaA, wA + "/projects/p"} {
		if status, _ := e.json("admin", "GET", v1+p, nil); status != 404 {
			t.Errorf("GET %s after forced delete = %d, want 404", p, status)
		}
	}
}

func TestConcurrentRegistrationsGetDistinctVersions(t *testing.T) {
	e := seeded(t, cloud.Config{})
	const n = 50
	var wg sync.WaitGroup
	versions := make(chan int, n)
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			req, _ := http.NewRequest("POST", e.srv.URL+v1+maA+"/models/busy/versions?format=file", strings.NewReader(fmt.Sprintf("weights %d", i%5)))
			req.Header.Set("Authorization", "Bearer "+e.tokens["admin"])
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer resp.Body.Close()
			var m cloud.Model
			if resp.StatusCode != 201 || json.NewDecoder(resp.Body).Decode(&m) != nil {
				errs <- fmt.Sprintf("status %d", resp.StatusCode)
				return
			}
			versions <- m.Version
		}(i)
	}
	wg.Wait()
	close(versions)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var got []int
	for v := range versions {
		got = append(got, v)
	}
	sort.Ints(got)
	for i, v := range got {
		if v != i+1 {
			t.Fatalf("versions = %v, want 1..%d each once", got, n)
		}
	}
	// All 50 are listed, across pages.
	seen := map[int]bool{}
	token := ""
	for {
		_, body := e.json("admin", "GET", v1+maA+"/models/busy/versions?limit=7&pageToken="+token, nil)
		page := decodeJSON[cloud.Page[cloud.Model]](t, body)
		for _, m := range page.Items {
			if seen[m.Version] {
				t.Fatalf("version %d listed twice", m.Version)
			}
			seen[m.Version] = true
		}
		if page.NextPageToken == "" {
			break
		}
		token = page.NextPageToken
	}
	if len(seen) != n {
		t.Errorf("listed %d versions, want %d", len(seen), n)
	}
}

func TestModelRoundTrip(t *testing.T) {
	e := seeded(t, cloud.Config{})
	data := affineONNX(t)
	sum := sha256.Sum256(data)
	status, body := e.do("admin", "POST", v1+maA+"/models/affine/versions?description=d&tag=team=ml&runId=run-7", data, "application/octet-stream")
	if status != 201 {
		t.Fatalf("register = %d %s", status, body)
	}
	m := decodeJSON[cloud.Model](t, body)
	if m.Digest != "sha256:"+hex.EncodeToString(sum[:]) || m.Size != int64(len(data)) || m.Format != "onnx" || m.Version != 1 ||
		m.Tags["team"] != "ml" || m.RunID != "run-7" {
		t.Errorf("model = %+v", m)
	}
	if m.IO == nil || len(m.IO.Inputs) != 1 || m.IO.Inputs[0].Name != "x" || len(m.IO.Outputs) != 1 {
		t.Errorf("model IO = %+v, want input x and output y", m.IO)
	}
	status, got := e.do("admin", "GET", v1+maA+"/models/affine/versions/1/content", nil, "")
	if status != 200 || !bytes.Equal(got, data) {
		t.Errorf("download = %d, %d bytes; want the file back", status, len(got))
	}
	// A manifest without schema gets the model's.
	status, body = e.json("admin", "POST", v1+maA+"/manifests", json.RawMessage(manifestDoc("affine", "affine", 1)))
	if status != 201 {
		t.Fatalf("manifest = %d %s", status, body)
	}
	mf := decodeJSON[cloud.Manifest](t, body)
	if mf.Spec.Models[0].Digest != m.Digest || len(mf.Spec.Schema.Inputs) != 1 || mf.Spec.Schema.Inputs[0].Type != "float32" ||
		!strings.HasPrefix(mf.Digest, "sha256:") {
		t.Errorf("manifest = %+v", mf.Spec)
	}
	// The same document again is version 2 with the same digest.
	_, body = e.json("admin", "POST", v1+maA+"/manifests", json.RawMessage(manifestDoc("affine", "affine", 1)))
	mf2 := decodeJSON[cloud.Manifest](t, body)
	if mf2.Version != 2 || mf2.Digest != mf.Digest {
		t.Errorf("second manifest = v%d %s, want v2 %s", mf2.Version, mf2.Digest, mf.Digest)
	}
}

func TestListsShowOnlyWhatTheCallerMaySee(t *testing.T) {
	e := seeded(t, cloud.Config{})
	e.seed("b")
	e.user("b-owner", false, map[string]cloud.Role{"/subscriptions/b": cloud.Owner})
	_, body := e.json("b-owner", "GET", v1+"/subscriptions", nil)
	page := decodeJSON[cloud.Page[cloud.Subscription]](t, body)
	if len(page.Items) != 1 || page.Items[0].Name != "b" {
		t.Errorf("b-owner lists %+v, want only b", page.Items)
	}
	// Same message whether the resource exists or not: names do not leak.
	_, exists := e.json("b-owner", "GET", v1+subA, nil)
	_, ghost := e.json("b-owner", "GET", v1+"/subscriptions/ghost", nil)
	if strings.Replace(string(exists), "/subscriptions/a", "/subscriptions/ghost", 1) != string(ghost) {
		t.Errorf("answers differ for an existing and a missing subscription:\n%s\n%s", exists, ghost)
	}
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	e := newEnv(t, t.TempDir(), cloud.Config{})
	_, body := e.json("", "GET", v1+"/openapi.json", nil)
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi.json: %v %s", err, body[:min(len(body), 200)])
	}
	documented := map[string]bool{}
	for p, ops := range doc.Paths {
		for m := range ops {
			documented[strings.ToUpper(m)+" "+p] = true
		}
	}
	served := map[string]bool{}
	for _, r := range e.api.echo.Routes() {
		if r.Method == "echo_route_any" || strings.HasSuffix(r.Path, "*") {
			continue
		}
		served[r.Method+" "+openAPIPath(r.Path)] = true
	}
	for k := range served {
		if !documented[k] {
			t.Errorf("route %s is served but not in openapi.json", k)
		}
	}
	for k := range documented {
		if !served[k] {
			t.Errorf("openapi.json documents %s, which is not served", k)
		}
	}
	if len(served) < 40 {
		t.Errorf("only %d routes served", len(served))
	}
}

func TestTokens(t *testing.T) {
	e := seeded(t, cloud.Config{})
	e.user("dev", false, map[string]cloud.Role{subA: cloud.Reader})
	status, body := e.json("dev", "POST", v1+"/users/dev/tokens", map[string]any{"name": "laptop", "expiresInHours": 1})
	if status != 201 {
		t.Fatalf("create token = %d %s", status, body)
	}
	tok := decodeJSON[cloud.Token](t, body)
	if !strings.HasPrefix(tok.Secret, "mlf_") || tok.ExpiresAt == nil {
		t.Fatalf("token = %+v", tok)
	}
	_, list := e.json("dev", "GET", v1+"/users/dev/tokens", nil)
	if strings.Contains(string(list), tok.Secret) || strings.Contains(string(list), "hash") {
		t.Errorf("token list leaks secrets: %s", list)
	}
	e.tokens["laptop"] = tok.Secret
	if status, _ := e.json("laptop", "GET", v1+"/whoami", nil); status != 200 {
		t.Errorf("new token whoami = %d", status)
	}
	if status, _ := e.json("dev", "DELETE", v1+"/users/dev/tokens/"+tok.ID, nil); status != 204 {
		t.Errorf("revoke = %d", status)
	}
	if status, _ := e.json("laptop", "GET", v1+"/whoami", nil); status != 401 {
		t.Errorf("revoked token whoami = %d, want 401", status)
	}
	e.tokens["forged"] = tok.Secret[:len(tok.Secret)-2] + "xx"
	if status, _ := e.json("forged", "GET", v1+"/whoami", nil); status != 401 {
		t.Errorf("forged token = %d, want 401", status)
	}
	// The stored file never holds a secret in clear.
	raw, err := os.ReadFile(filepath.Join(e.dir, "cloud.db"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(tok.Secret)) {
		t.Error("token secret stored in clear")
	}
}
