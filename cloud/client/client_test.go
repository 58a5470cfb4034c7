package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/manifest"
	"github.com/mlfleet/mlfleet/shared/twin"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestNew(t *testing.T) {
	tests := []struct {
		base, token string
		wantErr     bool
	}{
		{"http://127.0.0.1:8480", "t", false},
		{"https://cloud.example/prefix/", "", false},
		{"", "t", true},
		{"ftp://x", "t", true},
		{"http://", "t", true},
		{"http://h?x=1", "t", true},
		{"::bad", "t", true},
		{"http://h", "a\nb", true},
	}
	for _, tt := range tests {
		_, err := New(tt.base, tt.token)
		if (err != nil) != tt.wantErr {
			t.Errorf("New(%q, %q) err = %v, want error %v", tt.base, tt.token, err, tt.wantErr)
		}
		if err != nil && errclass.ClassOf(err) != errclass.InvalidArgument {
			t.Errorf("New(%q) class = %s", tt.base, errclass.ClassOf(err))
		}
	}
}

func TestErrorDecoding(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		wantClass errclass.Class
		wantField string
		wantMsg   string
	}{
		{"api invalid", 400, `{"error":{"code":"invalid_argument","message":"name \"A\" is invalid","field":"name"}}`, errclass.InvalidArgument, "name", `name "A" is invalid`},
		{"api not found", 404, `{"error":{"code":"not_found","message":"subscription \"x\" not found"}}`, errclass.NotFound, "", `subscription "x" not found`},
		{"api too large", 413, `{"error":{"code":"too_large","message":"too big"}}`, errclass.TooLarge, "", "too big"},
		{"api precondition", 409, `{"error":{"code":"failed_precondition","message":"in use"}}`, errclass.FailedPrecondition, "", "in use"},
		{"unknown code falls back to status", 403, `{"error":{"code":"weird","message":"no"}}`, errclass.PermissionDenied, "", "no"},
		{"plain text body", 502, "bad gateway", errclass.Unavailable, "", "HTTP 502: bad gateway"},
		{"empty body", 401, "", errclass.Unauthenticated, "", "HTTP 401: Unauthorized"},
		{"internal", 500, `{"error":{"code":"internal","message":"boom"}}`, errclass.Unknown, "", "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			c, err := New(srv.URL, "tok")
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.GetSubscription(context.Background(), "x")
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if ae.Status != tt.status {
				t.Errorf("Status = %d, want %d", ae.Status, tt.status)
			}
			if got := errclass.ClassOf(fmt.Errorf("wrapped: %w", err)); got != tt.wantClass {
				t.Errorf("ClassOf = %s, want %s", got, tt.wantClass)
			}
			if got := errclass.FieldOf(err); got != tt.wantField {
				t.Errorf("FieldOf = %q, want %q", got, tt.wantField)
			}
			if ae.Error() != tt.wantMsg {
				t.Errorf("Error() = %q, want %q", ae.Error(), tt.wantMsg)
			}
		})
	}
}

