package containerd

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/mlfleet/mlfleet/edge"
	"github.com/mlfleet/mlfleet/shared/errclass"
)

// Container labels: what List needs to rebuild an edge.Instance.
const (
	labelService = "mlfleet.service"
	labelImage   = "mlfleet.image"
	labelPort    = "mlfleet.port"
	labelLog     = "mlfleet.log"
	labelStarted = "mlfleet.started"
	labelHandoff = "mlfleet.handoff"
)

// handoffMount is where an instance's handoff directory is mounted.
const handoffMount = "/run/mlfleet"

// nonRootUID is the user a container runs as when its image names none (or root).
const nonRootUID = 65532

// cpuPeriod is the CFS period (µs) CPU quotas are expressed in.
const cpuPeriod = 100000

// minCPUQuota is the smallest CFS quota (µs) the kernel accepts.
const minCPUQuota = 1000

// tmpSize bounds the tmpfs mounted on /tmp.
const tmpSize = 64 << 20

// validEnvKey reports whether k can be an environment variable name.
func validEnvKey(k string) bool {
	if k == "" || len(k) > 256 {
		return false
	}
	for i, c := range k {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// checkSpec validates spec and returns its image's normalized name.
func checkSpec(spec edge.InstanceSpec) (string, error) {
	if err := validID("id", spec.ID); err != nil {
		return "", err
	}
	if spec.Service == "" || len(spec.Service) > 253 || strings.ContainsAny(spec.Service, "\x00\n") {
		return "", errclass.Invalid("service", "service %q must be 1-253 bytes without NUL or newline", spec.Service)
	}
	name, err := parseImage("image", spec.Image)
	if err != nil {
		return "", err
	}
	if spec.Port < 1 || spec.Port > 65535 {
		return "", errclass.Invalid("port", "port %d is not in 1-65535", spec.Port)
	}
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		if !validEnvKey(k) {
			return "", errclass.Invalid("env", "env name %q must match [A-Za-z_][A-Za-z0-9_]*", k)
		}
		if k == "MLFLEET_ADDR" {
			return "", errclass.Invalid("env", "env %s is set by the runtime from port", k)
		}
		if strings.ContainsRune(spec.Env[k], 0) {
			return "", errclass.Invalid("env", "env %s holds a NUL byte", k)
		}
	}
	if spec.Resources.MemoryBytes < 0 {
		return "", errclass.Invalid("resources.memoryBytes", "resources.memoryBytes %d is negative", spec.Resources.MemoryBytes)
	}
	if spec.Resources.CPUMillis < 0 {
		return "", errclass.Invalid("resources.cpuMillis", "resources.cpuMillis %d is negative", spec.Resources.CPUMillis)
	}
	if spec.LogPath != "" && (!filepath.IsAbs(spec.LogPath) || len(spec.LogPath) > 1024) {
		return "", errclass.Invalid("logPath", "logPath %q is not an absolute path of at most 1024 bytes", spec.LogPath)
	}
	return name, nil
}

func (r *Runtime) logPath(spec edge.InstanceSpec) string {
	if spec.LogPath != "" {
		return filepath.Clean(spec.LogPath)
	}
	return filepath.Join(r.cfg.StateDir, "logs", spec.ID+".log")
}

// hostOpts is the part of a container's spec that does not depend on its
// image: host network, read-only root, no privileges, limits, env, /tmp,
// and the handoff directory if any.
func hostOpts(spec edge.InstanceSpec) []oci.SpecOpts {
	env := make([]string, 0, len(spec.Env)+1)
	for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
		env = append(env, k+"="+spec.Env[k])
	}
	env = append(env, "MLFLEET_ADDR="+addr(spec.Port))
	mounts := []specs.Mount{{
		Destination: "/tmp",
		Type:        "tmpfs",
		Source:      "tmpfs",
		Options:     []string{"nosuid", "nodev", "mode=1777", "size=" + strconv.Itoa(tmpSize)},
	}}
	if spec.HandoffDir != "" {
		env = append(env, "MLFLEET_HANDOFF_SOCKET="+handoffMount+"/"+edge.HandoffSocket)
		mounts = append(mounts, specs.Mount{
			Destination: handoffMount,
			Type:        "bind",
			Source:      spec.HandoffDir,
			Options:     []string{"rbind", "rw", "nosuid", "nodev", "noexec"},
		})
	}
	var caps []string
	if spec.Port < 1024 {
		caps = []string{"CAP_NET_BIND_SERVICE"}
	}
	opts := []oci.SpecOpts{
		oci.WithEnv(env),
		oci.WithHostNamespace(specs.NetworkNamespace),
		oci.WithHostHostsFile,
		oci.WithHostResolvconf,
		oci.WithRootFSReadonly(),
		oci.WithNoNewPrivileges,
		oci.WithCapabilities(caps),
		oci.WithMounts(mounts),
	}
	if m := spec.Resources.MemoryBytes; m > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(m)))
	}
	if c := spec.Resources.CPUMillis; c > 0 {
		quota := c * cpuPeriod / 1000
		if quota < minCPUQuota {
			quota = minCPUQuota
		}
		opts = append(opts, oci.WithCPUCFS(quota, cpuPeriod))
	}
	return opts
}

