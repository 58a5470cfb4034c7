// Command mlfleet-edge is the mlfleet device daemon.
//
//	mlfleet-edge enroll --cloud URL --token T [--name N] [--data-dir D]
//	mlfleet-edge run [--data-dir D] [--gateway-addr A] [--gateway-key-file F]
//	                 [--containerd-address S] [--namespace NS] [--telemetry-window 60s]
//
// Every flag can also be set by an environment variable named
// MLFLEET_EDGE_<FLAG> (upper case, dashes as underscores).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/mlfleet/mlfleet/edge"
	"github.com/mlfleet/mlfleet/edge/daemon"
	"github.com/mlfleet/mlfleet/shared/errclass"
)

const defaultDataDir = "/var/lib/mlfleet-edge"

func main() {
	// Devices are small: collect garbage at half the default heap growth
	// unless the operator chose (GOGC, GOMEMLIMIT).
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: mlfleet-edge enroll --cloud URL --token T [--name N] [--data-dir D]")
	fmt.Fprintln(w, "       mlfleet-edge run [--data-dir D] [--gateway-addr A] [--gateway-key-file F] [--gateway-proxy-only] [--containerd-address S] [--namespace NS] [--telemetry-window D]")
}

// run executes one command and returns the exit code: 0 ok, 2 bad usage or
// input, 1 anything else.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "enroll":
		err = enroll(ctx, args[1:], stdout, stderr)
	case "run":
		err = runDaemon(ctx, args[1:], stderr)
	case "version":
		fmt.Fprintln(stdout, edge.Agent)
	case "help", "-h", "--help":
		usage(stdout)
	default:
		usage(stderr)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage) || errclass.Is(err, errclass.InvalidArgument):
		fmt.Fprintln(stderr, "mlfleet-edge:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "mlfleet-edge:", err)
		return 1
	}
}

var errUsage = errors.New("bad usage")

// flags makes a flag set whose defaults come from MLFLEET_EDGE_* variables.
func flags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func env(flagName, def string) string {
	if v, ok := os.LookupEnv("MLFLEET_EDGE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))); ok {
		return v
	}
	return def
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

func enroll(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flags("enroll", stderr)
	host, _ := os.Hostname()
	cfg := edge.EnrollConfig{}
	fs.StringVar(&cfg.Cloud, "cloud", env("cloud", ""), "cloud base URL, e.g. http://cloud:8480")
	fs.StringVar(&cfg.Token, "token", env("token", ""), "one-time enrollment token (mle_...)")
	fs.StringVar(&cfg.Name, "name", env("name", host), "device name")
	fs.StringVar(&cfg.DataDir, "data-dir", env("data-dir", defaultDataDir), "state directory")
	if err := parse(fs, args); err != nil {
		return err
	}
	if cfg.Cloud == "" || cfg.Token == "" {
		return fmt.Errorf("%w: --cloud and --token are required", errUsage)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	id, err := edge.Enroll(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "enrolled as device %s (state in %s)\n", id, edge.StatePath(cfg.DataDir))
	return nil
}

func runDaemon(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flags("run", stderr)
	var cfg edge.Config
	var keyFile, window, level string
	fs.StringVar(&cfg.DataDir, "data-dir", env("data-dir", defaultDataDir), "state directory")
	fs.StringVar(&cfg.GatewayAddr, "gateway-addr", env("gateway-addr", "127.0.0.1:8580"), "scoring gateway listen address")
	fs.StringVar(&keyFile, "gateway-key-file", env("gateway-key-file", ""), "file holding the gateway's local Bearer key (optional)")
	fs.BoolVar(&cfg.GatewayProxyOnly, "gateway-proxy-only", env("gateway-proxy-only", "") == "true", "proxy every request instead of handing keep-alive connections to the scorers")
	fs.StringVar(&cfg.ContainerdAddress, "containerd-address", env("containerd-address", "/run/containerd/containerd.sock"), "containerd socket")
	fs.StringVar(&cfg.ContainerdNamespace, "namespace", env("namespace", "mlfleet"), "containerd namespace")
	fs.StringVar(&window, "telemetry-window", env("telemetry-window", "60s"), "telemetry collection window")
	fs.StringVar(&level, "log-level", env("log-level", "info"), "debug, info, warn or error")
	if err := parse(fs, args); err != nil {
		return err
	}
	var err error
	if cfg.TelemetryWindow, err = time.ParseDuration(window); err != nil || cfg.TelemetryWindow < time.Second {
		return errclass.Invalid("telemetry-window", "telemetry window %q is not a duration of at least 1s", window)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return errclass.Invalid("log-level", "log level %q is not debug, info, warn or error", level)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	if keyFile != "" {
		key, err := os.ReadFile(keyFile)
		if err != nil {
			return errclass.Wrap(errclass.InvalidArgument, err, "gateway key file %s", keyFile)
		}
		if cfg.GatewayKey = strings.TrimSpace(string(key)); cfg.GatewayKey == "" {
			return errclass.Invalid("gateway-key-file", "gateway key file %s is empty", keyFile)
		}
	}
	d, err := daemon.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Run(ctx)
}
