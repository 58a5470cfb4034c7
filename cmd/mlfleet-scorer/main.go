// Command mlfleet-scorer is the scoring server inside every mlfleet image:
// it serves the model named by the image's manifest over HTTP. See package
// images/scorer.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/mlfleet/mlfleet/images/scorer"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mlfleet-scorer:", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func run(args []string) error {
	fs := flag.NewFlagSet("mlfleet-scorer", flag.ContinueOnError)
	var cfg scorer.Config
	fs.StringVar(&cfg.Manifest, "manifest", env("MLFLEET_MANIFEST", scorer.DefaultManifest), "manifest document (env MLFLEET_MANIFEST)")
	fs.StringVar(&cfg.ModelDir, "model-dir", env("MLFLEET_MODEL_DIR", scorer.DefaultModelDir), "directory of the model files (env MLFLEET_MODEL_DIR)")
	fs.StringVar(&cfg.Addr, "addr", env("MLFLEET_ADDR", scorer.DefaultAddr), "listen address (env MLFLEET_ADDR)")
	maxBody := fs.Int64("max-body-bytes", int64(envInt("MLFLEET_MAX_BODY_BYTES", scorer.DefaultMaxBodyBytes)), "largest request body (env MLFLEET_MAX_BODY_BYTES)")
	fs.IntVar(&cfg.MaxRows, "max-rows", envInt("MLFLEET_MAX_ROWS", scorer.DefaultMaxRows), "most rows per request (env MLFLEET_MAX_ROWS)")
	fs.IntVar(&cfg.Workers, "workers", envInt("MLFLEET_WORKERS", 0), "requests scored at once; 0 = GOMAXPROCS (env MLFLEET_WORKERS)")
	fs.IntVar(&cfg.QueueSize, "queue", envInt("MLFLEET_QUEUE", scorer.DefaultQueueSize), "requests waiting for a worker (env MLFLEET_QUEUE)")
	fs.StringVar(&cfg.HandoffSocket, "handoff-socket", env("MLFLEET_HANDOFF_SOCKET", ""), "unix socket on which mlfleet-edge hands client connections over (env MLFLEET_HANDOFF_SOCKET)")
	window := fs.Duration("profile-window", scorer.DefaultProfileWindow, "drift profile window (env MLFLEET_PROFILE_WINDOW)")
	if v, err := time.ParseDuration(os.Getenv("MLFLEET_PROFILE_WINDOW")); err == nil {
		*window = v
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg.MaxBodyBytes = *maxBody
	cfg.ProfileWindow = *window
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	s, err := scorer.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return s.Run(ctx)
}