func addr(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// withNonRoot makes the process run as nonRootUID if the image left it root,
// and drops the root group from it.
func withNonRoot(ctx context.Context, client oci.Client, c *containers.Container, s *oci.Spec) error {
	if s.Process == nil {
		s.Process = &specs.Process{}
	}
	if s.Process.User.UID == 0 {
		if err := oci.WithUserID(nonRootUID)(ctx, client, c, s); err != nil {
			return err
		}
		if s.Process.User.GID == 0 {
			s.Process.User.GID = nonRootUID
		}
	}
	gids := []uint32{s.Process.User.GID}
	for _, g := range s.Process.User.AdditionalGids {
		if g != 0 && !slices.Contains(gids, g) {
			gids = append(gids, g)
		}
	}
	s.Process.User.AdditionalGids = gids
	return nil
}

// ownedByProcess gives dir to the container's user, so that its scorer can
// create its socket there (the directory stays 0700).
func ownedByProcess(dir string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			return nil
		}
		if err := os.Chown(dir, int(s.Process.User.UID), int(s.Process.User.GID)); err != nil {
			return fmt.Errorf("handoff directory: %w", err)
		}
		return nil
	}
}

// Start creates the container of spec from its (already pulled) image and
// starts its task. The process runs as the image's user, or as uid/gid 65532
// if the image names none or root; with no capabilities (but
// CAP_NET_BIND_SERVICE for a port under 1024); in the host's network
// namespace, with the host's /etc/hosts and /etc/resolv.conf; on a read-only
// root with a 64 MiB tmpfs on /tmp. Env is the image's, then spec.Env, then
// MLFLEET_ADDR=127.0.0.1:<port>. A task that starts and then exits is not an
// error here: List reports it as stopped with its exit code.
func (r *Runtime) Start(ctx context.Context, spec edge.InstanceSpec) (_ edge.Instance, err error) {
	name, err := checkSpec(spec)
	if err != nil {
		return edge.Instance{}, err
	}
	ctx = r.ctx(ctx)
	img, err := r.client.GetImage(ctx, name)
	if err != nil {
		if isNotFound(err) {
			return edge.Instance{}, errclass.New(errclass.FailedPrecondition, "image", "start %s: image %s is not pulled", spec.ID, name)
		}
		return edge.Instance{}, classify(err, "start %s: look up image %s", spec.ID, name)
	}
	logPath := r.logPath(spec)
	if err := prepareLog(logPath, r.cfg.LogMaxBytes); err != nil {
		return edge.Instance{}, fmt.Errorf("start %s: %w", spec.ID, err)
	}
	now := time.Now().UTC()
	labels := map[string]string{
		labelService: spec.Service,
		labelImage:   spec.Image, // as the caller wrote it, to compare with its desired state
		labelPort:    strconv.Itoa(spec.Port),
		labelLog:     logPath,
		labelStarted: now.Format(time.RFC3339Nano),
	}
	if spec.HandoffDir != "" {
		if err := os.MkdirAll(spec.HandoffDir, 0o700); err != nil {
			return edge.Instance{}, fmt.Errorf("start %s: handoff directory: %w", spec.ID, err)
		}
		labels[labelHandoff] = spec.HandoffDir
		defer func() {
			if err != nil && !errclass.Is(err, errclass.Conflict) { // a conflict: the dir is the existing instance's
				_ = os.RemoveAll(spec.HandoffDir)
			}
		}()
	}
	specOpts := append([]oci.SpecOpts{oci.WithImageConfig(img)}, hostOpts(spec)...)
	specOpts = append(specOpts, withNonRoot)
	if spec.HandoffDir != "" {
		specOpts = append(specOpts, ownedByProcess(spec.HandoffDir))
	}
	c, err := r.client.NewContainer(ctx, spec.ID,
		containerd.WithImage(img),
		containerd.WithSnapshotter(r.cfg.Snapshotter),
		containerd.WithNewSnapshot(spec.ID, img),
		containerd.WithNewSpec(specOpts...),
		containerd.WithContainerLabels(labels))
	if err != nil {
		if classOf(err) == errclass.Conflict {
			return edge.Instance{}, errclass.Wrap(errclass.Conflict, err, "start %s: instance exists", spec.ID)
		}
		return edge.Instance{}, classify(err, "start %s: create container", spec.ID)
	}
	defer func() {
		if err != nil {
			dctx, cancel := cleanupCtx(ctx)
			defer cancel()
			_ = c.Delete(dctx, containerd.WithSnapshotCleanup)
		}
	}()
	if err := r.startTask(ctx, c, logPath); err != nil {
		return edge.Instance{}, fmt.Errorf("start %s: %w", spec.ID, err)
	}
	return edge.Instance{
		ID:        spec.ID,
		Service:   spec.Service,
		Image:     spec.Image,
		Port:      spec.Port,
		State:     edge.InstanceRunning,
		StartedAt: now,
	}, nil
}