// recorder is a fake server that writes down every request it gets.
type recorder struct {
	mu  sync.Mutex
	log bytes.Buffer
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	q := r.URL.Query()
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var qs []string
	for _, k := range keys {
		for _, v := range q[k] {
			qs = append(qs, k+"="+v)
		}
	}
	fmt.Fprintf(&rec.log, "%s %s", r.Method, r.URL.EscapedPath())
	if len(qs) > 0 {
		fmt.Fprintf(&rec.log, " ?%s", strings.Join(qs, "&"))
	}
	fmt.Fprintf(&rec.log, "\n  auth=%q type=%q length=%d\n", r.Header.Get("Authorization"), r.Header.Get("Content-Type"), r.ContentLength)
	if len(body) > 0 {
		fmt.Fprintf(&rec.log, "  body=%s\n", body)
	}
	rec.mu.Unlock()
	switch {
	case r.Method == "DELETE":
		w.WriteHeader(http.StatusNoContent)
	case strings.HasSuffix(r.URL.Path, "/content"):
		w.Header().Set("ETag", `"sha256:`+hexSHA([]byte("model-bytes"))+`"`)
		io.WriteString(w, "model-bytes")
	case r.Method == "POST":
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"done":true}`)
	default:
		io.WriteString(w, `{"done":true}`)
	}
}

func hexSHA(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// TestRequestsGolden pins the wire format of every call: method, escaped
// path, query, headers and body.
func TestRequestsGolden(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	c, err := New(srv.URL+"/", "secret-token")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	desc := "new words"
	tags := map[string]string{"a": "1"}
	calls := []func() error{
		func() error { return c.Health(ctx) },
		func() error { _, err := c.WhoAmI(ctx); return err },
		func() error {
			_, err := c.CreateUser(ctx, UserCreate{Name: "ann", Email: "ann@example.org"})
			return err
		},
		func() error { _, err := c.ListUsers(ctx, ListOptions{Limit: 5, PageToken: "p2"}); return err },
		func() error { _, err := c.GetUser(ctx, "ann"); return err },
		func() error { return c.DeleteUser(ctx, "ann") },
		func() error {
			_, err := c.CreateToken(ctx, "ann", TokenCreate{Name: "ci", ExpiresInHours: 24})
			return err
		},
		func() error { _, err := c.ListTokens(ctx, "ann", ListOptions{}); return err },
		func() error { return c.DeleteToken(ctx, "ann", "tok1") },
		func() error {
			_, err := c.CreateSubscription(ctx, SubscriptionCreate{Name: "acme", Description: "d"})
			return err
		},
		func() error { _, err := c.ListSubscriptions(ctx, ListOptions{}); return err },
		func() error { _, err := c.GetSubscription(ctx, "acme"); return err },
		func() error { _, err := c.UpdateSubscription(ctx, "acme", Update{Description: &desc}); return err },
		func() error { return c.DeleteSubscription(ctx, "acme", true) },
		func() error {
			_, err := c.CreateAccount(ctx, "acme", AccountCreate{Name: "mm", Kind: cloud.ModelManagement})
			return err
		},
		func() error { _, err := c.ListAccounts(ctx, "acme", ListOptions{}); return err },
		func() error { _, err := c.GetAccount(ctx, "acme", "mm"); return err },
		func() error { _, err := c.UpdateAccount(ctx, "acme", "mm", Update{}); return err },
		func() error { return c.DeleteAccount(ctx, "acme", "mm", false) },
		func() error { _, err := c.CreateWorkspace(ctx, "acme", "ex", WorkspaceCreate{Name: "ws"}); return err },
		func() error { _, err := c.ListWorkspaces(ctx, "acme", "ex", ListOptions{}); return err },
		func() error { _, err := c.GetWorkspace(ctx, "acme", "ex", "ws"); return err },
		func() error {
			_, err := c.UpdateWorkspace(ctx, "acme", "ex", "ws", Update{Description: &desc})
			return err
		},
		func() error { return c.DeleteWorkspace(ctx, "acme", "ex", "ws", false) },
		func() error {
			_, err := c.CreateProject(ctx, "acme", "ex", "ws", ProjectCreate{Name: "p", Folder: "/src/p", GitRemote: "git@h:p.git"})
			return err
		},
		func() error { _, err := c.ListProjects(ctx, "acme", "ex", "ws", ListOptions{}); return err },
		func() error { _, err := c.GetProject(ctx, "acme", "ex", "ws", "p"); return err },
		func() error {
			_, err := c.UpdateProject(ctx, "acme", "ex", "ws", "p", ProjectUpdate{Description: &desc})
			return err
		},
		func() error { return c.DeleteProject(ctx, "acme", "ex", "ws", "p", false) },
		func() error {
			_, err := c.ListRoleAssignments(ctx, Scope{Subscription: "acme"}, ListOptions{})
			return err
		},
		func() error {
			_, err := c.AssignRole(ctx, Scope{Subscription: "acme", Account: "ex", Workspace: "ws"}, "ann", cloud.Reader)
			return err
		},
		func() error { return c.RemoveRole(ctx, Scope{Subscription: "acme", Account: "ex"}, "ann") },
		func() error {
			_, err := c.RegisterModel(ctx, "acme", "mm", "iris", ModelUpload{
				Body: strings.NewReader("0123456789"), Size: 10, Format: "onnx", Description: "first one",
				Tags: map[string]string{"team": "ml", "stage": "dev"}, RunID: "run-1",
			})
			return err
		},
		func() error { _, err := c.ListModels(ctx, "acme", "mm", "iris", ListOptions{}); return err },
		func() error { _, err := c.ListModelVersions(ctx, "acme", "mm", "iris", ListOptions{}); return err },
		func() error { _, err := c.GetModel(ctx, "acme", "mm", "iris", 2); return err },
		func() error {
			_, err := c.UpdateModel(ctx, "acme", "mm", "iris", 2, ModelUpdate{Description: &desc, Tags: &tags})
			return err
		},
		func() error { return c.DeleteModel(ctx, "acme", "mm", "iris", 2) },
		func() error { _, err := c.DownloadModel(ctx, "acme", "mm", "iris", 2, io.Discard, nil); return err },
		func() error {
			_, err := c.CreateManifest(ctx, "acme", "mm", &manifest.Manifest{
				APIVersion: manifest.APIVersion, Name: "iris", Runtime: manifest.RuntimeONNX,
				Models: []manifest.ModelRef{{Name: "iris", Version: 2}},
				Schema: manifest.Schema{Inputs: []manifest.Field{{Name: "x", Type: manifest.TypeFloat32}}},
			})
			return err
		},
		func() error { _, err := c.ListManifests(ctx, "acme", "mm", "", ListOptions{}); return err },
		func() error { _, err := c.ListManifestVersions(ctx, "acme", "mm", "iris", ListOptions{}); return err },
		func() error { _, err := c.GetManifest(ctx, "acme", "mm", "iris", 1); return err },
		func() error { return c.DeleteManifest(ctx, "acme", "mm", "iris", 1) },
		func() error {
			_, err := c.CreateEnrollmentToken(ctx, "acme", "mm", EnrollmentTokenCreate{Labels: map[string]string{"site": "paris"}, ExpiresInHours: 1.5})
			return err
		},
		func() error {
			_, err := c.CreateEnrollmentToken(ctx, "acme", "mm", EnrollmentTokenCreate{})
			return err
		},
		func() error {
			_, err := c.Enroll(ctx, cloud.EnrollRequest{Token: "mle_1_s", Name: "pi-1"})
			return err
		},
		func() error {
			_, err := c.Enroll(ctx, cloud.EnrollRequest{Token: "mle_2_s", DeviceID: "d-1", Credential: "mld_d-1_c"})
			return err
		},
		func() error {
			_, err := c.ListDevices(ctx, "acme", "mm", map[string]string{"site": "paris", "arch": "arm64"}, ListOptions{Limit: 10})
			return err
		},
		func() error { _, err := c.ListDevices(ctx, "acme", "mm", nil, ListOptions{}); return err },
		func() error { _, err := c.GetDevice(ctx, "acme", "mm", "d-1"); return err },
		func() error {
			_, err := c.UpdateDeviceLabels(ctx, "acme", "mm", "d-1", map[string]string{"site": "lyon"})
			return err
		},
		func() error { _, err := c.UpdateDeviceLabels(ctx, "acme", "mm", "d-1", nil); return err },
		func() error { return c.DeleteDevice(ctx, "acme", "mm", "d-1") },
		func() error {
			_, err := c.SetDesiredServices(ctx, "acme", "mm", "d-1", []twin.ServiceSpec{{Name: "iris", Image: "reg/iris@sha256:00", Port: 8080}})
			return err
		},
		func() error { _, err := c.SetDesiredServices(ctx, "acme", "mm", "d-1", nil); return err },
		func() error { _, err := c.ListOperations(ctx, "acme", "mm", ListOptions{}); return err },
		func() error { _, err := c.GetOperation(ctx, "acme", "mm", "op/1"); return err },
		func() error { _, err := c.WaitOperation(ctx, "acme", "mm", "op-2", time.Millisecond); return err },
		func() error {
			_, err := c.CreateImage(ctx, "acme", "mm", cloud.CreateImage{Name: "iris", Manifest: "iris:1", Tag: "v1"})
			return err
		},
		func() error { _, err := c.ListImages(ctx, "acme", "mm", "iris", ListOptions{Limit: 3}); return err },
		func() error { _, err := c.ListImageVersions(ctx, "acme", "mm", "iris", ListOptions{}); return err },
		func() error { _, err := c.GetImage(ctx, "acme", "mm", "iris", 2); return err },
		func() error { return c.DeleteImage(ctx, "acme", "mm", "iris", 2) },
		func() error {
			_, err := c.CreateEnvironment(ctx, "acme", "mm", EnvironmentCreate{Name: "paris", Selector: map[string]string{"site": "paris"}, Description: "shops"})
			return err
		},
		func() error {
			_, err := c.CreateEnvironment(ctx, "acme", "mm", EnvironmentCreate{Name: "lab", Device: "d-1"})
			return err
		},
		func() error { _, err := c.ListEnvironments(ctx, "acme", "mm", ListOptions{}); return err },
		func() error { _, err := c.GetEnvironment(ctx, "acme", "mm", "paris"); return err },
		func() error { return c.DeleteEnvironment(ctx, "acme", "mm", "paris") },
		func() error {
			_, err := c.CreateService(ctx, "acme", "mm", cloud.CreateServiceRequest{Name: "iris", Environment: "paris", Image: "iris:2",
				Port: 8080, Env: map[string]string{"LOG": "debug"},
				Rollout: &cloud.RolloutSpec{Batches: []cloud.BatchSpec{{Percent: 10}, {Count: 5}}, SuccessThreshold: 0.9,
					SoakSeconds: 300, DeviceTimeoutSeconds: 600, ErrorThreshold: 0.2, MaxUnavailable: 2}})
			return err
		},
		func() error {
			_, err := c.CreateService(ctx, "acme", "mm", cloud.CreateServiceRequest{Name: "min", Environment: "lab", Image: "iris:1"})
			return err
		},
		func() error { _, err := c.ListServices(ctx, "acme", "mm", ListOptions{}); return err },
		func() error { _, err := c.GetService(ctx, "acme", "mm", "iris"); return err },
		func() error { return c.DeleteService(ctx, "acme", "mm", "iris") },
		func() error {
			_, err := c.StartRollout(ctx, "acme", "mm", "iris", cloud.RolloutRequest{Image: "iris:3",
				RolloutSpec: cloud.RolloutSpec{Batches: []cloud.BatchSpec{{Count: 1}}, SoakSeconds: 60}})
			return err
		},
		func() error { _, err := c.RollbackService(ctx, "acme", "mm", "iris"); return err },
		func() error { _, err := c.ListRollouts(ctx, "acme", "mm", "iris", ListOptions{}); return err },
		func() error { _, err := c.GetRollout(ctx, "acme", "mm", "iris", "000002"); return err },
		func() error { _, err := c.PauseRollout(ctx, "acme", "mm", "iris", "000002"); return err },
		func() error { _, err := c.ResumeRollout(ctx, "acme", "mm", "iris", "000002"); return err },
		func() error { _, err := c.AbortRollout(ctx, "acme", "mm", "iris", "000002"); return err },
	}
	for i, call := range calls {
		if err := call(); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	checkGolden(t, "requests.golden", rec.log.Bytes())
}

// gatedReader gives first, then blocks until gate closes, then gives rest.
type gatedReader struct {
	parts [][]byte
	gate  <-chan struct{}
	ctx   context.Context
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if len(g.parts) == 0 {
		return 0, io.EOF
	}
	if len(g.parts) == 1 && g.gate != nil {
		select {
		case <-g.gate:
		case <-g.ctx.Done():
			return 0, g.ctx.Err()
		}
		g.gate = nil
	}
	n := copy(p, g.parts[0])
	g.parts[0] = g.parts[0][n:]
	if len(g.parts[0]) == 0 {
		g.parts = g.parts[1:]
	}
	return n, nil
}

// TestRegisterModelStreams proves the upload is streamed: the reader holds
// back its second half until the server has received the first half, which
// could never happen if the client buffered the body first.
func TestRegisterModelStreams(t *testing.T) {
	first := bytes.Repeat([]byte("a"), 300<<10)
	second := bytes.Repeat([]byte("b"), 200<<10)
	gate := make(chan struct{})
	var gotLen int64
	var gotSum string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotLen = r.ContentLength
		if r.TransferEncoding != nil {
			t.Errorf("TransferEncoding = %v, want none (known size)", r.TransferEncoding)
		}
		h := sha256.New()
		if _, err := io.CopyN(h, r.Body, int64(len(first))); err != nil {
			t.Errorf("read first half: %v", err)
		}
		close(gate)
		io.Copy(h, r.Body)
		gotSum = "sha256:" + hex.EncodeToString(h.Sum(nil))
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"name":"m","version":1,"digest":%q}`, gotSum)
	}))
	defer srv.Close()
	c, err := New(srv.URL, "tok")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var calls int
	var last int64
	total := int64(len(first) + len(second))
	m, err := c.RegisterModel(ctx, "s", "a", "m", ModelUpload{
		Body: &gatedReader{parts: [][]byte{first, second}, gate: gate, ctx: ctx},
		Size: total,
		Progress: func(done, tot int64) {
			calls++
			if done < last || tot != total {
				t.Errorf("progress(%d, %d) after %d", done, tot, last)
			}
			last = done
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "sha256:" + hexSHA(append(append([]byte{}, first...), second...))
	if m.Digest != want || gotSum != want {
		t.Errorf("digest = %s (server %s), want %s", m.Digest, gotSum, want)
	}
	if gotLen != total || last != total || calls == 0 {
		t.Errorf("Content-Length %d, last progress %d (%d calls), want %d", gotLen, last, calls, total)
	}
}

func TestRegisterModelShortBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{}`)
	}))
	defer srv.Close()
	c, _ := New(srv.URL, "tok")
	_, err := c.RegisterModel(context.Background(), "s", "a", "m", ModelUpload{Body: strings.NewReader("abc"), Size: 10})
	if err == nil {
		t.Fatal("upload of 3 bytes announced as 10 succeeded")
	}
}

func TestDownloadModel(t *testing.T) {
	content := []byte("the model file")
	tests := []struct {
		name    string
		etag    string
		wantErr bool
	}{
		{"matching digest", `"sha256:` + hexSHA(content) + `"`, false},
		{"no etag", "", false},
		{"wrong digest", `"sha256:` + hexSHA([]byte("other")) + `"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.etag != "" {
					w.Header().Set("ETag", tt.etag)
				}
				w.Write(content)
			}))
			defer srv.Close()
			c, _ := New(srv.URL, "tok")
			var buf bytes.Buffer
			var last int64
			d, err := c.DownloadModel(context.Background(), "s", "a", "m", 1, &buf, func(done, total int64) { last = done })
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if !bytes.Equal(buf.Bytes(), content) || d.Size != int64(len(content)) || d.Digest != "sha256:"+hexSHA(content) || last != d.Size {
				t.Errorf("got %q %+v last=%d", buf.Bytes(), d, last)
			}
		})
	}
}

