package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/client"
	"github.com/mlfleet/mlfleet/cloud/server"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// cloudHarness is a real cloud server in-process plus a CLI environment
// whose config file lives in a temp dir.
type cloudHarness struct {
	t       *testing.T
	url     string
	token   string // the admin's
	dir     string // scratch dir
	cfgPath string
	env     map[string]string
	srv     *server.Server
}

// startCloud starts a cloud on 127.0.0.1:0 with a fresh data dir and an
// initialized admin, and stops it when the test ends.
func startCloud(t *testing.T) *cloudHarness {
	t.Helper()
	return startCloudWithScorers(t, "")
}

// startCloudWithScorers is startCloud whose image builder uses the scorer
// binaries in scorerDir ("": the server's default, none in tests).
func startCloudWithScorers(t *testing.T, scorerDir string) *cloudHarness {
	t.Helper()
	dataDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	tok, err := server.Init(ctx, dataDir, "admin", "admin@example.org", "")
	if err != nil {
		cancel()
		t.Fatalf("init cloud: %v", err)
	}
	srv, err := server.New(server.Config{DataDir: dataDir, Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler), ScorerDir: scorerDir})
	if err != nil {
		cancel()
		t.Fatalf("new cloud: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("cloud Run: %v", err)
		}
	})
	dir := t.TempDir()
	h := &cloudHarness{t: t, url: srv.URL(), token: tok.Secret, dir: dir, cfgPath: filepath.Join(dir, "cfg", "config.json"), srv: srv}
	h.env = map[string]string{"MLFLEET_CONFIG": h.cfgPath, "HOME": dir}
	return h
}

// run runs the CLI in-process with stdin and returns stdout, stderr and the exit code.
func (h *cloudHarness) run(stdin string, args ...string) (string, string, int) {
	h.t.Helper()
	var out, errb bytes.Buffer
	env := Env{
		Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return h.env[k] },
	}
	code := Main(context.Background(), args, env)
	return out.String(), errb.String(), code
}

// must runs the CLI and fails the test unless it exits 0.
func (h *cloudHarness) must(args ...string) string {
	h.t.Helper()
	out, errOut, code := h.run("", args...)
	if code != 0 {
		h.t.Fatalf("mlfleet %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// login logs the harness's CLI in as the admin.
func (h *cloudHarness) login() {
	h.t.Helper()
	h.must("login", "--cloud", h.url, "--token", h.token)
}

func TestLogin(t *testing.T) {
	h := startCloud(t)
	tokenFile := filepath.Join(h.dir, "admin.token")
	if err := os.WriteFile(tokenFile, []byte(h.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		stdin    string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"token flag", "", []string{"login", "--cloud", h.url, "--token", h.token}, 0, ""},
		{"token file", "", []string{"login", "--cloud", h.url, "--token-file", tokenFile}, 0, ""},
		{"token on stdin", h.token + "\n", []string{"login", "--cloud", h.url}, 0, ""},
		{"wrong token", "", []string{"login", "--cloud", h.url, "--token", "mlf_wrong"}, 1, "error: check token"},
		{"empty stdin", "", []string{"login", "--cloud", h.url}, 2, "no token in stdin"},
		{"no cloud", "", []string{"login", "--token", h.token}, 2, "no cloud URL"},
		{"both token sources", "", []string{"login", "--cloud", h.url, "--token", "a", "--token-file", tokenFile}, 2, "not both"},
		{"missing token file", "", []string{"login", "--cloud", h.url, "--token-file", filepath.Join(h.dir, "nope")}, 2, "--token-file"},
		{"bad cloud URL", "", []string{"login", "--cloud", "ftp://x", "--token", "t"}, 2, "(field: cloud)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.RemoveAll(filepath.Dir(h.cfgPath))
			out, errOut, code := h.run(tt.stdin, tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, out, errOut)
			}
			if !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("stderr %q does not contain %q", errOut, tt.wantErr)
			}
			fi, statErr := os.Stat(h.cfgPath)
			if tt.wantCode != 0 {
				if statErr == nil {
					t.Errorf("failed login wrote %s", h.cfgPath)
				}
				return
			}
			if statErr != nil {
				t.Fatalf("config not written: %v", statErr)
			}
			if perm := fi.Mode().Perm(); perm != 0o600 {
				t.Errorf("config mode %o, want 600", perm)
			}
			cfg, err := loadConfig(h.cfgPath)
			if err != nil || cfg.Cloud != h.url || cfg.Token != h.token {
				t.Errorf("config = %+v, %v", cfg, err)
			}
			if !strings.Contains(out, "as admin") {
				t.Errorf("stdout %q does not name the user", out)
			}
		})
	}
}

