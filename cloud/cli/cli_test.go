package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/manifest"
	"github.com/mlfleet/mlfleet/shared/twin"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestEveryCommandDocumented walks the command tree: every command has a
// Short description and an Example.
func TestEveryCommandDocumented(t *testing.T) {
	root := New(Env{})
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		n++
		if strings.TrimSpace(c.Short) == "" {
			t.Errorf("%q has no Short", c.CommandPath())
		}
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%q has no Example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	if n < 50 {
		t.Errorf("walked %d commands, want the whole tree", n)
	}
	var out bytes.Buffer
	if code := Main(t.Context(), []string{"model", "register", "--help"}, Env{Stdout: &out}); code != 0 || !strings.Contains(out.String(), "Examples:") {
		t.Errorf("--help: exit %d, %q", code, out.String())
	}
}

func TestExitCodeAndErrorLine(t *testing.T) {
	tests := []struct {
		err      error
		wantCode int
		wantLine string
	}{
		{usagef("bad flag"), 2, "error: bad flag"},
		{errclass.Invalid("name", "invalid name %q", "A B"), 2, `error: invalid name "A B" (field: name)`},
		{fmt.Errorf("create x: %w", errclass.New(errclass.TooLarge, "", "too big")), 2, "error: create x: too big"},
		{errclass.NotFoundf("gone"), 1, "error: gone"},
		{errclass.New(errclass.Conflict, "", "in\nuse"), 1, "error: in use"},
		{errors.New("plain"), 1, "error: plain"},
	}
	for _, tt := range tests {
		if got := ExitCode(tt.err); got != tt.wantCode {
			t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.wantCode)
		}
		if got := errorLine(tt.err); got != tt.wantLine {
			t.Errorf("errorLine(%v) = %q, want %q", tt.err, got, tt.wantLine)
		}
	}
	if ExitCode(nil) != 0 {
		t.Error("ExitCode(nil) != 0")
	}
}

func TestParseRef(t *testing.T) {
	tests := []struct {
		in          string
		needVersion bool
		name        string
		version     int
		field       string // "" when valid
	}{
		{"iris", false, "iris", 0, ""},
		{"iris:3", true, "iris", 3, ""},
		{"iris", true, "", 0, "version"},
		{"iris:0", false, "", 0, "version"},
		{"iris:03", false, "", 0, "version"},
		{"iris:-1", false, "", 0, "version"},
		{"iris:", false, "", 0, "version"},
		{":3", false, "", 0, "name"},
		{"", false, "", 0, "name"},
	}
	for _, tt := range tests {
		name, v, err := parseRef(tt.in, tt.needVersion)
		if tt.field != "" {
			if errclass.FieldOf(err) != tt.field || ExitCode(err) != 2 {
				t.Errorf("parseRef(%q) err = %v, want field %s", tt.in, err, tt.field)
			}
			continue
		}
		if err != nil || name != tt.name || v != tt.version {
			t.Errorf("parseRef(%q) = %q, %d, %v", tt.in, name, v, err)
		}
	}
}

