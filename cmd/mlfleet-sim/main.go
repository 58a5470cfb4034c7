// Command mlfleet-sim simulates a fleet of mlfleet-edge devices in one
// process, each on its own MQTT connection speaking the real device
// protocol, with a simulated container runtime (see package edge/sim).
//
//	mlfleet-sim --cloud URL --admin-token T --subscription S --account A --devices N
//	            [--labels k=v,...] [--mqtt URL] [--fail-rate 0.05] [--crash-rate 0]
//	            [--fail-image IMAGE=REASON ...] [--pull-time 5s] [--start-time 2s]
//	            [--jitter 0.5] [--connect-rate 200] [--enroll-concurrency 16]
//	            [--seed 1] [--progress 5s] [--save-identities F]
//	mlfleet-sim --identities F [--mqtt URL] ...   (reuse devices enrolled before)
//
// Enrollment tokens are one-time, so mlfleet-sim creates one per device
// through the REST API with the admin token, enrolls the devices, then runs
// the fleet until SIGINT/SIGTERM, printing a progress line every few seconds.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mlfleet/mlfleet/edge/sim"
	"github.com/mlfleet/mlfleet/shared/errclass"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// options are the parsed flags.
type options struct {
	cloud, adminToken, subscription, account string
	devices                                  int
	labels                                   map[string]string
	mqttURL                                  string
	identities, saveIdentities               string
	enrollConcurrency                        int
	progress                                 time.Duration
	jitter                                   float64
	verbose                                  bool
	cfg                                      sim.Config
}

// run returns the exit code: 0 ok, 2 bad usage or input, 1 anything else.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if err == nil {
		err = simulate(ctx, o, stdout, stderr)
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errclass.Is(err, errclass.InvalidArgument):
		fmt.Fprintln(stderr, "mlfleet-sim:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "mlfleet-sim:", err)
		return 1
	}
}

// failImages is the repeatable --fail-image IMAGE=REASON flag.
type failImages map[string]string

func (f failImages) String() string { return fmt.Sprint(map[string]string(f)) }
func (f failImages) Set(v string) error {
	img, reason, ok := strings.Cut(v, "=")
	if !ok || img == "" || reason == "" {
		return errclass.Invalid("fail-image", "--fail-image %q is not IMAGE=REASON", v)
	}
	f[img] = reason
	return nil
}

func parse(args []string, stderr io.Writer) (*options, error) {
	o := &options{cfg: sim.Config{FailImages: failImages{}}}
	fs := flag.NewFlagSet("mlfleet-sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.cloud, "cloud", "", "cloud base URL, e.g. http://127.0.0.1:8480")
	fs.StringVar(&o.adminToken, "admin-token", "", "API token allowed to create enrollment tokens (Contributor on the account)")
	fs.StringVar(&o.subscription, "subscription", "", "subscription of the model management account")
	fs.StringVar(&o.account, "account", "", "model management account the devices join")
	fs.IntVar(&o.devices, "devices", 0, "number of devices to enroll and simulate")
	labels := fs.String("labels", "", "labels for the enrolled devices: k=v,k2=v2")
	fs.StringVar(&o.mqttURL, "mqtt", "", "broker URL (default: the one the cloud gives at enrollment)")
	fs.StringVar(&o.identities, "identities", "", "JSON file of identities enrolled before (skips enrollment)")
	fs.StringVar(&o.saveIdentities, "save-identities", "", "write the enrolled identities to this JSON file (mode 0600)")
	fs.IntVar(&o.enrollConcurrency, "enroll-concurrency", 16, "enrollments in flight at once")
	fs.DurationVar(&o.progress, "progress", 5*time.Second, "interval of progress lines")
	fs.Float64Var(&o.cfg.FailRate, "fail-rate", 0, "probability that an update fails (RolledBack or Failed)")
	fs.Float64Var(&o.cfg.CrashRate, "crash-rate", 0, "probability that a started version crashes and is rolled back")
	fs.Var(failImages(o.cfg.FailImages), "fail-image", "IMAGE=REASON: this image always fails (repeatable)")
	fs.DurationVar(&o.cfg.PullTime, "pull-time", 5*time.Second, "simulated pull time")
	fs.DurationVar(&o.cfg.StartTime, "start-time", 2*time.Second, "simulated start time")
	fs.Float64Var(&o.jitter, "jitter", 0.5, "jitter of pull and start times, as a fraction of them")
	fs.Float64Var(&o.cfg.ConnectRate, "connect-rate", 200, "new connections per second")
	fs.Int64Var(&o.cfg.Seed, "seed", time.Now().UnixNano(), "seed of the random draws")
	fs.BoolVar(&o.verbose, "v", false, "log every device event")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errclass.Wrap(errclass.InvalidArgument, err, "flags")
	}
	if fs.NArg() > 0 {
		return nil, errclass.Invalid("args", "unexpected arguments %q", fs.Args())
	}
	var err error
	if o.labels, err = parseLabels(*labels); err != nil {
		return nil, err
	}
	if o.jitter < 0 || o.jitter > 1 {
		return nil, errclass.Invalid("jitter", "--jitter %g is not within [0, 1]", o.jitter)
	}
	o.cfg.PullJitter = time.Duration(o.jitter * float64(o.cfg.PullTime))
	o.cfg.StartJitter = time.Duration(o.jitter * float64(o.cfg.StartTime))
	if o.progress <= 0 {
		return nil, errclass.Invalid("progress", "--progress %s must be positive", o.progress)
	}
	if o.identities != "" {
		return o, nil
	}
	switch {
	case o.cloud == "":
		return nil, errclass.Invalid("cloud", "--cloud is required (or --identities)")
	case o.adminToken == "":
		return nil, errclass.Invalid("admin-token", "--admin-token is required to create enrollment tokens")
	case o.subscription == "" || o.account == "":
		return nil, errclass.Invalid("account", "--subscription and --account are required")
	case o.devices < 1:
		return nil, errclass.Invalid("devices", "--devices %d is below 1", o.devices)
	case o.enrollConcurrency < 1:
		return nil, errclass.Invalid("enroll-concurrency", "--enroll-concurrency %d is below 1", o.enrollConcurrency)
	}
	return o, nil
}

