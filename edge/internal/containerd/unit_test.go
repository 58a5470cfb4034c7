package containerd

// Tests that need no containerd: validation, labels, log rotation, and the
// golden OCI runtime spec the runtime gives every container.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"

	"github.com/mlfleet/mlfleet/edge"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/twin"
)

var update = flag.Bool("update", false, "rewrite golden files")

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseImage(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"127.0.0.1:5000/scorer@" + testDigest, "127.0.0.1:5000/scorer@" + testDigest, true},
		{"registry.example/team/model@" + testDigest, "registry.example/team/model@" + testDigest, true},
		{"scorer@" + testDigest, "docker.io/library/scorer@" + testDigest, true},
		{"registry.example/a/b:v1@" + testDigest, "registry.example/a/b:v1@" + testDigest, true},
		{"registry.example/a/b:v1", "", false},
		{"registry.example/a/b", "", false},
		{"registry.example/a/b@sha256:abc", "", false},
		{"", "", false},
		{"r.example/UPPER@" + testDigest, "", false},
		{strings.Repeat("a", 1100) + "@" + testDigest, "", false},
	}
	for _, tt := range tests {
		got, err := parseImage("image", tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseImage(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && (errclass.ClassOf(err) != errclass.InvalidArgument || errclass.FieldOf(err) != "image") {
			t.Errorf("parseImage(%q) error %v is not InvalidArgument on field image", tt.in, err)
		}
	}
}

func FuzzParseImage(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1:5000/scorer@" + testDigest, "scorer@" + testDigest, "a/b:v1", "", "@", "a@sha256:",
		"[::1]:5000/x@" + testDigest, "a/b:c@" + testDigest,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseImage("image", s)
		if err != nil {
			if errclass.ClassOf(err) != errclass.InvalidArgument {
				t.Fatalf("parseImage(%q): unclassified error %v", s, err)
			}
			return
		}
		if !strings.Contains(got, "@sha256:") && !strings.Contains(got, "@") {
			t.Fatalf("parseImage(%q) = %q has no digest", s, got)
		}
		again, err := parseImage("image", got)
		if err != nil || again != got {
			t.Fatalf("parseImage not idempotent: %q -> %q -> %q, %v", s, got, again, err)
		}
	})
}

func TestInstanceFromLabels(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	tests := []struct {
		name   string
		labels map[string]string
		want   edge.Instance
	}{
		{"all", map[string]string{labelService: "s", labelImage: "i", labelPort: "8080", labelStarted: at.Format(time.RFC3339Nano)},
			edge.Instance{ID: "x", Service: "s", Image: "i", Port: 8080, StartedAt: at}},
		{"none", nil, edge.Instance{ID: "x"}},
		{"bad port", map[string]string{labelPort: "99999"}, edge.Instance{ID: "x"}},
		{"port not a number", map[string]string{labelPort: "http"}, edge.Instance{ID: "x"}},
		{"bad time", map[string]string{labelStarted: "yesterday"}, edge.Instance{ID: "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := instanceFromLabels("x", tt.labels); got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzInstanceFromLabels(f *testing.F) {
	f.Add("svc", "img", "8080", "2026-01-02T03:04:05Z")
	f.Add("", "", "-1", "")
	f.Fuzz(func(t *testing.T, svc, img, port, started string) {
		in := instanceFromLabels("x", map[string]string{labelService: svc, labelImage: img, labelPort: port, labelStarted: started})
		if in.Port < 0 || in.Port > 65535 {
			t.Fatalf("port %d from label %q", in.Port, port)
		}
	})
}

func TestCheckSpec(t *testing.T) {
	good := edge.InstanceSpec{ID: "svc-0123456789ab-1", Service: "svc", Image: "r.example/s@" + testDigest, Port: 8080}
	tests := []struct {
		name  string
		mod   func(*edge.InstanceSpec)
		field string // "" for valid
	}{
		{"good", func(*edge.InstanceSpec) {}, ""},
		{"id upper", func(s *edge.InstanceSpec) { s.ID = "Svc" }, "id"},
		{"id too long", func(s *edge.InstanceSpec) { s.ID = strings.Repeat("a", 64) }, "id"},
		{"id leading dash", func(s *edge.InstanceSpec) { s.ID = "-a" }, "id"},
		{"service newline", func(s *edge.InstanceSpec) { s.Service = "a\nb" }, "service"},
		{"port high", func(s *edge.InstanceSpec) { s.Port = 65536 }, "port"},
		{"env digit first", func(s *edge.InstanceSpec) { s.Env = map[string]string{"1A": "x"} }, "env"},
		{"env NUL", func(s *edge.InstanceSpec) { s.Env = map[string]string{"A": "x\x00"} }, "env"},
		{"cpu negative", func(s *edge.InstanceSpec) { s.Resources.CPUMillis = -5 }, "resources.cpuMillis"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := good
			tt.mod(&s)
			_, err := checkSpec(s)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("checkSpec: %v", err)
				}
				return
			}
			if errclass.ClassOf(err) != errclass.InvalidArgument || errclass.FieldOf(err) != tt.field {
				t.Fatalf("checkSpec: %v, want InvalidArgument on %s", err, tt.field)
			}
		})
	}
}

