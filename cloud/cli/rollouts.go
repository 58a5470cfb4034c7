package cli

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/client"
	"github.com/mlfleet/mlfleet/shared/errclass"
)

// watchInterval is how often --watch reads the rollout.
const watchInterval = time.Second

// maxBatchFlag bounds the text of one --batch value.
const maxBatchFlag = 32

// parseBatch parses one --batch value: "10%" is a percentage of the
// environment's devices, "5" a number of devices.
func parseBatch(s string) (cloud.BatchSpec, error) {
	bad := func(why string) (cloud.BatchSpec, error) {
		return cloud.BatchSpec{}, errclass.Invalid("batch", "invalid --batch %q: %s (want a device count like 5 or a percentage like 10%%)", s, why)
	}
	if len(s) > maxBatchFlag {
		return bad("too long")
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		if p == "" || strings.ContainsAny(p, "+-eEnNiIxX_ ") {
			return bad("not a number")
		}
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return bad("not a number")
		}
		if f <= 0 || f > 100 {
			return bad("the percentage must be in (0, 100]")
		}
		return cloud.BatchSpec{Percent: f}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || strconv.Itoa(n) != s {
		return bad("not a whole number")
	}
	if n < 1 {
		return bad("the count must be at least 1")
	}
	return cloud.BatchSpec{Count: n}, nil
}

// rolloutFlags are the flags that tune a rollout.
type rolloutFlags struct {
	batches                        []string
	successThreshold, errThreshold float64
	soak, deviceTimeout            time.Duration
	maxUnavailable                 int
	maxErrorRate, maxP99Ms         float64
	sloMinRequests                 int
	watch                          bool
}

func (rf *rolloutFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&rf.batches, "batch", nil, "batch size, a count (5) or a percentage (10%) of the devices; repeatable, in order; devices left over form a last batch")
	fl.Float64Var(&rf.successThreshold, "success-threshold", 0, "fraction (0-1] of a batch that must become healthy to go on (default 1)")
	fl.DurationVar(&rf.soak, "soak", 0, "how long a finished batch must stay healthy before the next one")
	fl.DurationVar(&rf.deviceTimeout, "device-timeout", 0, "how long a device may take to report healthy (default 10m)")
	fl.Float64Var(&rf.errThreshold, "error-threshold", 0, "fraction [0-1) of the devices that may fail before the rollout reverts (default 0)")
	fl.IntVar(&rf.maxUnavailable, "max-unavailable", 0, "at most this many devices of a batch update at once (0: the whole batch)")
	fl.Float64Var(&rf.maxErrorRate, "max-error-rate", 0, "SLO gate: a device of the batch fails if more than this fraction [0-1) of its scoring requests on the new image answer 5xx (not gated unless set)")
	fl.Float64Var(&rf.maxP99Ms, "max-p99-ms", 0, "SLO gate: a device of the batch fails if its p99 scoring latency on the new image is over this many milliseconds (not gated unless set)")
	fl.IntVar(&rf.sloMinRequests, "slo-min-requests", 0, "SLO gate: judge a device only once its window has this many scoring requests (default 20)")
	fl.BoolVar(&rf.watch, "watch", false, "follow the rollout until it ends (exit 0 Succeeded, 1 Reverted or Aborted)")
}

// durationSeconds turns a duration flag into whole seconds (rounded up).
func durationSeconds(flag string, d time.Duration) (int, error) {
	if d < 0 || d > 7*24*time.Hour {
		return 0, errclass.Invalid(flag, "invalid --%s %s: must be between 0 and 168h", flag, d)
	}
	return int((d + time.Second - 1) / time.Second), nil
}

