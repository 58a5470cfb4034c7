// Package daemon assembles the real mlfleet-edge daemon: the bbolt state
// file, the containerd runtime and the MQTT sync, wired into edge.Daemon.
// It is the one place where the real adapters meet; cmd/mlfleet-edge calls
// it, and end-to-end tests can too.
package daemon

import (
	"context"
	"fmt"

	"github.com/mlfleet/mlfleet/edge"
	"github.com/mlfleet/mlfleet/edge/internal/containerd"
)

var _ edge.Runtime = (*containerd.Runtime)(nil)

// NewRuntime connects to containerd as cfg says.
func NewRuntime(ctx context.Context, cfg edge.Config) (edge.Runtime, error) {
	rt, err := containerd.New(ctx, containerd.Config{
		Address:   cfg.ContainerdAddress,
		Namespace: cfg.ContainerdNamespace,
		StateDir:  cfg.DataDir,
		// Refuse to start a pull with less than this free where images
		// live, rather than fill the device's disk.
		MinFreeBytes: 128 << 20,
	})
	if err != nil {
		return nil, fmt.Errorf("container runtime: %w", err)
	}
	// A daemon killed mid-pull leaves its pull lease (and the partial
	// content it pins) behind: nothing of this daemon pulls yet, so every
	// pull lease in its namespace is stale.
	n, err := rt.DropStaleLeases(ctx)
	if err != nil {
		_ = rt.Close()
		return nil, fmt.Errorf("container runtime: %w", err)
	}
	if n > 0 && cfg.Logger != nil {
		cfg.Logger.Info("dropped stale pull leases", "count", n, "namespace", cfg.ContainerdNamespace)
	}
	return rt, nil
}

// Open builds the daemon on containerd and the state file in cfg.DataDir.
// cfg's zero fields get edge's defaults.
func Open(ctx context.Context, cfg edge.Config) (*edge.Daemon, error) {
	cfg = edge.WithDefaults(cfg)
	rt, err := NewRuntime(ctx, cfg)
	if err != nil {
		return nil, err
	}
	d, err := edge.Open(cfg, rt)
	if err != nil {
		_ = rt.Close()
		return nil, err
	}
	return d, nil
}