// startTask creates and starts c's task with its output in logPath.
func (r *Runtime) startTask(ctx context.Context, c containerd.Container, logPath string) (err error) {
	task, err := c.NewTask(ctx, cio.LogFile(logPath))
	if err != nil {
		return classify(err, "create task")
	}
	defer func() {
		if err != nil {
			dctx, cancel := cleanupCtx(ctx)
			defer cancel()
			_, _ = task.Delete(dctx, containerd.WithProcessKill)
		}
	}()
	if err := task.Start(ctx); err != nil {
		return classify(err, "start task")
	}
	return nil
}

// cleanupCtx gives undo work a context that survives ctx's cancellation.
func cleanupCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

// Stop stops id's task (SIGTERM, then SIGKILL after grace) and deletes the
// container with its snapshot. The log file stays.
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration) error {
	if err := validID("id", id); err != nil {
		return err
	}
	if grace < 0 {
		return errclass.Invalid("grace", "grace %s is negative", grace)
	}
	ctx = r.ctx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return classify(err, "stop %s: load container", id)
	}
	task, err := c.Task(ctx, nil)
	switch {
	case err == nil:
		if err := stopTask(ctx, task, grace); err != nil {
			return fmt.Errorf("stop %s: %w", id, err)
		}
	case !isNotFound(err):
		return classify(err, "stop %s: load task", id)
	}
	labels, lerr := c.Labels(ctx)
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !isNotFound(err) {
		return classify(err, "stop %s: delete container", id)
	}
	if dir := labels[labelHandoff]; lerr == nil && dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("stop %s: remove handoff directory: %w", id, err)
		}
	}
	return nil
}

// stopTask ends task: SIGTERM, up to grace for it to exit, then SIGKILL;
// then deletes it.
func stopTask(ctx context.Context, task containerd.Task, grace time.Duration) error {
	st, err := task.Status(ctx)
	if err != nil && !isNotFound(err) {
		return classify(err, "task status")
	}
	if err == nil && st.Status == containerd.Running {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		exited, err := task.Wait(wctx)
		if err != nil {
			return classify(err, "wait for task")
		}
		if err := task.Kill(ctx, syscall.SIGTERM); err != nil && !isNotFound(err) {
			return classify(err, "send SIGTERM")
		}
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-exited:
		case <-ctx.Done():
			return errclass.Wrap(errclass.Unavailable, ctx.Err(), "wait for exit after SIGTERM")
		case <-timer.C:
			if err := task.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !isNotFound(err) {
				return classify(err, "send SIGKILL after grace %s", grace)
			}
			select {
			case <-exited:
			case <-ctx.Done():
				return errclass.Wrap(errclass.Unavailable, ctx.Err(), "wait for exit after SIGKILL")
			}
		}
	}
	if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !isNotFound(err) {
		return classify(err, "delete task")
	}
	return nil
}

