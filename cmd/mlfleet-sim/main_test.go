package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

func TestRunRejectsBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no cloud", []string{"--devices", "3"}, "--cloud is required"},
		{"no admin token", []string{"--cloud", "http://x", "--devices", "3"}, "--admin-token"},
		{"no account", []string{"--cloud", "http://x", "--admin-token", "t", "--devices", "3"}, "--subscription and --account"},
		{"no devices", []string{"--cloud", "http://x", "--admin-token", "t", "--subscription", "s", "--account", "a"}, "--devices 0"},
		{"bad labels", []string{"--labels", "site"}, `label "site"`},
		{"bad jitter", []string{"--jitter", "2"}, "--jitter 2"},
		{"bad fail image", []string{"--fail-image", "x"}, "IMAGE=REASON"},
		{"unknown flag", []string{"--nope"}, "flag provided but not defined"},
		{"extra args", []string{"--identities", "f", "more"}, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(context.Background(), tt.args, &out, &errb); code != 2 || !strings.Contains(errb.String(), tt.want) {
				t.Errorf("run(%q) = %d, stderr %q; want 2 and %q", tt.args, code, errb.String(), tt.want)
			}
		})
	}
}

// TestRunEnrollsAndSimulates runs the command against a fake cloud (token
// and enrollment routes) and a real in-process broker, until all devices
// are online, then interrupts it.
func TestRunEnrollsAndSimulates(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	broker := mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := broker.AddHook(new(allowHook), nil); err != nil {
		t.Fatal(err)
	}
	if err := broker.AddListener(listeners.NewNet("t", ln)); err != nil {
		t.Fatal(err)
	}
	if err := broker.Serve(); err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
	brokerURL := "tcp://" + ln.Addr().String()

	var tokens, devices atomic.Int64
	cloud := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/api/v1/subscriptions/acme/accounts/models/enrollmentTokens" && r.Header.Get("Authorization") == "Bearer admin":
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"token":"mle_%d"}`, tokens.Add(1))
		case r.URL.Path == "/api/v1/enroll":
			i := devices.Add(1)
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"deviceId":"d-%d","credential":"mld_%d","mqtt":{"url":%q}}`, i, i, brokerURL)
		default:
			http.Error(w, `{"error":{"code":"not_found","message":"no"}}`, http.StatusNotFound)
		}
	}))
	defer cloud.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	var errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--cloud", cloud.URL, "--admin-token", "admin", "--subscription", "acme", "--account", "models",
			"--devices", "5", "--labels", "site=lab", "--progress", "20ms", "--connect-rate", "1000", "--seed", "3"}, out, &errb)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "online 5/5") {
		if time.Now().After(deadline) {
			t.Fatalf("no progress line with all online; stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit code %d; stderr %s", code, errb.String())
	}
	if tokens.Load() != 5 || devices.Load() != 5 {
		t.Errorf("%d tokens, %d enrollments; want 5 each", tokens.Load(), devices.Load())
	}
	if !strings.Contains(out.String(), "enrolled 5 devices") {
		t.Errorf("stdout:\n%s", out.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// allowHook lets every client in and allows every topic.
type allowHook struct{ mochi.HookBase }

func (h *allowHook) ID() string { return "allow" }
func (h *allowHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}
func (h *allowHook) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }
func (h *allowHook) OnACLCheck(*mochi.Client, string, bool) bool              { return true }
