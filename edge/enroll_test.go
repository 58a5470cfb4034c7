package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mlfleet/mlfleet/edge/internal/boltstore"
	"github.com/mlfleet/mlfleet/shared/errclass"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s:\n got %s\nwant %s", name, got, want)
	}
}

// fakeCloud answers enrollments like the cloud (docs/api.md, "Devices"),
// recording request bodies.
func fakeCloud(t *testing.T) (*httptest.Server, *[][]byte) {
	var bodies [][]byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		bodies = append(bodies, body)
		var req EnrollRequest
		_ = json.Unmarshal(body, &req)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/api/v1/enroll" || req.Token != "mle_good" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"code":"unauthenticated","message":"token is not valid"}}`))
			return
		}
		cred := "mld_first"
		if req.Credential != "" {
			cred = "mld_rotated"
		}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"deviceId": "d-3f2a9c0b1e4d", "credential": cred, "subscription": "acme", "account": "models", "cloud": "http://cloud:8480",
			"mqtt": map[string]string{"url": "tcp://cloud:1883", "username": "d-3f2a9c0b1e4d", "password": cred}, "registry": "cloud:8480",
		})
	}))
	t.Cleanup(srv.Close)
	return srv, &bodies
}

func TestEnrollAndReenroll(t *testing.T) {
	cloud, bodies := fakeCloud(t)
	dir := t.TempDir()
	id, err := Enroll(context.Background(), EnrollConfig{DataDir: dir, Cloud: cloud.URL + "/", Token: "mle_good", Name: "pi-7"})
	if err != nil || id != "d-3f2a9c0b1e4d" {
		t.Fatalf("Enroll = %q, %v", id, err)
	}
	golden(t, "enroll-request.json", (*bodies)[0])
	if _, err := Enroll(context.Background(), EnrollConfig{DataDir: dir, Cloud: cloud.URL, Token: "mle_good", Name: "pi-7"}); err != nil {
		t.Fatal(err)
	}
	golden(t, "reenroll-request.json", (*bodies)[1])
	store, err := boltstore.Open(StatePath(dir), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	e, err := store.Enrollment()
	if err != nil || e.Credential != "mld_rotated" || e.MQTT.Password != "mld_rotated" || e.MQTT.URL != "tcp://cloud:1883" {
		t.Fatalf("stored enrollment %+v, %v", e, err)
	}
	if fi, err := os.Stat(StatePath(dir)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode %v, %v; want 0600", fi.Mode(), err)
	}
}

func TestEnrollRefused(t *testing.T) {
	cloud, _ := fakeCloud(t)
	_, err := Enroll(context.Background(), EnrollConfig{DataDir: t.TempDir(), Cloud: cloud.URL, Token: "mle_bad"})
	if !errclass.Is(err, errclass.Unauthenticated) || !strings.Contains(err.Error(), "token is not valid") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseEnrollment(t *testing.T) {
	good := `{"deviceId":"d-1","credential":"mld_x","cloud":"http://c","mqtt":{"url":"tcp://b:1883","username":"d-1","password":"mld_x"}}`
	tests := []struct {
		name, in, field string
	}{
		{"good", good, ""},
		{"defaults from credential", `{"deviceId":"d-1","credential":"mld_x","mqtt":{"url":"ssl://b:8883"}}`, ""},
		{"not json", `{`, ""},
		{"bad id", strings.Replace(good, `"d-1"`, `"D 1"`, 1), "deviceId"},
		{"no credential", strings.Replace(good, `"mld_x"`, `""`, 1), "credential"},
		{"bad broker scheme", strings.Replace(good, "tcp://", "http://", 1), "mqtt.url"},
		{"no broker", strings.Replace(good, "tcp://b:1883", "", 1), "mqtt.url"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := ParseEnrollment([]byte(tc.in))
			if tc.name == "good" || tc.name == "defaults from credential" {
				if err != nil || e.MQTT.Username != "d-1" || e.MQTT.Password != "mld_x" {
					t.Fatalf("ParseEnrollment = %+v, %v", e, err)
				}
				return
			}
			if err == nil || errclass.FieldOf(err) != tc.field {
				t.Fatalf("err = %v (field %q), want field %q", err, errclass.FieldOf(err), tc.field)
			}
		})
	}
}

func FuzzParseEnrollment(f *testing.F) {
	f.Add([]byte(`{"deviceId":"d-1","credential":"mld_x","cloud":"http://c","mqtt":{"url":"tcp://b:1883","username":"d-1","password":"mld_x"}}`))
	f.Add([]byte(`{"deviceId":"","mqtt":{}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		e, err := ParseEnrollment(raw)
		if err != nil {
			return
		}
		if e.DeviceID == "" || e.Credential == "" || e.MQTT.URL == "" || e.MQTT.Username == "" {
			t.Fatalf("accepted incomplete enrollment %+v", e)
		}
	})
}