func TestRotateLog(t *testing.T) {
	tests := []struct {
		name     string
		existing map[string]string // suffix -> content
		max      int64
		live     bool
		rotated  bool
		want     map[string]string // suffix -> content after; "-" means absent
	}{
		{"missing file", nil, 1, false, false, map[string]string{"": "-"}},
		{"small enough", map[string]string{"": "abc"}, 3, false, false, map[string]string{"": "abc", ".1": "-"}},
		{"rename", map[string]string{"": "abcd"}, 3, false, true, map[string]string{"": "-", ".1": "abcd"}},
		{"shift keeps two", map[string]string{"": "new!", ".1": "old", ".2": "older"}, 3, false, true,
			map[string]string{"": "-", ".1": "new!", ".2": "old", ".3": "-"}},
		{"live copies and truncates", map[string]string{"": "abcd", ".1": "old"}, 3, true, true,
			map[string]string{"": "", ".1": "abcd", ".2": "old"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.log")
			for suf, c := range tt.existing {
				if err := os.WriteFile(path+suf, []byte(c), 0o640); err != nil {
					t.Fatal(err)
				}
			}
			rotated, err := rotateLog(path, tt.max, tt.live)
			if err != nil || rotated != tt.rotated {
				t.Fatalf("rotateLog = %v, %v; want %v", rotated, err, tt.rotated)
			}
			for suf, want := range tt.want {
				b, err := os.ReadFile(path + suf)
				got := string(b)
				if os.IsNotExist(err) {
					got = "-"
				} else if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Errorf("%s%s holds %q, want %q", "x.log", suf, got, want)
				}
			}
		})
	}
}

func TestPrepareLogCreatesDirAndFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "x.log")
	if err := prepareLog(path, 10); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Size() != 0 || st.Mode().Perm() != 0o640 {
		t.Fatalf("log file: %v, %v", st, err)
	}
}

// TestSpecGolden pins the image-independent part of every container's OCI
// runtime spec (host network, read-only root, no privileges, limits, env,
// /tmp). Run with -update to rewrite testdata/spec.golden.json.
func TestSpecGolden(t *testing.T) {
	spec := edge.InstanceSpec{
		ID: "svc-0123456789ab-1", Service: "svc", Image: "r.example/s@" + testDigest, Port: 8080,
		Env:        map[string]string{"B": "2", "A": "1"},
		Resources:  twin.Resources{MemoryBytes: 128 << 20, CPUMillis: 250},
		HandoffDir: "/var/lib/mlfleet-edge/handoff/svc-0123456789ab-1",
	}
	ctx := namespaces.WithNamespace(context.Background(), "golden")
	s, err := oci.GenerateSpecWithPlatform(ctx, nil, "linux/amd64", &containers.Container{ID: spec.ID}, hostOpts(spec)...)
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden := filepath.Join("testdata", "spec.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("spec differs from %s (run with -update if the change is meant):\n%s", golden, got)
	}
}

func TestPlainHTTP(t *testing.T) {
	tests := []struct {
		auth *twin.PullAuth
		host string
		want bool
	}{
		{nil, "localhost:5000", true},
		{nil, "127.0.0.1:5000", true},
		{nil, "registry.example:5000", false},
		{&twin.PullAuth{Username: "u", Password: "p"}, "registry.example:5000", false},
		{&twin.PullAuth{PlainHTTP: true}, "registry.example:5000", true},
		{&twin.PullAuth{Username: "u", Password: "p", PlainHTTP: true}, "10.0.0.7:8480", true},
	}
	for _, tt := range tests {
		got, err := plainHTTP(tt.auth)(tt.host)
		if err != nil || got != tt.want {
			t.Errorf("plainHTTP(%+v)(%q) = %v, %v; want %v", tt.auth, tt.host, got, err, tt.want)
		}
	}
}

func TestClassOf(t *testing.T) {
	tests := []struct {
		err  error
		want errclass.Class
	}{
		{context.DeadlineExceeded, errclass.Unavailable},
		{errclass.Invalid("x", "bad"), errclass.Unknown},
		{os.ErrClosed, errclass.Unknown},
	}
	for _, tt := range tests {
		if got := classOf(tt.err); got != tt.want {
			t.Errorf("classOf(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}
