// Package edge is the mlfleet device daemon: it enrolls with the cloud, syncs
// desired and reported state over MQTT, runs scoring services as containers,
// serves them through a local gateway, and keeps serving when offline.
//
// This file holds the contract between the daemon and its container runtime
// (implemented on containerd in edge/internal/containerd).
package edge

import (
	"context"
	"time"

	"github.com/mlfleet/mlfleet/shared/twin"
)

// Runtime runs service instances as containers. Implementations are safe for
// concurrent use. Every method that blocks takes ctx first and honours its
// deadline.
type Runtime interface {
	// Pull fetches the image (a reference pinned by digest) for the host's
	// platform, with auth if not nil. A failed or cancelled pull leaves no
	// lease or partial content behind. Pulling an image already present is
	// cheap. Errors name the image (they are reported to the cloud as is).
	Pull(ctx context.Context, image string, auth *twin.PullAuth) error
	// HasImage reports whether the image is present locally.
	HasImage(ctx context.Context, image string) (bool, error)
	// Start creates and starts an instance. The container shares the host's
	// network and its scorer listens on 127.0.0.1:<spec.Port>; it runs with
	// a read-only root fs, as non-root, with no new privileges, the given
	// env and limits, and its output in a rotated log file.
	Start(ctx context.Context, spec InstanceSpec) (Instance, error)
	// Stop sends SIGTERM, waits up to grace, then SIGKILL; then deletes the
	// container and its snapshot. Stopping a missing instance is not an error.
	Stop(ctx context.Context, id string, grace time.Duration) error
	// List returns the instances of this daemon's namespace, running or not.
	List(ctx context.Context) ([]Instance, error)
	// Restart starts again an instance whose task is gone (after a reboot or
	// a containerd restart) from its existing container.
	Restart(ctx context.Context, id string) (Instance, error)
	// GC removes images not in keep (and their content).
	GC(ctx context.Context, keep []string) error
	// FreeBytes reports the free space where images are stored.
	FreeBytes(ctx context.Context) (uint64, error)
	Close() error
}

// InstanceSpec describes one container of a service version.
type InstanceSpec struct {
	// ID names the container: unique, [a-z0-9-], e.g. "<service>-<12 hex of digest>-<n>".
	ID      string
	Service string
	Image   string
	// Port is the host port the scorer must listen on (passed as
	// MLFLEET_ADDR=127.0.0.1:<port>).
	Port      int
	Env       map[string]string
	Resources twin.Resources
	// LogPath is the file the container's stdout/stderr go to.
	LogPath string
	// HandoffDir, when set, is a host directory the runtime creates and
	// mounts at /run/mlfleet for the scorer to create its handoff socket in
	// (MLFLEET_HANDOFF_SOCKET=/run/mlfleet/handoff.sock), and removes when
	// the instance stops. The gateway hands client connections over on it.
	HandoffDir string
}

// HandoffSocket is the name of the scorer's handoff socket in
// InstanceSpec.HandoffDir.
const HandoffSocket = "handoff.sock"

// InstanceState is what the runtime knows of an instance.
type InstanceState string

// Instance states.
const (
	InstanceRunning InstanceState = "running"
	InstanceStopped InstanceState = "stopped" // task exited; ExitCode set
	InstanceNoTask  InstanceState = "no-task" // container exists, no task (reboot)
)

// Instance is a container the runtime manages.
type Instance struct {
	ID        string
	Service   string
	Image     string
	Port      int
	State     InstanceState
	ExitCode  uint32
	StartedAt time.Time
}