func parseLabels(s string) (map[string]string, error) {
	if s == "" {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, errclass.Invalid("labels", "label %q is not k=v", kv)
		}
		out[k] = v
	}
	return out, nil
}

func simulate(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelDebug
	}
	o.cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ids, err := identities(ctx, o, stdout)
	if err != nil {
		return err
	}
	o.cfg.Devices = ids
	o.cfg.MQTTURL = o.mqttURL
	if o.cfg.MQTTURL == "" {
		o.cfg.MQTTURL = ids[0].MQTTURL
	}
	fleet, err := sim.New(o.cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "simulating %d devices on %s (seed %d); SIGINT stops\n", len(ids), o.cfg.MQTTURL, o.cfg.Seed)
	done := make(chan error, 1)
	go func() { done <- fleet.Run(ctx) }()
	tick := time.NewTicker(o.progress)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			printProgress(stdout, fleet.Stats())
			return err
		case <-tick.C:
			printProgress(stdout, fleet.Stats())
		}
	}
}

func printProgress(w io.Writer, s sim.Stats) {
	fmt.Fprintf(w, "%s online %d/%d connects %d errors %d sent %d received %d stale %d malformed %d | %s\n",
		time.Now().Format(time.TimeOnly), s.Online, s.Devices, s.Connects, s.ConnectErrors, s.Sent, s.Received,
		s.Stale, s.Malformed, s.PhaseLine())
}

// identities loads identities from a file or enrolls new devices, creating
// one enrollment token per device through the REST API.
func identities(ctx context.Context, o *options, stdout io.Writer) ([]sim.Identity, error) {
	if o.identities != "" {
		raw, err := os.ReadFile(o.identities)
		if err != nil {
			return nil, errclass.Wrap(errclass.InvalidArgument, err, "read --identities")
		}
		var ids []sim.Identity
		if err := json.Unmarshal(raw, &ids); err != nil || len(ids) == 0 {
			return nil, errclass.Invalid("identities", "%s is not a non-empty JSON list of identities (%v)", o.identities, err)
		}
		if o.devices > 0 && o.devices < len(ids) {
			ids = ids[:o.devices]
		}
		return ids, nil
	}
	tokens, err := sim.CloudTokens(o.cloud, o.adminToken, o.subscription, o.account, o.labels)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	ids, err := sim.Enroll(ctx, o.cloud, tokens, o.devices, o.enrollConcurrency)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "enrolled %d devices in %s\n", len(ids), time.Since(start).Round(time.Millisecond))
	if o.saveIdentities != "" {
		raw, err := json.MarshalIndent(ids, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(o.saveIdentities, raw, 0o600); err != nil {
			return nil, fmt.Errorf("write --save-identities: %w", err)
		}
	}
	return ids, nil
}