func TestListAll(t *testing.T) {
	tests := []struct {
		name    string
		pages   map[string]string // pageToken -> answer
		want    []string
		wantErr bool
	}{
		{"one page", map[string]string{"": `{"items":[{"name":"a"}]}`}, []string{"a"}, false},
		{"three pages", map[string]string{
			"":   `{"items":[{"name":"a"},{"name":"b"}],"nextPageToken":"p2"}`,
			"p2": `{"items":[{"name":"c"}],"nextPageToken":"p3"}`,
			"p3": `{"items":[]}`,
		}, []string{"a", "b", "c"}, false},
		{"repeated token", map[string]string{
			"":   `{"items":[{"name":"a"}],"nextPageToken":"p2"}`,
			"p2": `{"items":[{"name":"b"}],"nextPageToken":"p2"}`,
		}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, tt.pages[r.URL.Query().Get("pageToken")])
			}))
			defer srv.Close()
			c, _ := New(srv.URL, "tok")
			subs, err := c.ListAllSubscriptions(context.Background())
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			var got []string
			for _, s := range subs {
				got = append(got, s.Name)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestJSONTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // answer only when the client gives up
	}))
	defer srv.Close()
	c, _ := New(srv.URL, "tok", WithTimeout(20*time.Millisecond))
	_, err := c.WhoAmI(context.Background())
	if errclass.ClassOf(err) != errclass.Unavailable {
		t.Fatalf("err = %v (class %s), want unavailable", err, errclass.ClassOf(err))
	}
}

