// Command mlfleet-cloud runs the mlfleet control plane.
//
//	mlfleet-cloud init  [--data-dir D] [--admin NAME] [--token-file F]   create the first administrator
//	mlfleet-cloud serve [--data-dir D] [--addr HOST:PORT]                 serve the REST API
//
// Flags default from MLFLEET_DATA_DIR and MLFLEET_ADDR.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/mlfleet/mlfleet/cloud/server"
	"github.com/mlfleet/mlfleet/shared/errclass"
)

func main() {
	// A cloud's memory is mostly per-device state that lives as long as the
	// devices are connected; collecting at 50% growth instead of 100% keeps
	// a 10,000-device fleet's peak near 0.8 GB instead of 1 GB for a little
	// more CPU. GOGC or GOMEMLIMIT in the environment override it.
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetGCPercent(50)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

const usage = `usage: mlfleet-cloud <command> [flags]

commands:
  init    create the first administrator and write its token to a file
  serve   serve the REST API (the default)

Run 'mlfleet-cloud <command> -h' for a command's flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("mlfleet-cloud "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", env("MLFLEET_DATA_DIR", "mlfleet-data"), "directory for the cloud's state and blobs")
	var err error
	switch cmd {
	case "init":
		admin := fs.String("admin", "admin", "name of the first administrator")
		email := fs.String("email", "", "email of the first administrator")
		tokenFile := fs.String("token-file", "", "where to write the admin token (default <data-dir>/admin.token)")
		if fs.Parse(args) != nil {
			return 2
		}
		if *tokenFile == "" {
			*tokenFile = filepath.Join(*dataDir, "admin.token")
		}
		if _, err = server.Init(ctx, *dataDir, *admin, *email, *tokenFile); err == nil {
			fmt.Fprintf(stdout, "created administrator %q; token written to %s (mode 0600)\n", *admin, *tokenFile)
			fmt.Fprintf(stdout, "next: mlfleet-cloud serve --data-dir %s, then mlfleet login --token-file %s\n", *dataDir, *tokenFile)
		}
	case "serve":
		addr := fs.String("addr", env("MLFLEET_ADDR", "127.0.0.1:8480"), "HTTP listen address")
		maxModel := fs.Int64("max-model-bytes", 4<<30, "largest model upload accepted")
		mqttAddr := fs.String("mqtt-addr", env("MLFLEET_MQTT_ADDR", "127.0.0.1:1883"), "listen address of the embedded MQTT broker")
		mqttURL := fs.String("mqtt-url", env("MLFLEET_MQTT_URL", ""), "use this external MQTT broker (tcp://host:port) instead of the embedded one")
		mqttUser := fs.String("mqtt-user", env("MLFLEET_MQTT_USER", ""), "the cloud's username on the external broker")
		mqttPassFile := fs.String("mqtt-password-file", env("MLFLEET_MQTT_PASSWORD_FILE", ""), "file holding the cloud's password on the external broker")
		mosqDir := fs.String("mosquitto-dir", env("MLFLEET_MOSQUITTO_DIR", ""), "with --mqtt-url: keep mosquitto's password, ACL and config files here (include_dir it)")
		mosqPID := fs.String("mosquitto-pid-file", env("MLFLEET_MOSQUITTO_PID_FILE", ""), "mosquitto's pid file, to make it reload its password file")
		advertise := fs.String("advertise-url", env("MLFLEET_ADVERTISE_URL", ""), "cloud URL told to enrolling devices, and the registry host in image names (default: the listen address)")
		advertiseMQTT := fs.String("advertise-mqtt", env("MLFLEET_ADVERTISE_MQTT", ""), "MQTT URL told to enrolling devices (default: the broker's address)")
		if fs.Parse(args) != nil {
			return 2
		}
		mqttPass := ""
		if *mqttPassFile != "" {
			b, rerr := os.ReadFile(*mqttPassFile)
			if rerr != nil {
				fmt.Fprintf(stderr, "mlfleet-cloud: %v\n", rerr)
				return 2
			}
			mqttPass = strings.TrimSpace(string(b))
		}
		if addr := os.Getenv("MLFLEET_PPROF_ADDR"); addr != "" {
			// Profiling for operators, on its own (loopback) listener.
			go func() { _ = http.ListenAndServe(addr, nil) }()
		}
		var srv *server.Server
		srv, err = server.New(server.Config{DataDir: *dataDir, Addr: *addr, MaxModelBytes: *maxModel,
			MQTTAddr: *mqttAddr, MQTTURL: *mqttURL, MQTTUser: *mqttUser, MQTTPassword: mqttPass,
			AdvertiseURL: *advertise, AdvertiseMQTT: *advertiseMQTT, MosquittoDir: *mosqDir, MosquittoPIDFile: *mosqPID,
			Logger: slog.New(slog.NewTextHandler(stderr, nil))})
		if err == nil {
			err = srv.Run(ctx)
		}
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "mlfleet-cloud: unknown command %q\n%s", cmd, usage)
		return 2
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "mlfleet-cloud %s: %v\n", cmd, err)
		if errclass.Is(err, errclass.InvalidArgument) {
			return 2
		}
		return 1
	}
	return 0
}
