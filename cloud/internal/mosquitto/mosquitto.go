// Package mosquitto keeps an external mosquitto broker's accounts in step
// with the device registry: it writes a password file (the cloud's user and
// every device, in mosquitto's PBKDF2-SHA512 format), an ACL file that
// confines each device to its own topics (shared/twin), and a config snippet
// to include; after each change it asks mosquitto to reload (SIGHUP).
package mosquitto

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// Config configures the files.
type Config struct {
	// Dir receives mlfleet.conf, passwd and acl.
	Dir string
	// Listener is the address mosquitto listens on ("127.0.0.1:1883").
	Listener string
	// CloudUser and CloudPassword are the cloud's own login.
	CloudUser, CloudPassword string
	// PIDFile, if set, names mosquitto's pid file: it gets SIGHUP after
	// every change so it reloads the password file.
	PIDFile string
	// Credentials lists device id -> password hash.
	Credentials func(ctx context.Context) (map[string]string, error)
	Logger      *slog.Logger
}

// Accounts writes the broker's account files.
type Accounts struct {
	cfg       Config
	cloudHash string
	mu        sync.Mutex
}

var _ cloud.BrokerAccounts = (*Accounts)(nil)

// New checks the config; it writes nothing yet.
func New(cfg Config) (*Accounts, error) {
	if cfg.Dir == "" || cfg.CloudUser == "" || cfg.CloudPassword == "" || cfg.Credentials == nil {
		return nil, errors.New("mosquitto: Dir, CloudUser, CloudPassword and Credentials are required")
	}
	if cfg.Listener == "" {
		cfg.Listener = "127.0.0.1:1883"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h, err := cloud.BrokerHash(cfg.CloudPassword)
	if err != nil {
		return nil, err
	}
	return &Accounts{cfg: cfg, cloudHash: h}, nil
}

// ACL is the ACL file: the cloud may use every mlfleet topic, each device
// (%u = its username = its id) only its own.
func ACL(cloudUser string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# written by mlfleet-cloud; do not edit\nuser %s\ntopic readwrite %s/#\n\n", cloudUser, twin.TopicRoot)
	for _, k := range []twin.Kind{twin.KindReported, twin.KindPresence, twin.KindTelemetry, twin.KindDesiredGet} {
		fmt.Fprintf(&b, "pattern write %s\n", twin.Topic("%u", k))
	}
	for _, k := range []twin.Kind{twin.KindDesired, twin.KindTelemetryAck} {
		fmt.Fprintf(&b, "pattern read %s\n", twin.Topic("%u", k))
	}
	return b.String()
}

// ConfigSnippet is the mosquitto config for mlfleet: one authenticated
// listener, client ids forced to usernames, the password and ACL files.
func (a *Accounts) ConfigSnippet() string {
	host, port, _ := strings.Cut(a.cfg.Listener, ":")
	return fmt.Sprintf(`# written by mlfleet-cloud; include it from mosquitto.conf (include_dir %s)
per_listener_settings false
allow_anonymous false
password_file %s
acl_file %s
listener %s %s
use_username_as_clientid true
persistence true
max_packet_size %d
`, a.cfg.Dir, filepath.Join(a.cfg.Dir, "passwd"), filepath.Join(a.cfg.Dir, "acl"), port, host, twin.MaxTelemetry+65536)
}

// Write rewrites the files from the registry and signals mosquitto.
func (a *Accounts) Write(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	creds, err := a.cfg.Credentials(ctx)
	if err != nil {
		return fmt.Errorf("mosquitto: list device credentials: %w", err)
	}
	ids := make([]string, 0, len(creds))
	for id := range creds {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var pw strings.Builder
	fmt.Fprintf(&pw, "%s:%s\n", a.cfg.CloudUser, a.cloudHash)
	for _, id := range ids {
		fmt.Fprintf(&pw, "%s:%s\n", id, creds[id])
	}
	if err := os.MkdirAll(a.cfg.Dir, 0o750); err != nil {
		return err
	}
	for name, content := range map[string]string{"passwd": pw.String(), "acl": ACL(a.cfg.CloudUser), "mlfleet.conf": a.ConfigSnippet()} {
		if err := writeAtomic(filepath.Join(a.cfg.Dir, name), content); err != nil {
			return err
		}
	}
	return a.reload()
}

func (a *Accounts) reload() error {
	if a.cfg.PIDFile == "" {
		return nil
	}
	b, err := os.ReadFile(a.cfg.PIDFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil // not running yet: it reads the files when it starts
	}
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("mosquitto: pid file %s holds %q", a.cfg.PIDFile, b)
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("mosquitto: reload pid %d: %w", pid, err)
	}
	return nil
}

// DevicesChanged rewrites the files (cloud.BrokerAccounts).
func (a *Accounts) DevicesChanged(ctx context.Context) {
	if err := a.Write(ctx); err != nil {
		a.cfg.Logger.Error("update mosquitto accounts", "err", err)
	}
}

func writeAtomic(path, content string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o640); err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err == nil {
		err = f.Sync()
		f.Close()
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