func TestParseTags(t *testing.T) {
	tests := []struct {
		in      []string
		want    string
		wantErr bool
	}{
		{nil, "", false},
		{[]string{"a=1", "b=x=y", "c="}, "a=1,b=x=y,c=", false},
		{[]string{"novalue"}, "", true},
		{[]string{"=v"}, "", true},
		{[]string{"a=1", "a=2"}, "", true},
	}
	for _, tt := range tests {
		m, err := parseTags(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseTags(%v) err = %v", tt.in, err)
			continue
		}
		if got := sortedTags(m); err == nil && got != tt.want {
			t.Errorf("parseTags(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string
		want    Config
		wantErr bool
	}{
		{"empty", "", Config{}, false},
		{"full", `{"cloud":"http://h","token":"t","subscription":"s","account":"a","workspace":"w"}`,
			Config{Cloud: "http://h", Token: "t", Subscription: "s", Account: "a", Workspace: "w"}, false},
		{"unknown field", `{"cloud":"http://h","colour":"red"}`, Config{}, true},
		{"not json", `cloud=http://h`, Config{}, true},
		{"trailing", `{} {}`, Config{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name+".json")
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := loadConfig(p)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if err != nil && (ExitCode(err) != 2 || !strings.Contains(err.Error(), p)) {
				t.Errorf("err %v: exit %d, want 2 and the path", err, ExitCode(err))
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	// Missing file: empty config. Saving creates the dirs and mode 0600,
	// even over a file that was readable by others.
	p := filepath.Join(dir, "new", "sub", "config.json")
	if c, err := loadConfig(p); err != nil || c != (Config{}) {
		t.Fatalf("missing file: %+v, %v", c, err)
	}
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte(`{}`), 0o644)
	want := Config{Cloud: "http://h", Token: "secret"}
	if err := saveConfig(p, want); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode = %v, %v", fi.Mode(), err)
	}
	if got, err := loadConfig(p); err != nil || got != want {
		t.Errorf("round trip = %+v, %v", got, err)
	}
}

func TestConfigPath(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"MLFLEET_CONFIG": "/x/c.json", "XDG_CONFIG_HOME": "/xdg", "HOME": "/h"}, "/x/c.json"},
		{map[string]string{"XDG_CONFIG_HOME": "/xdg", "HOME": "/h"}, "/xdg/mlfleet/config.json"},
		{map[string]string{"HOME": "/h"}, "/h/.config/mlfleet/config.json"},
		{map[string]string{}, ""},
	}
	for _, tt := range tests {
		a := &app{env: Env{Getenv: func(k string) string { return tt.env[k] }}}
		got, err := a.configPath()
		if got != tt.want || (tt.want == "") != (err != nil) {
			t.Errorf("configPath(%v) = %q, %v; want %q", tt.env, got, err, tt.want)
		}
	}
}

func TestPlainProgress(t *testing.T) {
	var errb bytes.Buffer
	a := &app{env: Env{Stderr: &errb}}
	report, done := a.progress("upload m", 1000)
	for _, n := range []int64{10, 240, 250, 260, 990, 1000} {
		report(n, 1000)
	}
	done()
	want := "upload m: 25% (250 of 1000 bytes)\nupload m: 99% (990 of 1000 bytes)\nupload m: 100% (1000 of 1000 bytes)\n"
	if errb.String() != want {
		t.Errorf("progress lines:\n%s\nwant:\n%s", errb.String(), want)
	}
}

