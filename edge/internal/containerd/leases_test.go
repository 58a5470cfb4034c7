package containerd

import (
	"testing"

	"github.com/containerd/containerd/v2/core/leases"
)

// TestDropStaleLeases: the pull leases a killed daemon left are dropped,
// other leases are not.
func TestDropStaleLeases(t *testing.T) {
	r := newRuntime(t, nil)
	ctx := r.ctx(testCtx(t))
	lm := r.client.LeasesService()
	tests := []struct {
		name   string
		labels map[string]string
		stale  bool
	}{
		{"pull lease of a killed daemon", map[string]string{"mlfleet.pull": "example.org/a@sha256:00"}, true},
		{"another pull lease", map[string]string{"mlfleet.pull": "example.org/b@sha256:00"}, true},
		{"someone else's lease", map[string]string{"other": "x"}, false},
	}
	ids := map[string]bool{}
	for _, tc := range tests {
		l, err := lm.Create(ctx, leases.WithRandomID(), leases.WithLabels(tc.labels))
		if err != nil {
			t.Fatalf("%s: create lease: %v", tc.name, err)
		}
		ids[l.ID] = tc.stale
		if !tc.stale {
			t.Cleanup(func() { _ = lm.Delete(ctx, l) })
		}
	}
	n, err := r.DropStaleLeases(ctx)
	if err != nil || n != 2 {
		t.Fatalf("DropStaleLeases = %d, %v; want 2, nil", n, err)
	}
	left, err := lm.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range left {
		if ids[l.ID] {
			t.Errorf("stale lease %s %v left", l.ID, l.Labels)
		}
		delete(ids, l.ID)
	}
	for id, stale := range ids {
		if !stale {
			t.Errorf("lease %s that is not a pull lease was dropped", id)
		}
	}
	if n, err := r.DropStaleLeases(ctx); err != nil || n != 0 {
		t.Fatalf("second DropStaleLeases = %d, %v; want 0, nil", n, err)
	}
}
