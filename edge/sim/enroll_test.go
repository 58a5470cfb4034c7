package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// fakeCloud answers POST /api/v1/enroll for one-time tokens "mle_<n>",
// recording request bodies.
type fakeCloud struct {
	mu     sync.Mutex
	used   map[string]bool
	bodies [][]byte
	n      atomic.Int64

	tokenBodies [][]byte
	tokens      atomic.Int64
}

func (c *fakeCloud) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.URL.Path == "/api/v1/subscriptions/acme/accounts/models/enrollmentTokens" {
		if r.Header.Get("Authorization") != "Bearer admin-t" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":{"code":"unauthenticated","message":"bad token"}}`)
			return
		}
		c.mu.Lock()
		c.tokenBodies = append(c.tokenBodies, body)
		c.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"token":"mle_t%d","expiresAt":"2026-01-01T00:00:00Z"}`, c.tokens.Add(1))
		return
	}
	var req enrollRequest
	if r.Method != http.MethodPost || r.URL.Path != "/api/v1/enroll" || json.Unmarshal(body, &req) != nil {
		http.Error(w, `{"error":{"code":"invalid_argument","message":"bad request"}}`, http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.bodies = append(c.bodies, body)
	reused := c.used[req.Token]
	c.used[req.Token] = true
	c.mu.Unlock()
	if reused || !strings.HasPrefix(req.Token, "mle_") {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"error":{"code":"unauthenticated","message":"enrollment token is not valid"}}`)
		return
	}
	i := c.n.Add(1)
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"deviceId":"d-%012x","credential":"mld_c%d","subscription":"acme","account":"models","cloud":"http://x",`+
		`"mqtt":{"url":"tcp://broker.test:1883","username":"d-%012x","password":"mld_c%d"},"registry":"x"}`, i, i, i, i)
}

func counterTokens() TokenSource {
	var n atomic.Int64
	return func(context.Context) (string, error) { return fmt.Sprintf("mle_%d", n.Add(1)), nil }
}

func TestEnroll(t *testing.T) {
	cloud := &fakeCloud{used: map[string]bool{}}
	srv := httptest.NewServer(cloud)
	defer srv.Close()
	tests := []struct {
		name        string
		tokens      TokenSource
		n, conc     int
		wantErr     errclass.Class
		wantEnrolls int
	}{
		{"many in parallel", counterTokens(), 40, 8, "", 40},
		{"one", Tokens([]string{"mle_one"}), 1, 1, "", 1},
		{"more devices than tokens", Tokens([]string{"mle_a", "mle_b"}), 3, 1, errclass.InvalidArgument, 2},
		{"token refused", Tokens([]string{"mle_one"}), 1, 1, errclass.Unauthenticated, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := cloud.n.Load()
			ids, err := Enroll(context.Background(), srv.URL+"/", tt.tokens, tt.n, tt.conc)
			if got := int(cloud.n.Load() - before); got != tt.wantEnrolls {
				t.Errorf("%d enrollments, want %d", got, tt.wantEnrolls)
			}
			if tt.wantErr != "" {
				if !errclass.Is(err, tt.wantErr) {
					t.Fatalf("Enroll = %v, want class %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, id := range ids {
				if seen[id.ID] || id.Credential == "" || id.MQTTURL != "tcp://broker.test:1883" {
					t.Errorf("identity %+v (duplicate %v)", id, seen[id.ID])
				}
				seen[id.ID] = true
			}
			if len(ids) != tt.n {
				t.Errorf("%d identities, want %d", len(ids), tt.n)
			}
		})
	}
	// The request's wire form.
	cloud.mu.Lock()
	var first []byte
	for _, b := range cloud.bodies {
		if bytes.Contains(b, []byte(`"mle_one"`)) {
			first = b
			break
		}
	}
	cloud.mu.Unlock()
	golden(t, "enroll_request.golden.json", append(first, '\n'))
}

func TestCloudTokens(t *testing.T) {
	cloud := &fakeCloud{used: map[string]bool{}}
	srv := httptest.NewServer(cloud)
	defer srv.Close()
	tokens, err := CloudTokens(srv.URL, "admin-t", "acme", "models", map[string]string{"site": "lab"})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := Enroll(context.Background(), srv.URL, tokens, 10, 3)
	if err != nil || len(ids) != 10 || cloud.tokens.Load() != 10 {
		t.Fatalf("Enroll with cloud tokens = %d ids, %v; %d tokens made", len(ids), err, cloud.tokens.Load())
	}
	golden(t, "token_request.golden.json", append(cloud.tokenBodies[0], '\n'))

	bad, err := CloudTokens(srv.URL, "wrong", "acme", "models", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad(context.Background()); !errclass.Is(err, errclass.Unauthenticated) {
		t.Errorf("token with a bad API token: %v", err)
	}
	for _, args := range [][4]string{{"ftp://x", "t", "s", "a"}, {srv.URL, "", "s", "a"}, {srv.URL, "t", "", "a"}, {srv.URL, "t", "s", ""}} {
		if _, err := CloudTokens(args[0], args[1], args[2], args[3], nil); !errclass.Is(err, errclass.InvalidArgument) {
			t.Errorf("CloudTokens%q = %v, want invalid", args, err)
		}
	}
}

func TestEnrollRejectsBadArguments(t *testing.T) {
	tests := []struct {
		name, url string
		tokens    TokenSource
		n, conc   int
		field     string
	}{
		{"bad url", "ftp://x", counterTokens(), 1, 1, "cloud"},
		{"no tokens", "http://x", nil, 1, 1, "tokens"},
		{"no devices", "http://x", counterTokens(), 0, 1, "n"},
		{"no concurrency", "http://x", counterTokens(), 1, 0, "concurrency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Enroll(context.Background(), tt.url, tt.tokens, tt.n, tt.conc)
			if errclass.FieldOf(err) != tt.field {
				t.Errorf("Enroll = %v, want an error naming %q", err, tt.field)
			}
		})
	}
}

func TestParseEnrollment(t *testing.T) {
	ok, err := os.ReadFile(filepath.Join("testdata", "enrollment.json"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := ParseEnrollment(ok)
	if err != nil || id != (Identity{ID: "d-3f2a9c0b1e4d", Credential: "mld_s3cret", MQTTURL: "tcp://cloud:1883"}) {
		t.Fatalf("ParseEnrollment(golden) = %+v, %v", id, err)
	}
	tests := []struct {
		name, body, field string
	}{
		{"not json", `{"deviceId":`, ""},
		{"bad id", `{"deviceId":"Bad!","credential":"x"}`, "deviceId"},
		{"no credential", `{"deviceId":"d-1"}`, "credential"},
		{"other user", `{"deviceId":"d-1","credential":"x","mqtt":{"username":"d-2"}}`, "mqtt.username"},
		{"other password", `{"deviceId":"d-1","credential":"x","mqtt":{"password":"y"}}`, "mqtt.password"},
		{"no host", `{"deviceId":"d-1","credential":"x","mqtt":{"url":"tcp://"}}`, "mqtt.url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseEnrollment([]byte(tt.body))
			if !errclass.Is(err, errclass.InvalidArgument) || errclass.FieldOf(err) != tt.field {
				t.Errorf("ParseEnrollment = %v (field %q), want invalid %q", err, errclass.FieldOf(err), tt.field)
			}
		})
	}
	if _, err := ParseEnrollment(bytes.Repeat([]byte(" "), maxEnrollAnswer+1)); !errclass.Is(err, errclass.TooLarge) {
		t.Errorf("oversized answer: %v", err)
	}
}

func TestAPIError(t *testing.T) {
	tests := []struct {
		status int
		body   string
		class  errclass.Class
		field  string
	}{
		{400, `{"error":{"code":"invalid_argument","message":"bad","field":"labels"}}`, errclass.InvalidArgument, "labels"},
		{401, `not json`, errclass.Unauthenticated, ""},
		{403, `{}`, errclass.PermissionDenied, ""},
		{404, `{"error":{"code":"weird"}}`, errclass.NotFound, ""},
		{503, ``, errclass.Unavailable, ""},
	}
	for _, tt := range tests {
		err := APIError(tt.status, []byte(tt.body))
		if !errclass.Is(err, tt.class) || errclass.FieldOf(err) != tt.field {
			t.Errorf("APIError(%d, %s) = %v, want %s/%q", tt.status, tt.body, err, tt.class, tt.field)
		}
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n got %s\nwant %s", path, got, want)
	}
}