// TestTablesGolden pins the table output format of every resource kind.
func TestTablesGolden(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	exp := t0.Add(720 * time.Hour)
	meta := func(p string) cloud.Meta {
		return cloud.Meta{Path: p, CreatedAt: t0, UpdatedAt: t0, CreatedBy: "admin"}
	}
	var b bytes.Buffer
	section := func(name string, err error) {
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	fmt.Fprintln(&b, "# subscriptions")
	section("subs", subscriptionTable.print(&b, formatTable, []cloud.Subscription{
		{Meta: meta("/subscriptions/acme"), Name: "acme", Description: "Acme\tCorp\nLtd"},
		{Meta: meta("/subscriptions/b"), Name: "b"},
	}, false))
	fmt.Fprintln(&b, "# accounts")
	section("accounts", accountTable.print(&b, formatTable, []cloud.Account{
		{Meta: meta("/subscriptions/acme/accounts/models"), Subscription: "acme", Name: "models", Kind: cloud.ModelManagement},
	}, false))
	fmt.Fprintln(&b, "# workspaces")
	section("ws", workspaceTable.print(&b, formatTable, []cloud.Workspace{{Meta: meta("/w"), Account: "lab", Name: "vision", Description: "eyes"}}, false))
	fmt.Fprintln(&b, "# projects")
	section("proj", projectTable.print(&b, formatTable, []cloud.Project{{Meta: meta("/p"), Workspace: "vision", Name: "churn", Folder: "src/churn", GitRemote: "https://git.example.org/churn.git"}}, false))
	fmt.Fprintln(&b, "# users")
	section("users", userTable.print(&b, formatTable, []cloud.User{{Name: "admin", Admin: true, CreatedAt: t0}, {Name: "ann", Email: "ann@example.org", CreatedAt: t0}}, false))
	fmt.Fprintln(&b, "# tokens")
	section("tokens", tokenTable.print(&b, formatTable, []cloud.Token{{ID: "tok1", User: "ann", Name: "laptop", CreatedAt: t0, ExpiresAt: &exp}, {ID: "tok2", User: "ann", CreatedAt: t0}}, false))
	fmt.Fprintln(&b, "# roles")
	section("roles", roleTable.print(&b, formatTable, []cloud.RoleAssignment{{Scope: "/subscriptions/acme", User: "ann", Role: cloud.Reader, CreatedAt: t0}}, false))
	fmt.Fprintln(&b, "# models")
	m := cloud.Model{Meta: meta("/subscriptions/acme/accounts/models/models/iris/versions/2"), Name: "iris", Version: 2, Format: "onnx", Size: 177,
		Digest: "sha256:772a240d934b32bce2b003d607c83ab7114cfcdda3c2f32ffca8e978b4e8ab69", Tags: map[string]string{"team": "ds", "stage": "dev"},
		IO: &cloud.ModelIO{Inputs: []manifest.Field{{Name: "x", Type: manifest.TypeFloat32, Shape: []int{-1, 3}}}}}
	section("models", modelTable.print(&b, formatTable, []cloud.Model{m}, false))
	fmt.Fprintln(&b, "# model details")
	section("model details", printModelDetails(&b, &m))
	fmt.Fprintln(&b, "# manifests")
	section("manifests", manifestTable.print(&b, formatTable, []cloud.Manifest{{Meta: meta("/m"), Name: "iris", Version: 1, Digest: "sha256:0011223344556677889900",
		Spec: &manifest.Manifest{Runtime: manifest.RuntimeONNX, Models: []manifest.ModelRef{{Name: "iris", Version: 2}, {Name: "pre", Version: 1}}}}}, false))
	fmt.Fprintln(&b, "# operations")
	section("ops", operationTable.print(&b, formatTable, []cloud.Operation{
		{ID: "op-1", Kind: "image.build", Target: "/x", Status: cloud.OpFailed, Done: true, Error: &cloud.APIError{Code: "internal", Message: "boom"}},
		{ID: "op-2", Kind: "image.build", Status: cloud.OpRunning},
	}, false))
	fmt.Fprintln(&b, "# enrollment token")
	section("enroll token", printEnrollmentToken(&b, &cloud.EnrollmentToken{ID: "9f8e7d6c5b4a3210", Subscription: "acme", Account: "models",
		Labels: map[string]string{"site": "paris", "arch": "arm64"}, CreatedAt: t0, ExpiresAt: t0.Add(24 * time.Hour),
		Token: "mle_9f8e7d6c5b4a3210_00112233445566778899aabbccddeeff0011223344556677"}, "http://127.0.0.1:8480"))
	img := "cloud:8480/acme/models/iris@sha256:772a240d934b32bce2b003d607c83ab7114cfcdda3c2f32ffca8e978b4e8ab69"
	seen := t0.Add(time.Minute)
	dev := cloud.Device{Meta: meta("/subscriptions/acme/accounts/models/devices/d-3f2a9c0b1e4d"), Subscription: "acme", Account: "models",
		ID: "d-3f2a9c0b1e4d", Name: "pi-1", Labels: map[string]string{"site": "paris", "arch": "arm64"}, Online: true, LastSeen: &seen,
		Desired: &twin.Desired{Protocol: twin.Protocol, Device: "d-3f2a9c0b1e4d", Version: 3, IssuedAt: t0, Services: []twin.ServiceSpec{
			{Name: "iris", Image: img, Port: 8080}, {Name: "churn", Image: img, Model: "churn-v2", Resources: twin.Resources{MemoryBytes: 64 << 20, CPUMillis: 500}}}},
		Reported: &twin.Reported{Protocol: twin.Protocol, Device: "d-3f2a9c0b1e4d", ObservedVersion: 2, Time: seen, Agent: "mlfleet-edge/0.1",
			Services: []twin.ServiceStatus{
				{Name: "iris", Phase: twin.Running, Image: img, Healthy: true, Since: t0},
				{Name: "churn", Phase: twin.RolledBack, Image: img, Wanted: img, Reason: "health probe failed 3 times\ngiving up", Since: seen},
				{Name: "old", Phase: twin.Running, Image: img},
			}},
		TelemetrySeq: 42, TelemetryDropped: 1, Rejected: 2}
	fmt.Fprintln(&b, "# devices")
	section("devices", deviceTable.print(&b, formatTable, []cloud.Device{dev, {Meta: meta("/d"), ID: "d-new"}}, false))
	fmt.Fprintln(&b, "# device details")
	section("device details", printDeviceDetails(&b, &dev))
	fmt.Fprintln(&b, "# new device details")
	section("new device details", printDeviceDetails(&b, &cloud.Device{Meta: meta("/d"), ID: "d-new"}))
	fmt.Fprintln(&b, "# empty list")
	section("empty", userTable.print(&b, formatTable, nil, false))
	fmt.Fprintln(&b, "# empty list as json")
	section("empty json", userTable.print(&b, formatJSON, nil, false))

	checkGolden(t, "tables.golden", b.Bytes())
}

func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"iris", "iris:1", "iris:", ":1", "a:b:c", "iris:007", "iris:99999999999999999999", ""} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, needVersion bool) {
		name, v, err := parseRef(s, needVersion)
		if err != nil {
			if ExitCode(err) != 2 || errclass.FieldOf(err) == "" {
				t.Fatalf("parseRef(%q): %v is not invalid input naming a field", s, err)
			}
			return
		}
		if name == "" || v < 0 || (needVersion && v == 0) {
			t.Fatalf("parseRef(%q) = %q, %d", s, name, v)
		}
		back := name
		if v > 0 {
			back += ":" + fmt.Sprint(v)
		}
		if back != s {
			t.Fatalf("parseRef(%q) does not round-trip: %q", s, back)
		}
	})
}

