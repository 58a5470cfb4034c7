package edge

import (
	"os/exec"
	"strings"
	"testing"
)

// TestEdgeBinaryDeps keeps the edge binary small: it must not link the
// cloud, echo, the test broker, or the image builder.
func TestEdgeBinaryDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/mlfleet/mlfleet/cmd/mlfleet-edge").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/mlfleet/mlfleet/cloud",
		"github.com/labstack/echo",
		"github.com/mochi-mqtt",
		"github.com/google/go-containerregistry/pkg/v1/mutate",
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if pkg == f || strings.HasPrefix(pkg, f+"/") {
				t.Errorf("mlfleet-edge links %s", pkg)
			}
		}
	}
}
