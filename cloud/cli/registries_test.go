package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/shared/errclass"
)

func TestReadPassword(t *testing.T) {
	long := strings.Repeat("p", maxRegistryPassword)
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr bool
	}{
		{"plain", "s3cret", "s3cret", false},
		{"one newline dropped", "s3cret\n", "s3cret", false},
		{"crlf dropped", "s3cret\r\n", "s3cret", false},
		{"only one newline dropped", "s3cret\n\n", "s3cret\n", false},
		{"inner spaces kept", " a b \t", " a b \t", false},
		{"longest", long + "\n", long, false},
		{"empty", "", "", true},
		{"only a newline", "\n", "", true},
		{"only crlf", "\r\n", "", true},
		{"too long", long + "x", "", true},
		{"far too long", strings.Repeat("x", 3*maxRegistryPassword), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readPassword(strings.NewReader(tt.in), "stdin")
			if tt.wantErr {
				if err == nil || errclass.FieldOf(err) != "password" || ExitCode(err) != ExitUsage {
					t.Fatalf("readPassword(%q) = %q, %v; want invalid field password", tt.in, got, err)
				}
				if strings.Contains(err.Error(), tt.in) && tt.in != "" && strings.TrimSpace(tt.in) != "" {
					t.Errorf("error %q repeats the password", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("readPassword(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func FuzzReadPassword(f *testing.F) {
	for _, s := range []string{"s3cret", "s3cret\n", "a\r\n", "\n", "", "x\n\n", "\r", strings.Repeat("y", maxRegistryPassword+1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := readPassword(strings.NewReader(in), "stdin")
		if err != nil {
			if ExitCode(err) != ExitUsage || errclass.FieldOf(err) != "password" {
				t.Fatalf("readPassword: %v is not invalid input naming password", err)
			}
			return
		}
		if got == "" || len(got) > maxRegistryPassword {
			t.Fatalf("readPassword(%q) = %q", in, got)
		}
		if in != got && in != got+"\n" && in != got+"\r" && in != got+"\r\n" {
			t.Fatalf("readPassword(%q) = %q: more than one line ending dropped", in, got)
		}
	})
}

// TestRegistryTablesGolden pins the table and details output of external
// registries.
func TestRegistryTablesGolden(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	meta := func(name string) cloud.Meta {
		return cloud.Meta{Path: cloud.RegistryPath("acme", "models", name), CreatedAt: t0, UpdatedAt: t0, CreatedBy: "admin"}
	}
	harbor := cloud.ExternalRegistry{Meta: meta("harbor"), Subscription: "acme", Account: "models", Name: "harbor",
		Host: "registry.internal", Prefix: "team/ml", Username: "robot", HasPassword: true}
	lab := cloud.ExternalRegistry{Meta: meta("lab"), Subscription: "acme", Account: "models", Name: "lab",
		Host: "10.0.0.5:5000", Insecure: true}
	var b bytes.Buffer
	check := func(name string, err error) {
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	fmt.Fprintln(&b, "# registries")
	check("registries", registryTable.print(&b, formatTable, []cloud.ExternalRegistry{harbor, lab}, false))
	fmt.Fprintln(&b, "# registry details, password set")
	check("details", printRegistryDetails(&b, &harbor))
	fmt.Fprintln(&b, "# registry details, no credentials, insecure")
	check("details lab", printRegistryDetails(&b, &lab))
	fmt.Fprintln(&b, "# registry as json")
	check("json", registryTable.print(&b, formatJSON, []cloud.ExternalRegistry{harbor}, true))

	checkGolden(t, "registries.golden", b.Bytes())
}

// capturingBuilder is an image builder that records the requests it gets
// and answers a made-up image without pushing anything.
type capturingBuilder struct {
	mu   sync.Mutex
	reqs []cloud.BuildRequest
}

func (b *capturingBuilder) Build(_ context.Context, req cloud.BuildRequest) (*cloud.BuildResult, error) {
	b.mu.Lock()
	b.reqs = append(b.reqs, req)
	b.mu.Unlock()
	dg := "sha256:772a240d934b32bce2b003d607c83ab7114cfcdda3c2f32ffca8e978b4e8ab69"
	return &cloud.BuildResult{Digest: dg, Reference: req.Repository + "@" + dg, Platforms: []string{"linux/amd64"}, BytesUploaded: 42}, nil
}

func (b *capturingBuilder) requests() []cloud.BuildRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]cloud.BuildRequest(nil), b.reqs...)
}

func TestRegistries(t *testing.T) {
	const secret = "s3cr3t-Pa55-9f8e7d6c"
	h := startCloud(t)
	builder := &capturingBuilder{}
	h.srv.Service().SetImageBuilder(builder, cloud.RegistryTarget{Host: "127.0.0.1:1", Insecure: true})
	h.login()
	h.must("subscription", "create", "acme")
	h.must("account", "create", "models", "--kind", "modelmanagement", "-s", "acme")
	h.must("config", "set", "subscription", "acme")
	h.must("config", "set", "account", "models")
	pwFile := filepath.Join(h.dir, "lab.pw")
	if err := os.WriteFile(pwFile, []byte("file-"+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	emptyFile := filepath.Join(h.dir, "empty.pw")
	if err := os.WriteFile(emptyFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	// Every output of every call below is checked for the secrets.
	var seen strings.Builder
	run := func(stdin string, args ...string) (string, string, int) {
		t.Helper()
		out, errOut, code := h.run(stdin, args...)
		seen.WriteString(out + errOut)
		return out, errOut, code
	}
	tests := []struct {
		name     string
		stdin    string
		args     []string
		wantCode int
		want     []string // substrings of stdout (exit 0) or stderr
	}{
		{"create, password on stdin", secret + "\n",
			[]string{"registry", "create", "harbor", "--host", "registry.internal", "--prefix", "team/ml", "--username", "robot", "--password-stdin"}, 0,
			[]string{"NAME", "HOST", "PREFIX", "USERNAME", "PASSWORD", "INSECURE", "CREATED", "harbor", "registry.internal", "team/ml", "robot", "set", "false"}},
		{"create, password in a file, insecure", "",
			[]string{"reg", "create", "lab", "--host", "10.0.0.5:5000", "--username", "puller", "--password-file", pwFile,
				"--pull-username", "devices", "--pull-password-file", pwFile, "--insecure", "-o", "json"}, 0,
			[]string{`"name": "lab"`, `"hasPassword": true`, `"pullUsername": "devices"`, `"hasPullPassword": true`, `"insecure": true`}},
		{"create, no credentials", "", []string{"registries", "create", "open", "--host", "127.0.0.1:5000"}, 0, []string{"open", "127.0.0.1:5000"}},
		{"list", "", []string{"registry", "list"}, 0, []string{"harbor", "lab", "open", "set", "true"}},
		{"list json", "", []string{"registry", "list", "-o", "json"}, 0, []string{`"hasPassword": true`, `"hasPassword": false`}},
		{"show", "", []string{"registry", "show", "harbor"}, 0,
			[]string{"Name:", "harbor", "Host:", "registry.internal", "Prefix:", "team/ml", "Username:", "robot", "Password:  set (never shown)", "Transport: HTTPS"}},
		{"show, no password", "", []string{"registry", "show", "open"}, 0, []string{"Password:  none"}},
		{"show insecure", "", []string{"registry", "show", "lab"}, 0, []string{"Transport: plain HTTP (insecure)", "Pull as:   devices (password set)"}},
		{"show, devices pull anonymously", "", []string{"registry", "show", "harbor"}, 0, []string{"Pull as:   anonymous"}},
		{"show json", "", []string{"registry", "show", "harbor", "-o", "json"}, 0, []string{`"hasPassword": true`, `"prefix": "team/ml"`}},

		{"missing --host", secret, []string{"registry", "create", "x", "--password-stdin"}, 2, []string{"--host"}},
		{"both password sources", secret, []string{"registry", "create", "x", "--host", "h", "--password-stdin", "--password-file", pwFile}, 2, []string{"not both"}},
		{"password as a flag", "", []string{"registry", "create", "x", "--host", "h", "--password", "oops-" + secret}, 2, []string{"--password-stdin or --password-file"}},
		{"empty stdin", "", []string{"registry", "create", "x", "--host", "h", "--password-stdin"}, 2, []string{"(field: password)"}},
		{"empty password file", "", []string{"registry", "create", "x", "--host", "h", "--password-file", emptyFile}, 2, []string{"(field: password)"}},
		{"missing password file", "", []string{"registry", "create", "x", "--host", "h", "--password-file", filepath.Join(h.dir, "nope")}, 2, []string{"--password-file"}},
		{"missing pull password file", "", []string{"registry", "create", "x", "--host", "h", "--pull-password-file", filepath.Join(h.dir, "nope")}, 2, []string{"--pull-password-file"}},
		{"host with a scheme", "", []string{"registry", "create", "x", "--host", "https://registry.internal"}, 2, []string{"(field: host)"}},
		{"bad name", "", []string{"registry", "create", "Bad_Name", "--host", "h"}, 2, []string{"(field: name)"}},
		{"no name", "", []string{"registry", "create", "--host", "h"}, 2, []string{"exactly one argument"}},
		{"duplicate", "", []string{"registry", "create", "harbor", "--host", "h"}, 1, []string{`create registry "harbor"`}},
		{"bad output", "", []string{"registry", "list", "-o", "yaml"}, 2, []string{"--output"}},
		{"show unknown", "", []string{"registry", "show", "ghost"}, 1, []string{`show registry "ghost"`, "not found"}},

		{"image create --registry ghost", "", []string{"image", "create", "iris", "--manifest", "iris:1", "--registry", "ghost"}, 2,
			[]string{`registry "ghost"`, "(field: registry)"}},

		{"delete", "", []string{"registry", "delete", "open"}, 0, []string{"Deleted registry open."}},
		{"show deleted", "", []string{"registry", "show", "open"}, 1, []string{"not found"}},
		{"delete unknown", "", []string{"registry", "delete", "ghost"}, 1, []string{`delete registry "ghost"`}},
	}
	for _, tt := range tests {
		out, errOut, code := run(tt.stdin, tt.args...)
		if code != tt.wantCode {
			t.Fatalf("%s: mlfleet %s: exit %d, want %d\nstdout: %s\nstderr: %s", tt.name, strings.Join(tt.args, " "), code, tt.wantCode, out, errOut)
		}
		where := out
		if code != 0 {
			where = errOut
			if strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, "error: ") {
				t.Errorf("%s: stderr is not one error line: %q", tt.name, errOut)
			}
		}
		for _, w := range tt.want {
			if !strings.Contains(where, w) {
				t.Errorf("%s: output %q does not contain %q", tt.name, where, w)
			}
		}
	}

	// The JSON is the API's record: no password field at all.
	var shown cloud.ExternalRegistry
	out, _, _ := run("", "registry", "show", "lab", "-o", "json")
	decodeStrictJSON(t, out, &shown)
	if shown.Name != "lab" || shown.Host != "10.0.0.5:5000" || shown.Username != "puller" || !shown.HasPassword || !shown.Insecure || shown.Password != "" {
		t.Errorf("registry show lab -o json = %+v", shown)
	}
	var listed []cloud.ExternalRegistry
	out, _, _ = run("", "registry", "list", "-o", "json")
	decodeStrictJSON(t, out, &listed)
	if len(listed) != 2 || listed[0].Name != "harbor" || listed[1].Name != "lab" {
		t.Errorf("registry list -o json = %+v", listed)
	}

	// image create --registry pushes with the stored credentials, exactly
	// as given (one trailing newline dropped).
	h.must("model", "register", filepath.Join("testdata", "affine.onnx"), "--name", "affine")
	h.must("manifest", "create", "--name", "affine", "--model", "affine:1")
	for _, tt := range []struct {
		registry, repo, user, password string
		insecure                       bool
	}{
		{"harbor", "registry.internal/team/ml/affine", "robot", secret, false},
		{"lab", "10.0.0.5:5000/affine", "puller", "file-" + secret, true},
	} {
		before := len(builder.requests())
		out, errOut, code := run("", "image", "create", "affine", "--manifest", "affine:1", "--registry", tt.registry)
		if code != 0 {
			t.Fatalf("image create --registry %s: exit %d\nstdout: %s\nstderr: %s", tt.registry, code, out, errOut)
		}
		if !strings.Contains(errOut, "for external registry "+tt.registry) || !strings.Contains(out, "affine") {
			t.Errorf("image create --registry %s:\nstdout: %s\nstderr: %s", tt.registry, out, errOut)
		}
		reqs := builder.requests()
		if len(reqs) != before+1 {
			t.Fatalf("image create --registry %s: %d build requests, want %d", tt.registry, len(reqs), before+1)
		}
		r := reqs[len(reqs)-1]
		if r.Repository != tt.repo || r.Username != tt.user || r.Password != tt.password || r.Insecure != tt.insecure || r.Local {
			t.Errorf("image create --registry %s built %s as %q (password %t) insecure %t local %t; want %s as %q insecure %t",
				tt.registry, r.Repository, r.Username, r.Password == tt.password, r.Insecure, r.Local, tt.repo, tt.user, tt.insecure)
		}
	}
	// Without --registry the image goes to the cloud's own registry.
	h.must("image", "create", "affine", "--manifest", "affine:1")
	if reqs := builder.requests(); !reqs[len(reqs)-1].Local {
		t.Errorf("image create without --registry: %+v is not local", reqs[len(reqs)-1].Repository)
	}

	if s := seen.String(); strings.Contains(s, secret) {
		t.Errorf("a registry password was printed:\n%s", s)
	}
}

// TestRegistryHelp checks that the password has no plain flag in the help
// and that the help says what devices get.
func TestRegistryHelp(t *testing.T) {
	var out bytes.Buffer
	if code := Main(t.Context(), []string{"registry", "create", "--help"}, Env{Stdout: &out}); code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	help := out.String()
	for _, w := range []string{"Examples:", "--password-stdin", "--password-file", "--insecure", "plain HTTP", "--pull-username", "--pull-password-file", "stays in the cloud", "read-only"} {
		if !strings.Contains(help, w) {
			t.Errorf("registry create --help does not say %q:\n%s", w, help)
		}
	}
	if strings.Contains(help, "--password string") {
		t.Errorf("registry create --help offers --password:\n%s", help)
	}
	out.Reset()
	if code := Main(t.Context(), []string{"image", "create", "--help"}, Env{Stdout: &out}); code != 0 || !strings.Contains(out.String(), "--registry") {
		t.Errorf("image create --help: exit %d, no --registry:\n%s", code, out.String())
	}
}