func TestNetworkErrorIsUnavailable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c, _ := New(url, "tok")
	err := c.Health(context.Background())
	if errclass.ClassOf(err) != errclass.Unavailable {
		t.Fatalf("err = %v (class %s), want unavailable", err, errclass.ClassOf(err))
	}
}

func TestScopePath(t *testing.T) {
	tests := []struct {
		s    Scope
		want string
	}{
		{Scope{Subscription: "s"}, "/subscriptions/s"},
		{Scope{Subscription: "s", Account: "a"}, "/subscriptions/s/accounts/a"},
		{Scope{Subscription: "s", Account: "a", Workspace: "w"}, "/subscriptions/s/accounts/a/workspaces/w"},
		{Scope{Subscription: "s/x"}, "/subscriptions/s%2Fx"},
	}
	for _, tt := range tests {
		if got := tt.s.Path(); got != tt.want {
			t.Errorf("%+v.Path() = %q, want %q", tt.s, got, tt.want)
		}
	}
	if err := (Scope{Workspace: "w"}).check(); err == nil {
		t.Error("scope without subscription accepted")
	}
	if err := (Scope{Subscription: "s", Workspace: "w"}).check(); errclass.FieldOf(err) != "account" {
		t.Errorf("workspace without account: %v", err)
	}
}