func TestSessionCommands(t *testing.T) {
	h := startCloud(t)
	h.login()
	if out := h.must("whoami"); !strings.Contains(out, "User: admin (admin)") {
		t.Errorf("whoami = %q", out)
	}
	var who client.WhoAmI
	if err := json.Unmarshal([]byte(h.must("whoami", "-o", "json")), &who); err != nil || who.User.Name != "admin" {
		t.Errorf("whoami -o json: %+v, %v", who, err)
	}
	h.must("config", "set", "subscription", "acme")
	h.must("config", "set", "account", "models")
	if got := h.must("config", "get", "subscription"); got != "acme\n" {
		t.Errorf("config get subscription = %q", got)
	}
	// Flags override the config file.
	if got := h.must("config", "get", "account", "--cloud", "http://127.0.0.1:1"); got != "models\n" {
		t.Errorf("config get account = %q", got)
	}
	var shown struct {
		Path string `json:"path"`
		Config
	}
	if err := json.Unmarshal([]byte(h.must("config", "show", "-o", "json")), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.Path != h.cfgPath || shown.Subscription != "acme" || shown.Account != "models" || strings.Contains(shown.Token, h.token) {
		t.Errorf("config show = %+v", shown)
	}
	// Environment overrides the file.
	h.env["MLFLEET_TOKEN"] = "mlf_bogus"
	if _, errOut, code := h.run("", "whoami"); code != 1 || !strings.HasPrefix(errOut, "error: ") {
		t.Errorf("whoami with bad MLFLEET_TOKEN: exit %d, %q", code, errOut)
	}
	delete(h.env, "MLFLEET_TOKEN")
	// Logging in again to the same cloud keeps the defaults.
	h.login()
	if got := h.must("config", "get", "account"); got != "models\n" {
		t.Errorf("defaults lost on login: account = %q", got)
	}
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"config", "set", "colour", "x"}, 2},
		{[]string{"config", "set", "subscription", "Not A Name"}, 2},
		{[]string{"config", "get"}, 2},
	} {
		if _, _, code := h.run("", tt.args...); code != tt.code {
			t.Errorf("%v: exit %d, want %d", tt.args, code, tt.code)
		}
	}
	h.must("logout")
	cfg, err := loadConfig(h.cfgPath)
	if err != nil || cfg.Token != "" || cfg.Subscription != "acme" {
		t.Errorf("after logout config = %+v, %v", cfg, err)
	}
	if _, errOut, code := h.run("", "whoami"); code != 1 || !strings.Contains(errOut, "not logged in") {
		t.Errorf("whoami after logout: exit %d, %q", code, errOut)
	}
}

// step is one CLI call of a scripted scenario.
type step struct {
	args     []string
	wantCode int
	want     []string // substrings of stdout (exit 0) or stderr (otherwise)
}

func runSteps(t *testing.T, h *cloudHarness, steps []step) {
	t.Helper()
	for _, s := range steps {
		out, errOut, code := h.run("", s.args...)
		if code != s.wantCode {
			t.Fatalf("mlfleet %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(s.args, " "), code, s.wantCode, out, errOut)
		}
		where := out
		if code != 0 {
			where = errOut
			if strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "error: ") {
				t.Errorf("mlfleet %s: stderr is not one error line: %q", strings.Join(s.args, " "), errOut)
			}
		}
		for _, w := range s.want {
			if !strings.Contains(where, w) {
				t.Errorf("mlfleet %s: output %q does not contain %q", strings.Join(s.args, " "), where, w)
			}
		}
	}
}

