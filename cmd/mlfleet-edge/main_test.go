package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no command", nil, 2, "usage"},
		{"unknown command", []string{"fly"}, 2, "usage"},
		{"enroll without token", []string{"enroll", "--cloud", "http://x"}, 2, "--token"},
		{"enroll bad cloud", []string{"enroll", "--cloud", "ftp://x", "--token", "t", "--data-dir", "DIR"}, 2, "cloud URL"},
		{"run bad window", []string{"run", "--telemetry-window", "soon"}, 2, "telemetry window"},
		{"run bad flag", []string{"run", "--nope"}, 2, "nope"},
		{"version", []string{"version"}, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string(nil), tc.args...)
			for i := range args {
				if args[i] == "DIR" {
					args[i] = t.TempDir()
				}
			}
			var out, errb bytes.Buffer
			code := run(context.Background(), args, &out, &errb)
			if code != tc.wantCode || !strings.Contains(errb.String(), tc.wantErr) {
				t.Fatalf("code %d stderr %q; want %d containing %q", code, errb.String(), tc.wantCode, tc.wantErr)
			}
		})
	}
}

func TestEnrollCommand(t *testing.T) {
	var got map[string]any
	cloud := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewDecoder(r.Body).Decode(&got)
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"deviceId":"d-42","credential":"mld_c","cloud":"http://c","mqtt":{"url":"tcp://127.0.0.1:1883","username":"d-42","password":"mld_c"}}`))
	}))
	defer cloud.Close()
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"enroll", "--cloud", cloud.URL, "--token", "mle_t", "--name", "pi", "--data-dir", dir}, &out, &errb)
	if code != 0 || !strings.Contains(out.String(), "d-42") || !strings.Contains(out.String(), filepath.Join(dir, "state.db")) {
		t.Fatalf("code %d out %q err %q", code, out.String(), errb.String())
	}
	if got["token"] != "mle_t" || got["name"] != "pi" {
		t.Fatalf("request body %v", got)
	}
}