func FuzzDecodeError(f *testing.F) {
	f.Add(400, []byte(`{"error":{"code":"invalid_argument","message":"m","field":"name"}}`))
	f.Add(404, []byte(`{"error":{"code":"not_found","message":"gone"}}`))
	f.Add(500, []byte(`not json`))
	f.Add(409, []byte(`{"error":null}`))
	f.Add(413, []byte(``))
	f.Add(0, []byte(`{"error":{"code":123}}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		e := decodeError(status, body)
		if e == nil || e.Status != status || e.Code == "" {
			t.Fatalf("decodeError(%d, %q) = %+v", status, body, e)
		}
		if e.Error() == "" {
			t.Fatal("empty message")
		}
		c := errclass.ClassOf(e)
		if c == "" {
			t.Fatal("no class")
		}
		if errclass.FieldOf(e) != e.Field {
			t.Fatalf("FieldOf = %q, want %q", errclass.FieldOf(e), e.Field)
		}
	})
}

// BenchmarkRegisterModel measures streamed upload throughput to a local
// server that discards the body.
func BenchmarkRegisterModel(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{}`)
	}))
	defer srv.Close()
	c, _ := New(srv.URL, "tok")
	data := bytes.Repeat([]byte("x"), 16<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := c.RegisterModel(context.Background(), "s", "a", "m", ModelUpload{Body: bytes.NewReader(data), Size: int64(len(data))}); err != nil {
			b.Fatal(err)
		}
	}
}

// checkGolden compares got with testdata/name; -update rewrites the file.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	golden := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s (run with -update after checking):\n%s", golden, got)
	}
}
