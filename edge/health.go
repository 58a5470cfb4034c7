package edge

import (
	"context"
	"maps"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/mlfleet/mlfleet/edge/internal/boltstore"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// healthMonitor counts consecutive probe failures per running instance.
type healthMonitor struct {
	mu        sync.Mutex
	fails     map[string]int
	threshold map[string]int
}

func newHealthMonitor() *healthMonitor {
	return &healthMonitor{fails: map[string]int{}, threshold: map[string]int{}}
}

// record notes one probe result and reports whether the instance's verdict
// (failing or not, unhealthy or not) changed.
func (h *healthMonitor) record(id string, threshold int, ok bool) (changed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	before := h.fails[id]
	h.threshold[id] = threshold
	if ok {
		delete(h.fails, id)
	} else {
		h.fails[id] = before + 1
	}
	after := h.fails[id]
	return (before == 0) != (after == 0) || (before < threshold) != (after < threshold)
}

// forget drops instances not in keep.
func (h *healthMonitor) forget(keep map[string]bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	maps.DeleteFunc(h.fails, func(id string, _ int) bool { return !keep[id] })
	maps.DeleteFunc(h.threshold, func(id string, _ int) bool { return !keep[id] })
}

// failing is the set of instances whose last probe failed.
func (h *healthMonitor) failing() map[string]bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]bool{}
	for id := range h.fails {
		out[id] = true
	}
	return out
}

// unhealthy is the set of instances that failed threshold probes in a row.
func (h *healthMonitor) unhealthy() map[string]bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]bool{}
	for id, n := range h.fails {
		if n >= h.threshold[id] {
			out[id] = true
		}
	}
	return out
}

func (d *Daemon) healthLoop(ctx context.Context) error {
	t := time.NewTicker(d.cfg.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		states, err := d.store.Services()
		if err != nil {
			d.log.Error("read services", "err", err)
			continue
		}
		if d.probeAll(ctx, states) {
			d.report()
			d.Kick()
		}
	}
}

// probeAll probes every serving instance once, in parallel, and reports
// whether any verdict changed.
func (d *Daemon) probeAll(ctx context.Context, states map[string]boltstore.ServiceState) bool {
	keep := map[string]bool{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	changed := false
	for _, st := range states {
		if st.Instance == "" || st.Port == 0 || (st.Phase != twin.Running && st.Phase != twin.RolledBack) {
			continue
		}
		keep[st.Instance] = true
		spec := st.Spec.WithDefaults()
		wg.Go(func() {
			u := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(st.Port)) + spec.Health.Path
			err := HTTPProbe(ctx, u, time.Duration(spec.Health.TimeoutMs)*time.Millisecond)
			if ctx.Err() != nil {
				return
			}
			if d.health.record(st.Instance, spec.Health.FailureThreshold, err == nil) {
				d.log.Info("health changed", "service", st.Name, "instance", st.Instance, "err", err)
				mu.Lock()
				changed = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	d.health.forget(keep)
	return changed
}
