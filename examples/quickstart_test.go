// Package examples holds mlfleet's runnable examples, their models and data,
// and the tests that keep the README's commands true.
package examples

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestQuickstart runs the README's main command (scripts/quickstart.sh) end
// to end: build, start the cloud, walk the CLI through the main flow.
func TestQuickstart(t *testing.T) {
	cmd := exec.Command("bash", filepath.Join("..", "scripts", "quickstart.sh"))
	cmd.Env = append(cmd.Environ(), "MLFLEET_QUICKSTART_DIR="+t.TempDir(), "BIN="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("quickstart failed: %v\n%s", err, out)
	}
	for _, want := range []string{"Logged in to", "iris  1        onnx", `"runtime": "onnx"`, "alice  Reader", "# Done"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("quickstart output lacks %q:\n%s", want, out)
		}
	}
}