// List returns this runtime's instances (the containers of the namespace
// that carry the mlfleet.service label), sorted by ID.
func (r *Runtime) List(ctx context.Context) ([]edge.Instance, error) {
	ctx = r.ctx(ctx)
	cs, err := r.client.Containers(ctx, `labels."`+labelService+`"`)
	if err != nil {
		return nil, classify(err, "list containers")
	}
	out := make([]edge.Instance, 0, len(cs))
	for _, c := range cs {
		inst, err := r.instance(ctx, c)
		if err != nil {
			if isNotFound(err) {
				continue // deleted meanwhile
			}
			return nil, err
		}
		out = append(out, inst)
	}
	slices.SortFunc(out, func(a, b edge.Instance) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// instance reads c's labels and task state.
func (r *Runtime) instance(ctx context.Context, c containerd.Container) (edge.Instance, error) {
	info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return edge.Instance{}, classify(err, "read container %s", c.ID())
	}
	inst := instanceFromLabels(info.ID, info.Labels)
	if inst.Image == "" {
		inst.Image = info.Image
	}
	if inst.StartedAt.IsZero() {
		inst.StartedAt = info.CreatedAt
	}
	inst.State = edge.InstanceNoTask
	task, err := c.Task(ctx, nil)
	if err != nil {
		if isNotFound(err) {
			return inst, nil
		}
		return edge.Instance{}, classify(err, "load task of %s", c.ID())
	}
	st, err := task.Status(ctx)
	if err != nil {
		if isNotFound(err) {
			return inst, nil
		}
		return edge.Instance{}, classify(err, "status of task %s", c.ID())
	}
	switch st.Status {
	case containerd.Running, containerd.Paused, containerd.Pausing:
		inst.State = edge.InstanceRunning
	case containerd.Created:
		inst.State = edge.InstanceNoTask // created, never started: Restart starts it
	default: // Stopped, Unknown
		inst.State = edge.InstanceStopped
		inst.ExitCode = st.ExitStatus
	}
	return inst, nil
}

// instanceFromLabels rebuilds what it can of an instance from its labels;
// labels that do not parse are left zero.
func instanceFromLabels(id string, labels map[string]string) edge.Instance {
	inst := edge.Instance{ID: id, Service: labels[labelService], Image: labels[labelImage]}
	if p, err := strconv.Atoi(labels[labelPort]); err == nil && p > 0 && p <= 65535 {
		inst.Port = p
	}
	if t, err := time.Parse(time.RFC3339Nano, labels[labelStarted]); err == nil {
		inst.StartedAt = t
	}
	return inst
}

// Restart creates and starts a new task for id's existing container. It
// refuses (Conflict) if the task is running; a stopped task is deleted first.
func (r *Runtime) Restart(ctx context.Context, id string) (edge.Instance, error) {
	if err := validID("id", id); err != nil {
		return edge.Instance{}, err
	}
	ctx = r.ctx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		if isNotFound(err) {
			return edge.Instance{}, errclass.Wrap(errclass.NotFound, err, "restart %s: no such instance", id)
		}
		return edge.Instance{}, classify(err, "restart %s: load container", id)
	}
	task, err := c.Task(ctx, nil)
	switch {
	case err == nil:
		st, err := task.Status(ctx)
		if err != nil && !isNotFound(err) {
			return edge.Instance{}, classify(err, "restart %s: task status", id)
		}
		if err == nil && (st.Status == containerd.Running || st.Status == containerd.Paused || st.Status == containerd.Pausing) {
			return edge.Instance{}, errclass.Conflictf("restart %s: task is %s", id, st.Status)
		}
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil && !isNotFound(err) {
			return edge.Instance{}, classify(err, "restart %s: delete old task", id)
		}
	case !isNotFound(err):
		return edge.Instance{}, classify(err, "restart %s: load task", id)
	}
	labels, err := c.Labels(ctx)
	if err != nil {
		return edge.Instance{}, classify(err, "restart %s: read labels", id)
	}
	logPath := labels[labelLog]
	if logPath == "" {
		logPath = r.logPath(edge.InstanceSpec{ID: id})
	}
	if err := prepareLog(logPath, r.cfg.LogMaxBytes); err != nil {
		return edge.Instance{}, fmt.Errorf("restart %s: %w", id, err)
	}
	if err := r.startTask(ctx, c, logPath); err != nil {
		return edge.Instance{}, fmt.Errorf("restart %s: %w", id, err)
	}
	now := time.Now().UTC()
	labels[labelStarted] = now.Format(time.RFC3339Nano)
	if _, err := c.SetLabels(ctx, map[string]string{labelStarted: labels[labelStarted]}); err != nil {
		return edge.Instance{}, classify(err, "restart %s: record start time", id)
	}
	inst := instanceFromLabels(id, labels)
	inst.State = edge.InstanceRunning
	return inst, nil
}