// spec builds the rollout spec; set says whether any flag was given.
func (rf *rolloutFlags) spec(cmd *cobra.Command) (spec cloud.RolloutSpec, set bool, err error) {
	for _, f := range []string{"batch", "success-threshold", "soak", "device-timeout", "error-threshold", "max-unavailable", "max-error-rate", "max-p99-ms", "slo-min-requests"} {
		set = set || cmd.Flags().Changed(f)
	}
	for _, b := range rf.batches {
		bs, err := parseBatch(b)
		if err != nil {
			return spec, set, err
		}
		spec.Batches = append(spec.Batches, bs)
	}
	if t := rf.successThreshold; cmd.Flags().Changed("success-threshold") && (!(t > 0) || t > 1) {
		return spec, set, errclass.Invalid("success-threshold", "invalid --success-threshold %v: want a fraction in (0, 1]", t)
	}
	if t := rf.errThreshold; !(t >= 0) || t >= 1 {
		return spec, set, errclass.Invalid("error-threshold", "invalid --error-threshold %v: want a fraction in [0, 1)", t)
	}
	if rf.maxUnavailable < 0 {
		return spec, set, errclass.Invalid("max-unavailable", "invalid --max-unavailable %d: must not be negative", rf.maxUnavailable)
	}
	if cmd.Flags().Changed("device-timeout") && rf.deviceTimeout < time.Second {
		return spec, set, errclass.Invalid("device-timeout", "invalid --device-timeout %s: must be at least 1s", rf.deviceTimeout)
	}
	if cmd.Flags().Changed("max-error-rate") {
		if r := rf.maxErrorRate; !(r >= 0) || r >= 1 {
			return spec, set, errclass.Invalid("max-error-rate", "invalid --max-error-rate %v: want a fraction in [0, 1)", r)
		}
		spec.SLO = &cloud.SLOGate{MaxErrorRate: &rf.maxErrorRate}
	}
	if cmd.Flags().Changed("max-p99-ms") {
		if p := rf.maxP99Ms; !(p > 0) || p > 3600e3 {
			return spec, set, errclass.Invalid("max-p99-ms", "invalid --max-p99-ms %v: want milliseconds in (0, 3600000]", p)
		}
		if spec.SLO == nil {
			spec.SLO = &cloud.SLOGate{}
		}
		spec.SLO.MaxP99Ms = &rf.maxP99Ms
	}
	if cmd.Flags().Changed("slo-min-requests") {
		if spec.SLO == nil {
			return spec, set, usagef("--slo-min-requests needs an SLO gate: --max-error-rate or --max-p99-ms")
		}
		if n := rf.sloMinRequests; n < 1 || n > 1e9 {
			return spec, set, errclass.Invalid("slo-min-requests", "invalid --slo-min-requests %d: want 1 to 1000000000", n)
		}
		spec.SLO.MinRequests = rf.sloMinRequests
	}
	spec.SuccessThreshold, spec.ErrorThreshold, spec.MaxUnavailable = rf.successThreshold, rf.errThreshold, rf.maxUnavailable
	if spec.SoakSeconds, err = durationSeconds("soak", rf.soak); err != nil {
		return spec, set, err
	}
	if spec.DeviceTimeoutSeconds, err = durationSeconds("device-timeout", rf.deviceTimeout); err != nil {
		return spec, set, err
	}
	return spec, set, nil
}

// deviceStates are the device outcome states in the order they are shown.
var deviceStates = []string{cloud.DevicePending, cloud.DeviceUpdating, cloud.DeviceHealthy, cloud.DeviceFailed, cloud.DeviceReverted}

// rolloutEnded reports whether a rollout is over.
func rolloutEnded(ro *cloud.Rollout) bool {
	return ro.State == cloud.RolloutSucceeded || ro.State == cloud.RolloutReverted || ro.State == cloud.RolloutAborted
}

// batchProgress is "k/n": the current batch (1-based) of n.
func batchProgress(ro *cloud.Rollout) string {
	n := len(ro.BatchSize)
	return fmt.Sprintf("%d/%d", min(ro.Batch+1, n), n)
}

func countsLine(ro *cloud.Rollout) string {
	parts := make([]string, 0, len(deviceStates))
	for _, s := range deviceStates {
		parts = append(parts, fmt.Sprintf("%s %d", s, ro.Counts[s]))
	}
	return strings.Join(parts, ", ")
}

// deviceRow is one device's outcome in a rollout.
type deviceRow struct {
	id string
	cloud.DeviceOutcome
}

// devicesIn lists the rollout's devices that keep accepts, by batch then id.
func devicesIn(ro *cloud.Rollout, keep func(cloud.DeviceOutcome) bool) []deviceRow {
	var out []deviceRow
	for id, o := range ro.Devices {
		if keep(o) {
			out = append(out, deviceRow{id, o})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Batch != out[j].Batch {
			return out[i].Batch < out[j].Batch
		}
		return out[i].id < out[j].id
	})
	return out
}