func TestTenancyLifecycle(t *testing.T) {
	h := startCloud(t)
	h.login()
	runSteps(t, h, []step{
		{[]string{"subscription", "create", "acme", "--description", "Acme Corp"}, 0, []string{"acme", "Acme Corp"}},
		{[]string{"subscription", "list"}, 0, []string{"NAME", "acme"}},
		{[]string{"subscription", "show", "acme"}, 0, []string{"acme"}},
		{[]string{"subscription", "update", "acme", "--description", "Acme Corporation"}, 0, []string{"Acme Corporation"}},
		{[]string{"subscription", "create", "acme"}, 1, []string{"create subscription"}},

		{[]string{"account", "create", "research", "--kind", "experimentation", "-s", "acme"}, 0, []string{"research", "experimentation"}},
		{[]string{"account", "create", "models", "--kind", "modelmanagement", "-s", "acme"}, 0, []string{"models", "modelmanagement"}},
		{[]string{"account", "create", "odd", "--kind", "weird", "-s", "acme"}, 2, []string{"(field: kind)"}},
		{[]string{"account", "create", "nokind", "-s", "acme"}, 2, []string{"kind"}},
		{[]string{"account", "list", "-s", "acme"}, 0, []string{"research", "models"}},
		{[]string{"account", "show", "models", "-s", "acme"}, 0, []string{"modelmanagement"}},
		{[]string{"account", "update", "models", "-s", "acme", "--description", "prod models"}, 0, []string{"prod models"}},
		{[]string{"account", "list"}, 2, []string{"no subscription"}},

		{[]string{"workspace", "create", "vision", "-s", "acme", "-a", "research"}, 0, []string{"vision"}},
		{[]string{"workspace", "create", "bad", "-s", "acme", "-a", "models"}, 1, []string{"create workspace"}},
		{[]string{"workspace", "list", "-s", "acme", "-a", "research"}, 0, []string{"vision"}},
		{[]string{"workspace", "show", "vision", "-s", "acme", "-a", "research"}, 0, []string{"vision", "research"}},
		{[]string{"workspace", "update", "vision", "-s", "acme", "-a", "research", "--description", "eyes"}, 0, []string{"eyes"}},

		{[]string{"project", "create", "churn", "--folder", "src/churn", "--git-remote", "https://git.example.org/ds/churn.git", "-s", "acme", "-a", "research", "-w", "vision"}, 0, []string{"churn", "src/churn"}},
		{[]string{"project", "list", "-s", "acme", "-a", "research", "-w", "vision"}, 0, []string{"churn"}},
		{[]string{"project", "show", "churn", "-s", "acme", "-a", "research", "-w", "vision"}, 0, []string{"churn"}},
		{[]string{"project", "update", "churn", "-s", "acme", "-a", "research", "-w", "vision", "--description", "who leaves"}, 0, []string{"who leaves"}},
		{[]string{"project", "update", "churn", "-s", "acme", "-a", "research", "-w", "vision", "--folder", "src/churn2"}, 0, []string{"src/churn2", "who leaves"}},
		{[]string{"project", "update", "churn", "-s", "acme", "-a", "research", "-w", "vision"}, 2, []string{"nothing to update"}},

		{[]string{"user", "create", "ann", "--email", "ann@example.org"}, 0, []string{"ann", "ann@example.org"}},
		{[]string{"user", "list"}, 0, []string{"admin", "ann"}},
		{[]string{"user", "show", "ann"}, 0, []string{"ann@example.org"}},

		{[]string{"role", "assign", "ann", "--role", "Reader", "-s", "acme", "-a", "models"}, 0, []string{"/subscriptions/acme/accounts/models", "Reader"}},
		{[]string{"role", "assign", "ann", "--role", "King", "-s", "acme"}, 2, []string{"role"}},
		{[]string{"role", "list", "-s", "acme", "-a", "models"}, 0, []string{"ann", "Reader"}},
		{[]string{"role", "remove", "ann", "-s", "acme", "-a", "models"}, 0, []string{"Removed"}},
		{[]string{"role", "list", "-w", "vision"}, 2, []string{"no scope"}},

		{[]string{"token", "create", "--user", "ann", "--name", "laptop"}, 0, []string{"laptop", "Token: "}},
		{[]string{"token", "list", "--user", "ann"}, 0, []string{"laptop"}},
		{[]string{"token", "list"}, 0, []string{"admin"}},

		{[]string{"project", "delete", "churn", "-s", "acme", "-a", "research", "-w", "vision"}, 0, []string{"Deleted project churn"}},
		{[]string{"project", "show", "churn", "-s", "acme", "-a", "research", "-w", "vision"}, 1, []string{"show project"}},
		{[]string{"workspace", "delete", "vision", "-s", "acme", "-a", "research"}, 0, []string{"Deleted workspace"}},
		{[]string{"account", "delete", "research", "-s", "acme"}, 0, []string{"Deleted account"}},
		{[]string{"subscription", "delete", "acme"}, 1, []string{"delete subscription"}}, // still holds "models"
		{[]string{"subscription", "delete", "acme", "--force"}, 0, []string{"Deleted subscription acme"}},
		{[]string{"subscription", "show", "acme"}, 1, []string{"not found"}},
		{[]string{"user", "delete", "ann"}, 0, []string{"Deleted user ann"}},
		{[]string{"user", "show", "ann"}, 1, []string{"show user"}},
	})
}

func TestTokenSecretShownOnce(t *testing.T) {
	h := startCloud(t)
	h.login()
	out, errOut, code := h.run("", "token", "create", "--name", "ci", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "warning:") {
		t.Errorf("no warning on stderr: %q", errOut)
	}
	var tok cloud.Token
	if err := json.Unmarshal([]byte(out), &tok); err != nil || tok.Secret == "" {
		t.Fatalf("token create -o json = %q (%v)", out, err)
	}
	// The new token works, and listing never shows secrets.
	h.env["MLFLEET_TOKEN"] = tok.Secret
	list := h.must("token", "list", "-o", "json")
	delete(h.env, "MLFLEET_TOKEN")
	if strings.Contains(list, tok.Secret) {
		t.Error("token list shows a secret")
	}
	var toks []cloud.Token
	if err := json.Unmarshal([]byte(list), &toks); err != nil || len(toks) < 2 {
		t.Fatalf("token list = %q (%v)", list, err)
	}
	h.must("token", "delete", tok.ID)
	h.env["MLFLEET_TOKEN"] = tok.Secret
	if _, _, code := h.run("", "whoami"); code != 1 {
		t.Errorf("deleted token still works (exit %d)", code)
	}
}

