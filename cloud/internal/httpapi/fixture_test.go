package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/internal/blobstore"
	"github.com/mlfleet/mlfleet/cloud/internal/boltstore"
)

// env is a real API over a real store in a temp dir.
type env struct {
	t      *testing.T
	dir    string
	store  *boltstore.Store
	svc    *cloud.Service
	api    *API
	srv    *httptest.Server
	tokens map[string]string // user -> token secret
}

func newEnv(t *testing.T, dir string, cfg cloud.Config) *env {
	t.Helper()
	store, err := boltstore.Open(filepath.Join(dir, "cloud.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	blobs, err := blobstore.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	svc := cloud.NewService(store, blobs, cfg)
	svc.SetImageBuilder(queuedOnly{t}, cloud.RegistryTarget{Host: "127.0.0.1:1", Insecure: true})
	api := New(svc, Options{})
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return &env{t: t, dir: dir, store: store, svc: svc, api: api, srv: srv, tokens: map[string]string{}}
}

func adminCtx() context.Context {
	return cloud.WithPrincipal(context.Background(), &cloud.Principal{User: cloud.User{Name: "admin", Admin: true}})
}

func must[T any](t *testing.T) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// do sends a request as user ("" = no token) and returns status and body.
func (e *env) do(user, method, path string, body []byte, contentType string) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+e.tokens[user])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (e *env) json(user, method, path string, v any) (int, []byte) {
	e.t.Helper()
	var b []byte
	if v != nil {
		var err error
		if b, err = json.Marshal(v); err != nil {
			e.t.Fatal(err)
		}
	}
	return e.do(user, method, path, b, "application/json")
}

func affineONNX(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../../modelfile/testdata/affine.onnx")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seed creates, in subscription sub: experimentation account ea with
// workspace w and project p; model management account ma with model m v1
// (affine.onnx) and manifest mf v1 using it.
func (e *env) seed(sub string) {
	t := e.t
	t.Helper()
	ctx := adminCtx()
	must[*cloud.Subscription](t)(e.svc.CreateSubscription(ctx, cloud.Subscription{Name: sub}))
	must[*cloud.Account](t)(e.svc.CreateAccount(ctx, sub, cloud.Account{Name: "ea", Kind: cloud.Experimentation}))
	must[*cloud.Account](t)(e.svc.CreateAccount(ctx, sub, cloud.Account{Name: "ma", Kind: cloud.ModelManagement}))
	must[*cloud.Workspace](t)(e.svc.CreateWorkspace(ctx, sub, "ea", cloud.Workspace{Name: "w"}))
	must[*cloud.Project](t)(e.svc.CreateProject(ctx, sub, "ea", "w", cloud.Project{Name: "p", Folder: "proj"}))
	must[*cloud.Model](t)(e.svc.RegisterModel(ctx, cloud.RegisterModel{Subscription: sub, Account: "ma", Name: "m", Body: bytes.NewReader(affineONNX(t))}))
	must[*cloud.Manifest](t)(e.svc.CreateManifest(ctx, sub, "ma", []byte(manifestDoc("mf", "m", 1))))
}

func manifestDoc(name, model string, version int) string {
	return `{"apiVersion":"mlfleet.io/v1","name":"` + name + `","runtime":"onnx","models":[{"name":"` + model + `","version":` +
		strconv.Itoa(version) + `}]}`
}

// user creates a user with the given grants and a token for it.
func (e *env) user(name string, admin bool, grants map[string]cloud.Role) {
	t := e.t
	t.Helper()
	ctx := adminCtx()
	if name != "admin" || admin {
		if _, err := e.svc.CreateUser(ctx, cloud.User{Name: name, Admin: admin}); err != nil && !strings.Contains(err.Error(), "exists") {
			t.Fatal(err)
		}
	}
	for scope, role := range grants {
		must[*cloud.RoleAssignment](t)(e.svc.AssignRole(ctx, scope, name, role))
	}
	tok := must[*cloud.Token](t)(e.svc.CreateToken(ctx, name, "test", 0))
	e.tokens[name] = tok.Secret
}

// queuedOnly is the image builder of API tests: they check that builds are
// accepted and queued; operations do not run here (cloud/server's tests run
// real builds).
type queuedOnly struct{ t *testing.T }

func (q queuedOnly) Build(context.Context, cloud.BuildRequest) (*cloud.BuildResult, error) {
	q.t.Error("API tests do not run image builds")
	return nil, context.Canceled
}

// imageRef is the reference putImage gives an image version.
func imageRef(name string, v int) string {
	return "127.0.0.1:1/a/ma/" + name + "@sha256:" + strings.Repeat(strconv.Itoa(v%10), 64)
}

// putImage stores an image record as a finished build would.
func (e *env) putImage(sub, acct, name string, v int) {
	e.t.Helper()
	img := cloud.Image{Meta: cloud.Meta{Path: cloud.ImagePath(sub, acct, name, v)}, Subscription: sub, Account: acct, Name: name, Version: v,
		Digest: "sha256:" + strings.Repeat(strconv.Itoa(v%10), 64), Reference: imageRef(name, v)}
	err := e.store.Update(context.Background(), func(tx cloud.Tx) error { return tx.Create(img.Path, &img) })
	if err != nil {
		e.t.Fatal(err)
	}
}

// putService stores a service in account a/ma as a finished rollout leaves it.
func (e *env) putService(svc cloud.ScoringService) {
	e.t.Helper()
	svc.Subscription, svc.Account = "a", "ma"
	svc.Path = cloud.ServicePath("a", "ma", svc.Name)
	err := e.store.Update(context.Background(), func(tx cloud.Tx) error { return tx.Create(svc.Path, &svc) })
	if err != nil {
		e.t.Fatal(err)
	}
}