// watchLines renders a rollout's progress: a headline, then each failed
// device with its reason.
func watchLines(ro *cloud.Rollout) []string {
	head := fmt.Sprintf("rollout %s of %s to %s: %s, batch %s: %s", ro.ID, ro.Service, ro.To, ro.State, batchProgress(ro), countsLine(ro))
	if ro.Message != "" {
		head += " (" + strings.Join(strings.Fields(ro.Message), " ") + ")"
	}
	lines := []string{head}
	for _, d := range devicesIn(ro, func(o cloud.DeviceOutcome) bool {
		return o.State == cloud.DeviceFailed || (o.State == cloud.DeviceReverted && o.Reason != "")
	}) {
		lines = append(lines, fmt.Sprintf("  %s %s (batch %d): %s", strings.ToLower(d.State), d.id, d.Batch+1, cell(d.Reason)))
	}
	return lines
}

// watcher prints successive states of a rollout: on a terminal it redraws
// the block in place; otherwise it prints each line that changed, once.
type watcher struct {
	w        io.Writer
	terminal bool
	drawn    int             // lines drawn last time (terminal)
	printed  map[string]bool // lines already printed (plain)
}

func (wt *watcher) show(ro *cloud.Rollout) {
	lines := watchLines(ro)
	if wt.terminal {
		var b strings.Builder
		if wt.drawn > 0 {
			fmt.Fprintf(&b, "\x1b[%dA\x1b[J", wt.drawn)
		}
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
		io.WriteString(wt.w, b.String())
		wt.drawn = len(lines)
		return
	}
	if wt.printed == nil {
		wt.printed = map[string]bool{}
	}
	for _, l := range lines {
		if !wt.printed[l] {
			wt.printed[l] = true
			fmt.Fprintln(wt.w, l)
		}
	}
}

// rolloutOutcome is the error of a rollout that ended without success.
func rolloutOutcome(ro *cloud.Rollout) error {
	if ro.State == cloud.RolloutSucceeded {
		return nil
	}
	msg := ro.State
	if ro.Message != "" {
		msg += ": " + ro.Message
	}
	return fmt.Errorf("rollout %s of %s ended %s", ro.ID, ro.Service, msg)
}

// watchRollout follows a rollout until it ends, drawing its progress on
// stderr, then prints its status on stdout. It fails unless it Succeeded.
func (a *app) watchRollout(ctx context.Context, c *client.Client, cfg Config, service, id, format string) error {
	wt := &watcher{w: a.env.Stderr, terminal: a.env.Terminal}
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		ro, err := c.GetRollout(ctx, cfg.Subscription, cfg.Account, service, id)
		if err != nil {
			return fmt.Errorf("watch rollout %s of %s: %w", id, service, err)
		}
		wt.show(ro)
		if rolloutEnded(ro) {
			if err := printRolloutStatus(a.env.Stdout, format, ro); err != nil {
				return err
			}
			return rolloutOutcome(ro)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("watch rollout %s of %s: %w", id, service, ctx.Err())
		case <-t.C:
		}
	}
}

var rolloutTable = tabular[cloud.Rollout]{
	[]string{"ID", "SERVICE", "FROM", "TO", "STATE", "BATCH", "PENDING", "UPDATING", "HEALTHY", "FAILED", "REVERTED", "UPDATED"},
	func(r cloud.Rollout) []string {
		row := []string{r.ID, r.Service, r.From, r.To, r.State, batchProgress(&r)}
		for _, s := range deviceStates {
			row = append(row, strconv.Itoa(r.Counts[s]))
		}
		return append(row, ts(r.UpdatedAt))
	},
}

// printRolloutStatus prints a rollout: JSON, or its summary row, its
// message and a table of the devices that are not healthy.
func printRolloutStatus(w io.Writer, format string, ro *cloud.Rollout) error {
	if format == formatJSON {
		return writeJSON(w, ro)
	}
	if err := rolloutTable.print(w, formatTable, []cloud.Rollout{*ro}, true); err != nil {
		return err
	}
	if ro.Message != "" {
		fmt.Fprintf(w, "Message: %s\n", cell(ro.Message))
	}
	if ro.Spec.SLO != nil {
		fmt.Fprintf(w, "SLO gate: %s\n", ro.Spec.SLO)
	}
	devs := devicesIn(ro, func(o cloud.DeviceOutcome) bool { return o.State != cloud.DeviceHealthy })
	if len(devs) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	rows := make([][]string, 0, len(devs))
	for _, d := range devs {
		rows = append(rows, []string{d.id, strconv.Itoa(d.Batch + 1), d.State, d.Reason, ts(d.Since)})
	}
	return writeTable(w, []string{"DEVICE", "BATCH", "STATE", "REASON", "SINCE"}, rows)
}