func TestJSONOutput(t *testing.T) {
	h := startCloud(t)
	h.login()
	h.must("subscription", "create", "acme")
	h.must("account", "create", "models", "--kind", "modelmanagement", "-s", "acme")
	h.must("account", "create", "lab", "--kind", "experimentation", "-s", "acme")
	h.must("workspace", "create", "ws1", "-s", "acme", "-a", "lab")
	h.must("project", "create", "p1", "-s", "acme", "-a", "lab", "-w", "ws1")
	h.must("user", "create", "bob")
	h.must("role", "assign", "bob", "--role", "Contributor", "-s", "acme")
	tests := []struct {
		args  []string
		into  func() any
		check func(t *testing.T, v any)
	}{
		{[]string{"subscription", "list"}, func() any { return &[]cloud.Subscription{} }, func(t *testing.T, v any) {
			if s := *v.(*[]cloud.Subscription); len(s) != 1 || s[0].Name != "acme" || s[0].Path != "/subscriptions/acme" {
				t.Errorf("got %+v", s)
			}
		}},
		{[]string{"subscription", "show", "acme"}, func() any { return &cloud.Subscription{} }, func(t *testing.T, v any) {
			if v.(*cloud.Subscription).Name != "acme" {
				t.Errorf("got %+v", v)
			}
		}},
		{[]string{"account", "list", "-s", "acme"}, func() any { return &[]cloud.Account{} }, func(t *testing.T, v any) {
			if s := *v.(*[]cloud.Account); len(s) != 2 {
				t.Errorf("got %+v", s)
			}
		}},
		{[]string{"account", "show", "lab", "-s", "acme"}, func() any { return &cloud.Account{} }, func(t *testing.T, v any) {
			if a := v.(*cloud.Account); a.Kind != cloud.Experimentation {
				t.Errorf("got %+v", a)
			}
		}},
		{[]string{"workspace", "list", "-s", "acme", "-a", "lab"}, func() any { return &[]cloud.Workspace{} }, func(t *testing.T, v any) {
			if s := *v.(*[]cloud.Workspace); len(s) != 1 || s[0].Name != "ws1" {
				t.Errorf("got %+v", s)
			}
		}},
		{[]string{"project", "show", "p1", "-s", "acme", "-a", "lab", "-w", "ws1"}, func() any { return &cloud.Project{} }, func(t *testing.T, v any) {
			if p := v.(*cloud.Project); p.Workspace != "ws1" {
				t.Errorf("got %+v", p)
			}
		}},
		{[]string{"user", "list"}, func() any { return &[]cloud.User{} }, func(t *testing.T, v any) {
			if s := *v.(*[]cloud.User); len(s) != 2 {
				t.Errorf("got %+v", s)
			}
		}},
		{[]string{"role", "list", "-s", "acme"}, func() any { return &[]cloud.RoleAssignment{} }, func(t *testing.T, v any) {
			found := false
			for _, r := range *v.(*[]cloud.RoleAssignment) {
				found = found || (r.User == "bob" && r.Role == cloud.Contributor)
			}
			if !found {
				t.Errorf("got %+v", v)
			}
		}},
		{[]string{"model", "list", "-s", "acme", "-a", "models"}, func() any { return &[]cloud.Model{} }, func(t *testing.T, v any) {
			if s := *v.(*[]cloud.Model); len(s) != 0 {
				t.Errorf("got %+v", s)
			}
		}},
		{[]string{"manifest", "list", "-s", "acme", "-a", "models"}, func() any { return &[]cloud.Manifest{} }, func(t *testing.T, v any) {}},
		{[]string{"operation", "list", "-s", "acme", "-a", "models"}, func() any { return &[]cloud.Operation{} }, func(t *testing.T, v any) {}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out := h.must(append(tt.args, "-o", "json")...)
			v := tt.into()
			dec := json.NewDecoder(strings.NewReader(out))
			dec.DisallowUnknownFields()
			if err := dec.Decode(v); err != nil {
				t.Fatalf("output is not the JSON of %T: %v\n%s", v, err, out)
			}
			tt.check(t, v)
		})
	}
}

