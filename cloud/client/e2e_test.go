package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/client"
	"github.com/mlfleet/mlfleet/cloud/server"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/manifest"
)

// startCloud runs a real cloud on 127.0.0.1:0 and returns a client with the
// first admin's token.
func startCloud(t *testing.T) *client.Client {
	t.Helper()
	dataDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	tok, err := server.Init(ctx, dataDir, "admin", "", "")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{DataDir: dataDir, Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("cloud Run: %v", err)
		}
	})
	c, err := client.New(srv.URL(), tok.Secret)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAgainstCloud(t *testing.T) {
	c := startCloud(t)
	ctx := context.Background()
	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if doc, err := c.OpenAPI(ctx); err != nil || !bytes.Contains(doc, []byte("openapi")) {
		t.Fatalf("openapi: %v", err)
	}
	for i := range 5 {
		if _, err := c.CreateSubscription(ctx, client.SubscriptionCreate{Name: fmt.Sprintf("s%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	page, err := c.ListSubscriptions(ctx, client.ListOptions{Limit: 2})
	if err != nil || len(page.Items) != 2 || page.NextPageToken == "" {
		t.Fatalf("first page = %+v, %v", page, err)
	}
	all, err := c.ListAllSubscriptions(ctx)
	if err != nil || len(all) != 5 {
		t.Fatalf("ListAll = %d items, %v", len(all), err)
	}
	paged, err := client.ListAll(ctx, func(ctx context.Context, o client.ListOptions) (*cloud.Page[cloud.Subscription], error) {
		o.Limit = 2
		return c.ListSubscriptions(ctx, o)
	})
	if err != nil || len(paged) != 5 {
		t.Fatalf("ListAll by twos = %d items, %v", len(paged), err)
	}

	if _, err := c.CreateAccount(ctx, "s0", client.AccountCreate{Name: "mm", Kind: cloud.ModelManagement}); err != nil {
		t.Fatal(err)
	}
	errs := []struct {
		name      string
		call      func() error
		wantClass errclass.Class
		wantField string
	}{
		{"invalid name", func() error {
			_, err := c.CreateSubscription(ctx, client.SubscriptionCreate{Name: "Bad Name"})
			return err
		}, errclass.InvalidArgument, "name"},
		{"duplicate", func() error {
			_, err := c.CreateSubscription(ctx, client.SubscriptionCreate{Name: "s1"})
			return err
		}, errclass.Conflict, ""},
		{"not found", func() error { _, err := c.GetSubscription(ctx, "nope"); return err }, errclass.NotFound, ""},
		{"bad kind", func() error {
			_, err := c.CreateAccount(ctx, "s0", client.AccountCreate{Name: "x", Kind: "weird"})
			return err
		}, errclass.InvalidArgument, "kind"},
		{"workspace in model management account", func() error {
			_, err := c.CreateWorkspace(ctx, "s0", "mm", client.WorkspaceCreate{Name: "w"})
			return err
		}, "", ""},
		{"delete non-empty", func() error { return c.DeleteSubscription(ctx, "s0", false) }, "", ""},
		{"empty model", func() error {
			_, err := c.RegisterModel(ctx, "s0", "mm", "m", client.ModelUpload{Body: bytes.NewReader(nil), Size: 0})
			return err
		}, errclass.InvalidArgument, ""},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var ae *client.Error
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v (%T), want *client.Error", err, err)
			}
			if tt.wantClass != "" && errclass.ClassOf(err) != tt.wantClass {
				t.Errorf("class = %s (%+v), want %s", errclass.ClassOf(err), ae, tt.wantClass)
			}
			if tt.wantField != "" && errclass.FieldOf(err) != tt.wantField {
				t.Errorf("field = %q (%+v), want %q", errclass.FieldOf(err), ae, tt.wantField)
			}
		})
	}

	// Upload a real ONNX model and a 3 MiB opaque file; download both.
	onnxBytes, err := os.ReadFile(filepath.Join("..", "cli", "testdata", "affine.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	files := []struct {
		name, format string
		data         []byte
	}{
		{"affine", "", onnxBytes},
		{"blob", "file", bytes.Repeat([]byte{1, 2, 3}, 1<<20)},
	}
	for _, f := range files {
		var last int64
		m, err := c.RegisterModel(ctx, "s0", "mm", f.name, client.ModelUpload{
			Body: bytes.NewReader(f.data), Size: int64(len(f.data)), Format: f.format,
			Tags: map[string]string{"k": "v"}, Progress: func(done, _ int64) { last = done },
		})
		if err != nil {
			t.Fatalf("register %s: %v", f.name, err)
		}
		sum := sha256.Sum256(f.data)
		want := "sha256:" + hex.EncodeToString(sum[:])
		if m.Digest != want || m.Size != int64(len(f.data)) || last != m.Size || m.Tags["k"] != "v" {
			t.Errorf("registered %+v (progress %d), want digest %s", m, last, want)
		}
		var buf bytes.Buffer
		d, err := c.DownloadModel(ctx, "s0", "mm", f.name, m.Version, &buf, nil)
		if err != nil || d.Digest != want || !bytes.Equal(buf.Bytes(), f.data) {
			t.Errorf("download %s: %+v, %v", f.name, d, err)
		}
	}
	m, err := c.GetModel(ctx, "s0", "mm", "affine", 1)
	if err != nil || m.Format != "onnx" || m.IO == nil {
		t.Fatalf("affine = %+v, %v", m, err)
	}
	mf, err := c.CreateManifest(ctx, "s0", "mm", &manifest.Manifest{
		APIVersion: manifest.APIVersion, Name: "affine", Runtime: manifest.RuntimeONNX,
		Models: []manifest.ModelRef{{Name: "affine", Version: 1}},
		Schema: manifest.Schema{Inputs: m.IO.Inputs, Outputs: m.IO.Outputs},
	})
	if err != nil || mf.Version != 1 || mf.Spec.Models[0].Digest != m.Digest {
		t.Fatalf("manifest = %+v, %v", mf, err)
	}
	if err := c.DeleteModel(ctx, "s0", "mm", "affine", 1); errclass.ClassOf(err) != errclass.Conflict && errclass.ClassOf(err) != errclass.FailedPrecondition {
		t.Errorf("delete of a model in use: %v", err)
	}
	if err := c.DeleteManifest(ctx, "s0", "mm", "affine", 1); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteModel(ctx, "s0", "mm", "affine", 1); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteSubscription(ctx, "s0", true); err != nil {
		t.Fatal(err)
	}
}
