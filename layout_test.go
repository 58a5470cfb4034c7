package mlfleet

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/mlfleet/mlfleet"

// imports maps every package of the module to its direct imports.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		m[f[0]] = f[1:]
	}
	return m
}

func std(imp string) bool { return !strings.Contains(strings.Split(imp, "/")[0], ".") }

func under(pkg, dir string) bool {
	return pkg == module+"/"+dir || strings.HasPrefix(pkg, module+"/"+dir+"/")
}

// TestLayout enforces DESIGN.md's dependency directions.
func TestLayout(t *testing.T) {
	for pkg, imps := range imports(t) {
		for _, imp := range imps {
			switch {
			case under(pkg, "shared") && !std(imp) && !under(imp, "shared"):
				t.Errorf("%s imports %s: shared/ is standard library only", pkg, imp)
			case under(pkg, "images") && !std(imp) && !under(imp, "shared") && !under(imp, "images"):
				t.Errorf("%s imports %s: images/ imports only shared/", pkg, imp)
			case under(pkg, "cloud") && under(imp, "edge"), under(pkg, "edge") && under(imp, "cloud"):
				t.Errorf("%s imports %s: cloud/ and edge/ never import each other", pkg, imp)
			}
		}
	}
}

func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", pkg).Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// TestBinaryDeps keeps cloud-only dependencies out of the binaries that run
// on devices and inside images.
func TestBinaryDeps(t *testing.T) {
	for _, d := range deps(t, "./cmd/mlfleet-edge") {
		for _, bad := range []string{module + "/cloud", "github.com/labstack/echo", "github.com/mochi-mqtt",
			"github.com/distribution/distribution", "github.com/google/go-containerregistry/pkg/v1/mutate"} {
			if d == bad || strings.HasPrefix(d, bad+"/") {
				t.Errorf("mlfleet-edge links %s", d)
			}
		}
	}
	// The scorer is pure Go: the standard library, shared/ and images/ only.
	for _, d := range deps(t, "./cmd/mlfleet-scorer") {
		if !std(d) && !under(d, "shared") && !under(d, "images") && d != module+"/cmd/mlfleet-scorer" {
			t.Errorf("mlfleet-scorer links %s", d)
		}
	}
}
