package examples

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemo runs the README's main command (make demo = scripts/demo.sh up)
// end to end on real containerd, then make demo-down.
func TestDemo(t *testing.T) {
	env := []string{"MLFLEET_DEMO_DIR=" + t.TempDir(), "BIN=" + t.TempDir(), "MLFLEET_DEMO_CONTAINERD_DIR=/tmp/mlfleet-demo-test"}
	script := filepath.Join("..", "scripts", "demo.sh")
	down := exec.Command("bash", script, "down")
	down.Env = append(down.Environ(), env...)
	t.Cleanup(func() {
		if out, err := down.CombinedOutput(); err != nil {
			t.Errorf("demo down: %v\n%s", err, out)
		}
	})
	up := exec.Command("bash", script, "up")
	up.Env = append(up.Environ(), env...)
	out, err := up.CombinedOutput()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}
	for _, want := range []string{
		"rollout 000001 of iris to iris:1: Succeeded",
		`{"result":[{"label":0,`,
		"rollout 000002 of iris to iris:2: Succeeded",
		"1 device(s): 1 run iris:2 (1 healthy).",
		"model layer", "already in the registry",
		"make demo-down",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}