func FuzzParseTags(f *testing.F) {
	f.Add("a=1", "b=2")
	f.Add("a=1", "a=2")
	f.Add("=", "x")
	f.Add("k=v=w", "")
	f.Fuzz(func(t *testing.T, x, y string) {
		m, err := parseTags([]string{x, y})
		if err != nil {
			if ExitCode(err) != 2 {
				t.Fatalf("parseTags: %v is not invalid input", err)
			}
			return
		}
		if len(m) != 2 {
			t.Fatalf("parseTags(%q, %q) = %v", x, y, m)
		}
		for k := range m {
			if k == "" {
				t.Fatal("empty key accepted")
			}
		}
	})
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"cloud":"http://127.0.0.1:8480","token":"t","subscription":"acme"}`))
	f.Add([]byte(``))
	f.Add([]byte(`{"colour":1}`))
	f.Add([]byte(`{} x`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"cloud":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseConfig(b)
		if err != nil {
			if ExitCode(err) != 2 {
				t.Fatalf("parseConfig: %v is not invalid input", err)
			}
			return
		}
		// What parses survives a save and a load unchanged.
		p := filepath.Join(t.TempDir(), "c.json")
		if err := saveConfig(p, c); err != nil {
			t.Fatal(err)
		}
		back, err := loadConfig(p)
		if err != nil || back != c {
			t.Fatalf("round trip of %+v = %+v, %v", c, back, err)
		}
	})
}

func TestTerminalProgressBar(t *testing.T) {
	var errb bytes.Buffer
	a := &app{env: Env{Stderr: &errb, Terminal: true}}
	report, done := a.progress("upload m", 1<<20)
	report(1<<19, 1<<20)
	report(1<<20, 1<<20)
	done()
	if !strings.Contains(errb.String(), "upload m") {
		t.Errorf("bar output = %q", errb.String())
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