func TestExitCodes(t *testing.T) {
	h := startCloud(t)
	h.login()
	h.must("subscription", "create", "acme")
	h.must("account", "create", "models", "--kind", "modelmanagement", "-s", "acme")
	bad := filepath.Join(h.dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"apiVersion":"mlfleet.io/v1","name":"x","bogus":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	runSteps(t, h, []step{
		{[]string{"--bogus"}, 2, []string{"unknown flag: --bogus"}},
		{[]string{"subscription", "list", "--bogus"}, 2, []string{"unknown flag"}},
		{[]string{"nosuchcommand"}, 2, []string{"unknown command"}},
		{[]string{"subscription", "nosuch"}, 2, []string{"unknown command"}},
		{[]string{"subscription", "show"}, 2, []string{"exactly one argument"}},
		{[]string{"subscription", "list", "-o", "yaml"}, 2, []string{"--output"}},
		{[]string{"subscription", "create", "Not_Valid!"}, 2, []string{"(field: name)"}},
		{[]string{"subscription", "show", "nope"}, 1, []string{"not found"}},
		{[]string{"account", "show", "nope", "-s", "acme"}, 1, []string{"not found"}},
		{[]string{"model", "show", "nope", "-s", "acme", "-a", "models"}, 1, []string{"show model"}},
		{[]string{"model", "delete", "iris", "-s", "acme", "-a", "models"}, 2, []string{"(field: version)"}},
		{[]string{"model", "show", "iris:x", "-s", "acme", "-a", "models"}, 2, []string{"(field: version)"}},
		{[]string{"model", "register", filepath.Join(h.dir, "missing.onnx"), "--name", "m", "-s", "acme", "-a", "models"}, 2, []string{"model file"}},
		{[]string{"model", "register", "--name", "m"}, 2, []string{"exactly one argument"}},
		{[]string{"manifest", "create", "-f", bad, "-s", "acme", "-a", "models"}, 2, []string{"bogus"}},
		{[]string{"manifest", "create", "-s", "acme", "-a", "models"}, 2, []string{"-f FILE"}},
		{[]string{"subscription", "update", "acme"}, 2, []string{"nothing to update"}},
	})
	// A cloud that is not there is a failure, not bad usage.
	h.env["MLFLEET_CLOUD"] = "http://127.0.0.1:1"
	runSteps(t, h, []step{{[]string{"subscription", "list"}, 1, []string{"error: "}}})
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func TestModelsAndManifests(t *testing.T) {
	h := startCloud(t)
	h.login()
	h.must("subscription", "create", "acme")
	h.must("account", "create", "models", "--kind", "modelmanagement", "-s", "acme")
	h.must("config", "set", "subscription", "acme")
	h.must("config", "set", "account", "models")

	onnxFile := filepath.Join("testdata", "affine.onnx")
	blob := filepath.Join(h.dir, "weights.bin")
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	if err := os.WriteFile(blob, big, 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("register", func(t *testing.T) {
		tests := []struct {
			file, name string
			extra      []string
			format     string
			version    int
		}{
			{onnxFile, "affine", nil, "onnx", 1},
			{onnxFile, "affine", []string{"--description", "again", "--tag", "stage=dev", "--tag", "team=ds", "--run-id", "run-7"}, "onnx", 2},
			{blob, "weights", []string{"--format", "file"}, "file", 1},
		}
		for _, tt := range tests {
			args := append([]string{"model", "register", tt.file, "--name", tt.name, "-o", "json"}, tt.extra...)
			out, errOut, code := h.run("", args...)
			if code != 0 {
				t.Fatalf("%v: exit %d: %s", args, code, errOut)
			}
			var m cloud.Model
			if err := json.Unmarshal([]byte(out), &m); err != nil {
				t.Fatal(err)
			}
			fi, _ := os.Stat(tt.file)
			if m.Digest != sha256File(t, tt.file) || m.Size != fi.Size() || m.Format != tt.format || m.Version != tt.version {
				t.Errorf("registered %+v, want digest %s size %d format %s version %d", m, sha256File(t, tt.file), fi.Size(), tt.format, tt.version)
			}
			// Not a terminal: plain progress lines, ending at 100%.
			if !strings.Contains(errOut, "100% ("+itoa(fi.Size())+" of "+itoa(fi.Size())+" bytes)") {
				t.Errorf("progress lines = %q", errOut)
			}
		}
	})

	runSteps(t, h, []step{
		{[]string{"model", "list"}, 0, []string{"affine", "weights"}},
		{[]string{"model", "list", "weights"}, 0, []string{"weights"}},
		{[]string{"model", "show", "affine"}, 0, []string{"Version:     2", "stage=dev,team=ds", "Input:", "x float32"}},
		{[]string{"model", "show", "affine:1"}, 0, []string{"Version:     1"}},
		{[]string{"model", "update", "affine:2", "--tag", "stage=prod"}, 0, []string{"stage=prod"}},
		{[]string{"model", "show", "affine:9"}, 1, []string{"show model"}},
	})

	t.Run("download", func(t *testing.T) {
		tests := []struct {
			ref, file, src string
		}{
			{"weights:1", filepath.Join(h.dir, "w.bin"), blob},
			{"affine", filepath.Join(h.dir, "a.onnx"), onnxFile},
		}
		for _, tt := range tests {
			_, errOut, code := h.run("", "model", "download", tt.ref, "-o", tt.file)
			if code != 0 {
				t.Fatalf("download %s: exit %d: %s", tt.ref, code, errOut)
			}
			if got, want := sha256File(t, tt.file), sha256File(t, tt.src); got != want {
				t.Errorf("download %s: digest %s, want %s", tt.ref, got, want)
			}
		}
		out := h.must("model", "download", "weights:1", "-o", "-")
		if !bytes.Equal([]byte(out), big) {
			t.Errorf("download to stdout: %d bytes, want %d", len(out), len(big))
		}
		// Default file name, in the working directory of the test's choosing.
		if _, errOut, code := h.run("", "model", "download", "weights:7", "-o", filepath.Join(h.dir, "x")); code != 1 {
			t.Errorf("download of a missing version: exit %d (%s)", code, errOut)
		}
		if _, err := os.Stat(filepath.Join(h.dir, "x")); err == nil {
			t.Error("failed download left a file")
		}
	})

	t.Run("manifests", func(t *testing.T) {
		schema := filepath.Join(h.dir, "schema.json")
		sample := filepath.Join(h.dir, "sample.json")
		doc := filepath.Join(h.dir, "manifest.json")
		os.WriteFile(schema, []byte(`{"inputs":[{"name":"x","type":"float32","shape":[-1,3]}],"outputs":[{"name":"y","type":"float32","shape":[-1,3]}]}`), 0o600)
		os.WriteFile(sample, []byte(`[{"x":[1,2,3]}]`), 0o600)
		os.WriteFile(doc, []byte(`{"apiVersion":"mlfleet.io/v1","name":"from-file","runtime":"onnx","models":[{"name":"affine","version":1}],"schema":{"inputs":[{"name":"x","type":"float32","shape":[-1,3]}]}}`), 0o600)
		runSteps(t, h, []step{
			{[]string{"manifest", "create", "--name", "affine", "--model", "affine:2", "--schema", schema, "--sample", sample}, 0, []string{"affine", "onnx", "affine:2"}},
			{[]string{"manifest", "create", "--name", "affine", "--model", "affine:1"}, 0, []string{"affine:1"}}, // schema from the model
			{[]string{"manifest", "create", "-f", doc}, 0, []string{"from-file"}},
			{[]string{"manifest", "create", "--name", "w", "--model", "weights:1", "--schema", schema}, 2, []string{"models[0]"}},
			{[]string{"manifest", "create", "-f", doc, "--name", "x"}, 2, []string{"cannot be combined"}},
			{[]string{"manifest", "list"}, 0, []string{"from-file", "affine"}},
			{[]string{"manifest", "list", "affine"}, 0, []string{"affine"}},
			{[]string{"manifest", "show", "affine"}, 0, []string{"affine", `"apiVersion": "mlfleet.io/v1"`}},
			{[]string{"manifest", "show", "affine:1", "-o", "json"}, 0, []string{`"version": 1`}},
			{[]string{"model", "delete", "affine:1"}, 1, []string{"delete model"}}, // a manifest uses it
			{[]string{"manifest", "delete", "affine:1"}, 0, []string{"Deleted manifest affine:1"}},
			{[]string{"manifest", "show", "affine:1"}, 1, []string{"show manifest"}},
			{[]string{"manifest", "delete", "affine:2"}, 0, nil},
			{[]string{"manifest", "delete", "from-file:1"}, 0, nil},
			{[]string{"model", "delete", "affine:1"}, 0, []string{"Deleted model affine:1"}},
			{[]string{"operation", "list"}, 0, []string{"ID"}},
			{[]string{"operation", "show", "op-none"}, 1, []string{"show operation"}},
		})
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// tokenRE finds the enrollment token and the device command in enroll-token's output.
var tokenRE = regexp.MustCompile(`(?m)^Token: (mle_\S+)$`)

func TestDevices(t *testing.T) {
	h := startCloud(t)
	h.login()
	h.must("subscription", "create", "acme")
	h.must("account", "create", "models", "--kind", "modelmanagement", "-s", "acme")
	h.must("account", "create", "lab", "--kind", "experimentation", "-s", "acme")
	h.must("config", "set", "subscription", "acme")
	h.must("config", "set", "account", "models")
	ctx := context.Background()
	anon, err := client.New(h.url, "")
	if err != nil {
		t.Fatal(err)
	}

	// enroll-token (table): the token once, a warning, the device's command.
	out, errOut, code := h.run("", "device", "enroll-token", "--label", "site=paris", "--label", "arch=arm64", "--expires", "2h")
	if code != 0 {
		t.Fatalf("enroll-token: exit %d: %s", code, errOut)
	}
	m := tokenRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("enroll-token printed no token:\n%s", out)
	}
	tok := m[1]
	if !strings.Contains(errOut, "warning: the enrollment token is shown only this once") {
		t.Errorf("no warning on stderr: %q", errOut)
	}
	if want := "mlfleet-edge enroll --cloud " + h.url + " --token " + tok + "\n"; !strings.Contains(out, want) {
		t.Errorf("enroll-token output lacks %q:\n%s", want, out)
	}
	if !strings.Contains(out, "arch=arm64,site=paris") || !strings.Contains(out, "acme/models") {
		t.Errorf("enroll-token table:\n%s", out)
	}
	e1, err := anon.Enroll(ctx, cloud.EnrollRequest{Token: tok, Name: "pi-1"})
	if err != nil {
		t.Fatal(err)
	}
	// The token works once.
	if _, err := anon.Enroll(ctx, cloud.EnrollRequest{Token: tok}); errclass.ClassOf(err) != errclass.Unauthenticated {
		t.Errorf("second use of the token: %v", err)
	}

	// enroll-token -o json: the object on stdout, the command on stderr.
	out, errOut, code = h.run("", "device", "enroll-token", "-o", "json")
	if code != 0 {
		t.Fatalf("enroll-token -o json: exit %d: %s", code, errOut)
	}
	var et cloud.EnrollmentToken
	if err := json.Unmarshal([]byte(out), &et); err != nil || !strings.HasPrefix(et.Token, "mle_") {
		t.Fatalf("enroll-token -o json = %q (%v)", out, err)
	}
	if left := time.Until(et.ExpiresAt); left < 23*time.Hour || left > 25*time.Hour {
		t.Errorf("default expiry in %s, want 24h", left)
	}
	if !strings.Contains(errOut, "warning:") || !strings.Contains(errOut, "--token "+et.Token) {
		t.Errorf("stderr of enroll-token -o json: %q", errOut)
	}
	e2, err := anon.Enroll(ctx, cloud.EnrollRequest{Token: et.Token, Name: "pi-2"})
	if err != nil {
		t.Fatal(err)
	}

	services := filepath.Join(h.dir, "services.json")
	wrapped := filepath.Join(h.dir, "wrapped.json")
	badImage := filepath.Join(h.dir, "bad-image.json")
	unknownField := filepath.Join(h.dir, "unknown.json")
	img := "127.0.0.1:8480/acme/models/iris@sha256:772a240d934b32bce2b003d607c83ab7114cfcdda3c2f32ffca8e978b4e8ab69"
	for path, content := range map[string]string{
		services:     `[{"name":"iris","image":"` + img + `","port":8080}]`,
		wrapped:      `{"services":[{"name":"iris","image":"` + img + `"},{"name":"churn","image":"` + img + `"}]}`,
		badImage:     `[{"name":"iris","image":"iris:latest"}]`,
		unknownField: `[{"name":"iris","image":"` + img + `","replicas":3}]`,
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	runSteps(t, h, []step{
		{[]string{"device", "list"}, 0, []string{"ID", "NAME", "LABELS", "ONLINE", "LAST SEEN", "DESIRED", "OBSERVED", "SERVICES", e1.DeviceID, e2.DeviceID, "pi-1", "arch=arm64,site=paris", "never"}},
		{[]string{"device", "list", "--label", "site=paris"}, 0, []string{e1.DeviceID}},
		{[]string{"device", "show", e1.DeviceID}, 0, []string{"ID:", e1.DeviceID, "pi-1", "Desired:   none", "Reported:  never", "Online:    false"}},
		{[]string{"device", "label", e1.DeviceID, "site=lyon", "tier=edge", "--remove", "arch"}, 0, []string{"site=lyon,tier=edge"}},
		{[]string{"device", "label", e1.DeviceID, "--remove", "nosuch"}, 0, []string{"site=lyon,tier=edge"}},
		{[]string{"device", "list", "--label", "site=lyon", "--label", "tier=edge"}, 0, []string{e1.DeviceID}},
		{[]string{"device", "set-desired", e1.DeviceID, "-f", services}, 0, []string{e1.DeviceID, "DESIRED"}},
		{[]string{"device", "set-desired", e1.DeviceID, "-f", wrapped}, 0, []string{e1.DeviceID}},
		{[]string{"device", "show", e1.DeviceID}, 0, []string{"Desired:   version 2", "Service: churn image=" + img, "Service: iris image=" + img}},
	})
	if out := h.must("device", "list", "--label", "site=paris"); strings.Contains(out, e1.DeviceID) {
		t.Errorf("relabelled device still listed under site=paris:\n%s", out)
	}

	// The device reports, through the cloud's ingestion of its MQTT messages.
	now := time.Now().UTC()
	raw, err := twin.Encode(&twin.Reported{Protocol: twin.Protocol, Device: e1.DeviceID, ObservedVersion: 2, Time: now, Agent: "test-agent",
		Services: []twin.ServiceStatus{
			{Name: "iris", Phase: twin.Running, Image: img, Healthy: true, Since: now},
			{Name: "churn", Phase: twin.Failed, Wanted: img, Reason: "pull failed", Since: now},
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Service().HandleDeviceMessage(ctx, twin.Topic(e1.DeviceID, twin.KindReported), raw); err != nil {
		t.Fatal(err)
	}
	runSteps(t, h, []step{
		{[]string{"device", "list", "--label", "tier=edge"}, 0, []string{e1.DeviceID, "true", "churn:Failed,iris:Running"}},
		{[]string{"device", "show", e1.DeviceID}, 0, []string{"Online:    true", "observed version 2", "agent test-agent",
			"Service: iris phase=Running healthy=true image=" + img, `Service: churn phase=Failed healthy=false wanted=` + img, `reason="pull failed"`}},
	})

	// -o json of list, show, label and set-desired decodes as devices.
	var list []cloud.Device
	decodeStrictJSON(t, h.must("device", "list", "-o", "json"), &list)
	if len(list) != 2 {
		t.Errorf("device list -o json: %d devices", len(list))
	}
	for _, args := range [][]string{
		{"device", "show", e1.DeviceID},
		{"device", "label", e1.DeviceID, "stage=prod"},
		{"device", "set-desired", e1.DeviceID, "-f", services},
	} {
		var d cloud.Device
		decodeStrictJSON(t, h.must(append(args, "-o", "json")...), &d)
		if d.ID != e1.DeviceID || d.Labels["stage"] == "" && args[1] != "show" {
			t.Errorf("%v -o json = %+v", args, d)
		}
	}
	var d cloud.Device
	decodeStrictJSON(t, h.must("device", "show", e1.DeviceID, "-o", "json"), &d)
	if d.Desired == nil || d.Desired.Version != 3 || d.Reported == nil || len(d.Reported.Services) != 2 || d.Labels["stage"] != "prod" {
		t.Errorf("device show -o json = %+v", d)
	}
	// An empty list stops everything, from stdin.
	if out, errOut, code := h.run("[]", "device", "set-desired", e1.DeviceID, "-f", "-", "-o", "json"); code != 0 {
		t.Errorf("set-desired from stdin: exit %d: %s", code, errOut)
	} else {
		var d cloud.Device
		decodeStrictJSON(t, out, &d)
		if d.Desired == nil || d.Desired.Version != 4 || len(d.Desired.Services) != 0 {
			t.Errorf("set-desired [] = %+v", d.Desired)
		}
	}

	runSteps(t, h, []step{
		// Unknown device: failure.
		{[]string{"device", "show", "d-nope"}, 1, []string{"show device", "not found"}},
		{[]string{"device", "label", "d-nope", "a=b"}, 1, []string{"label device"}},
		{[]string{"device", "delete", "d-nope"}, 1, []string{"delete device"}},
		{[]string{"device", "set-desired", "d-nope", "-f", services}, 1, []string{"set desired services"}},
		// Bad labels and input: usage.
		{[]string{"device", "label", e1.DeviceID, "novalue"}, 2, []string{"(field: label)"}},
		{[]string{"device", "label", e1.DeviceID, "bad key=v"}, 2, []string{"(field: labels)"}},
		{[]string{"device", "label", e1.DeviceID, "site=a b"}, 2, []string{"(field: labels.site)"}},
		{[]string{"device", "label", e1.DeviceID, "a=1", "--remove", "a"}, 2, []string{"both set and removed"}},
		{[]string{"device", "label", e1.DeviceID}, 2, []string{"nothing to change"}},
		{[]string{"device", "label"}, 2, []string{"device ID"}},
		{[]string{"device", "list", "--label", "site"}, 2, []string{"(field: label)"}},
		{[]string{"device", "enroll-token", "--label", "=x"}, 2, []string{"(field: label)"}},
		{[]string{"device", "enroll-token", "--label", "bad key=x"}, 2, []string{"(field: labels)"}},
		{[]string{"device", "enroll-token", "--expires", "0s"}, 2, []string{"(field: expires)"}},
		{[]string{"device", "enroll-token", "--expires", "1000h"}, 2, []string{"(field: expiresInHours)"}},
		{[]string{"device", "enroll-token", "--expires", "soon"}, 2, []string{"--expires"}},
		{[]string{"device", "enroll-token", "-a", "lab"}, 1, []string{"create enrollment token"}},
		{[]string{"device", "set-desired", e1.DeviceID}, 2, []string{"-f FILE"}},
		{[]string{"device", "set-desired", e1.DeviceID, "-f", badImage}, 2, []string{"(field: services[0].image)"}},
		{[]string{"device", "set-desired", e1.DeviceID, "-f", unknownField}, 2, []string{"replicas"}},
		{[]string{"device", "set-desired", e1.DeviceID, "-f", filepath.Join(h.dir, "missing.json")}, 2, []string{"--file"}},
		{[]string{"device", "show"}, 2, []string{"exactly one argument"}},
		{[]string{"device", "show", e1.DeviceID, "-o", "yaml"}, 2, []string{"--output"}},
		{[]string{"device", "list", "-a", ""}, 0, nil}, // empty flag: the config's account
		{[]string{"device", "nosuch"}, 2, []string{"unknown command"}},

		{[]string{"device", "delete", e1.DeviceID}, 0, []string{"Deleted device " + e1.DeviceID}},
		{[]string{"device", "show", e1.DeviceID}, 1, []string{"not found"}},
		{[]string{"device", "delete", e1.DeviceID}, 1, []string{"not found"}},
	})
	// The deleted device's credential is dead: it cannot report any more.
	if err := h.srv.Service().HandleDeviceMessage(ctx, twin.Topic(e1.DeviceID, twin.KindReported), raw); err == nil {
		t.Error("a deleted device's report was accepted")
	}
	if err := h.srv.Service().AuthenticateDevice(ctx, e1.DeviceID, e1.Credential); err == nil {
		t.Error("a deleted device's credential still authenticates")
	}
	var left []cloud.Device
	decodeStrictJSON(t, h.must("device", "list", "-o", "json"), &left)
	if len(left) != 1 || left[0].ID != e2.DeviceID {
		t.Errorf("after delete: %+v", left)
	}
}

// decodeStrictJSON decodes CLI output into v, refusing unknown fields.
func decodeStrictJSON(t *testing.T, out string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("output is not the JSON of %T: %v\n%s", v, err, out)
	}
}