// latestRollout finds a service's newest rollout.
func latestRollout(ctx context.Context, c *client.Client, cfg Config, service string) (*cloud.Rollout, error) {
	all, err := c.ListAllRollouts(ctx, cfg.Subscription, cfg.Account, service)
	if err != nil {
		return nil, err
	}
	var best *cloud.Rollout
	for i := range all {
		if best == nil || all[i].ID > best.ID {
			best = &all[i]
		}
	}
	if best == nil {
		return nil, errclass.NotFoundf("service %q has no rollouts", service)
	}
	return best, nil
}

// afterStart prints a rollout just started, or watches it.
func (a *app) afterStart(ctx context.Context, c *client.Client, cfg Config, ro *cloud.Rollout, watch bool, format string) error {
	if watch {
		return a.watchRollout(ctx, c, cfg, ro.Service, ro.ID, format)
	}
	return printRolloutStatus(a.env.Stdout, format, ro)
}

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s needs %s (got %d arguments)", cmd.CommandPath(), what, len(args))
		}
		return nil
	}
}

func (a *app) rolloutCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "rollout",
		Aliases: []string{"rollouts"},
		Short:   "Start, follow, pause, resume, abort and roll back rollouts of services",
		Example: `  mlfleet rollout start iris --image iris:3 --batch 10% --batch 50% --watch
  mlfleet rollout status iris --watch
  mlfleet rollout abort iris 000003`,
	}
	groupCommand(cmd)
	a.scopeFlags(cmd, needAcct)

	var rf rolloutFlags
	var image string
	start := &cobra.Command{
		Use:   "start SERVICE --image NAME:VERSION",
		Short: "Start moving a service's devices to another image version, in batches gated on health",
		Long: `Start moving a service's devices to another image version, in batches gated on health.

Each batch must become healthy (--success-threshold of it) and stay so for --soak before the next
one starts; when more than --error-threshold of the devices fail, the rollout stops and every
updated device goes back to the previous image.

SLO gates (--max-error-rate, --max-p99-ms) also fail a device of the batch whose telemetry on the
new image shows too many server errors (5xx answers to scoring requests) or too slow a p99
latency, from when it reported healthy until the soak ends; a device is judged once its window
holds --slo-min-requests scoring requests (default 20), and passes until then. The p99 is the upper bound of the latency-histogram bucket holding the 99th percentile.
Devices send telemetry once per telemetry window: keep --soak longer than a few windows.`,
		Example: `  mlfleet rollout start iris --image iris:3
  mlfleet rollout start iris --image iris:3 --batch 1 --batch 25% --soak 5m --error-threshold 0.1 --watch
  mlfleet rollout start iris --image iris:3 --batch 10% --soak 10m --max-error-rate 0.05 --max-p99-ms 100`,
		Args: exactArgs(1, "the service name"),
	}
	start.Flags().StringVar(&image, "image", "", "image version to roll out, NAME:VERSION (required)")
	rf.add(start)
	stout := addOutput(start)
	start.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*stout); err != nil {
			return err
		}
		if image == "" {
			return usagef("rollout start needs --image NAME:VERSION")
		}
		if _, _, err := parseVersionedRef("image", image); err != nil {
			return err
		}
		spec, _, err := rf.spec(cmd)
		if err != nil {
			return err
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		ro, err := c.StartRollout(cmd.Context(), cfg.Subscription, cfg.Account, args[0], cloud.RolloutRequest{Image: image, RolloutSpec: spec})
		if err != nil {
			return fmt.Errorf("start rollout of %s to %s: %w", args[0], image, err)
		}
		return a.afterStart(cmd.Context(), c, cfg, ro, rf.watch, *stout)
	})

	var statusWatch bool
	status := &cobra.Command{
		Use:   "status SERVICE [ID]",
		Short: "Show a rollout (the service's newest if ID is left out) and its devices that are not healthy",
		Example: `  mlfleet rollout status iris
  mlfleet rollout status iris 000002 -o json
  mlfleet rollout status iris --watch`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usagef("%s needs the service name and optionally a rollout ID (got %d arguments)", cmd.CommandPath(), len(args))
			}
			return nil
		},
	}
	status.Flags().BoolVar(&statusWatch, "watch", false, "follow the rollout until it ends (exit 0 Succeeded, 1 Reverted or Aborted)")
	sout := addOutput(status)
	status.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*sout); err != nil {
			return err
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		var ro *cloud.Rollout
		if len(args) == 2 {
			ro, err = c.GetRollout(cmd.Context(), cfg.Subscription, cfg.Account, args[0], args[1])
		} else {
			ro, err = latestRollout(cmd.Context(), c, cfg, args[0])
		}
		if err != nil {
			return fmt.Errorf("rollout status of %s: %w", args[0], err)
		}
		if statusWatch {
			return a.watchRollout(cmd.Context(), c, cfg, args[0], ro.ID, *sout)
		}
		return printRolloutStatus(a.env.Stdout, *sout, ro)
	})

	list := &cobra.Command{
		Use:     "list SERVICE",
		Short:   "List a service's rollouts",
		Example: `  mlfleet rollout list iris`,
		Args:    exactArgs(1, "the service name"),
	}
	lout := addOutput(list)
	list.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*lout); err != nil {
			return err
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		ros, err := c.ListAllRollouts(cmd.Context(), cfg.Subscription, cfg.Account, args[0])
		if err != nil {
			return fmt.Errorf("list rollouts of %s: %w", args[0], err)
		}
		return rolloutTable.print(a.env.Stdout, *lout, ros, false)
	})

	act := func(name, short, example string, call func(context.Context, *client.Client, Config, string, string) (*cloud.Rollout, error)) *cobra.Command {
		c := &cobra.Command{Use: name + " SERVICE ID", Short: short, Example: example, Args: exactArgs(2, "the service name and the rollout ID")}
		out := addOutput(c)
		c.RunE = a.run(func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(*out); err != nil {
				return err
			}
			cl, cfg, err := a.scope(needAcct)
			if err != nil {
				return err
			}
			ro, err := call(cmd.Context(), cl, cfg, args[0], args[1])
			if err != nil {
				return fmt.Errorf("%s rollout %s of %s: %w", name, args[1], args[0], err)
			}
			return printRolloutStatus(a.env.Stdout, *out, ro)
		})
		return c
	}
	pause := act("pause", "Pause a running rollout: no more devices are moved", `  mlfleet rollout pause iris 000003`,
		func(ctx context.Context, c *client.Client, cfg Config, svc, id string) (*cloud.Rollout, error) {
			return c.PauseRollout(ctx, cfg.Subscription, cfg.Account, svc, id)
		})
	resume := act("resume", "Resume a paused rollout", `  mlfleet rollout resume iris 000003`,
		func(ctx context.Context, c *client.Client, cfg Config, svc, id string) (*cloud.Rollout, error) {
			return c.ResumeRollout(ctx, cfg.Subscription, cfg.Account, svc, id)
		})
	abort := act("abort", "Abort a rollout: every device it moved goes back to the previous image", `  mlfleet rollout abort iris 000003`,
		func(ctx context.Context, c *client.Client, cfg Config, svc, id string) (*cloud.Rollout, error) {
			return c.AbortRollout(ctx, cfg.Subscription, cfg.Account, svc, id)
		})

	var rbWatch bool
	rollback := &cobra.Command{
		Use:   "rollback SERVICE",
		Short: "Roll a service back to its previous image (a new rollout)",
		Example: `  mlfleet rollout rollback iris
  mlfleet rollout rollback iris --watch`,
		Args: exactArgs(1, "the service name"),
	}
	rollback.Flags().BoolVar(&rbWatch, "watch", false, "follow the rollout until it ends (exit 0 Succeeded, 1 Reverted or Aborted)")
	rbout := addOutput(rollback)
	rollback.RunE = a.run(func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*rbout); err != nil {
			return err
		}
		c, cfg, err := a.scope(needAcct)
		if err != nil {
			return err
		}
		ro, err := c.RollbackService(cmd.Context(), cfg.Subscription, cfg.Account, args[0])
		if err != nil {
			return fmt.Errorf("roll back %s: %w", args[0], err)
		}
		return a.afterStart(cmd.Context(), c, cfg, ro, rbWatch, *rbout)
	})
	cmd.AddCommand(start, status, list, pause, resume, abort, rollback)
	return cmd
}
