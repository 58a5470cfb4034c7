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
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mlfleet/mlfleet/cloud"
	"github.com/mlfleet/mlfleet/cloud/client"
	"github.com/mlfleet/mlfleet/cloud/server"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/manifest"
	"github.com/mlfleet/mlfleet/shared/twin"
)

// startCloud runs a real cloud on 127.0.0.1:0 and returns a client with the
// first admin's token.
func startCloud(t *testing.T) *client.Client {
	t.Helper()
	c, _ := startCloudServer(t)
	return c
}

// startCloudServer is startCloud that also returns the server, for tests
// that play a device's side through its service.
func startCloudServer(t *testing.T) (*client.Client, *server.Server) {
	t.Helper()
	return startCloudWithScorers(t, "")
}

// startCloudWithScorers is startCloudServer whose image builder uses the
// scorer binaries in scorerDir ("": the server's default, none in tests).
func startCloudWithScorers(t *testing.T, scorerDir string) (*client.Client, *server.Server) {
	t.Helper()
	dataDir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	tok, err := server.Init(ctx, dataDir, "admin", "", "")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{DataDir: dataDir, Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler), ScorerDir: scorerDir})
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
	return c, srv
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

// testImage is an image reference pinned by digest, as desired states need.
const testImage = "127.0.0.1:8480/acme/models/iris@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// report makes the cloud ingest a device's reported state the way its MQTT
// side does.
func report(t *testing.T, srv *server.Server, r twin.Reported) {
	t.Helper()
	raw, err := twin.Encode(&r)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Service().HandleDeviceMessage(context.Background(), twin.Topic(r.Device, twin.KindReported), raw); err != nil {
		t.Fatalf("report: %v", err)
	}
}

func TestDevicesAgainstCloud(t *testing.T) {
	c, srv := startCloudServer(t)
	ctx := context.Background()
	if _, err := c.CreateSubscription(ctx, client.SubscriptionCreate{Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAccount(ctx, "acme", client.AccountCreate{Name: "mm", Kind: cloud.ModelManagement}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateAccount(ctx, "acme", client.AccountCreate{Name: "lab", Kind: cloud.Experimentation}); err != nil {
		t.Fatal(err)
	}
	// A device has no user token: it enrolls with a client that has none.
	anon, err := client.New(c.BaseURL(), "")
	if err != nil {
		t.Fatal(err)
	}

	before := time.Now()
	tok, err := c.CreateEnrollmentToken(ctx, "acme", "mm", client.EnrollmentTokenCreate{Labels: map[string]string{"site": "paris"}, ExpiresInHours: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.Token, "mle_") || tok.Labels["site"] != "paris" || tok.Account != "mm" ||
		tok.ExpiresAt.Before(before.Add(2*time.Hour-time.Minute)) || tok.ExpiresAt.After(time.Now().Add(2*time.Hour+time.Minute)) {
		t.Fatalf("enrollment token = %+v", tok)
	}
	e1, err := anon.Enroll(ctx, cloud.EnrollRequest{Token: tok.Token, Name: "pi-1"})
	if err != nil {
		t.Fatal(err)
	}
	if e1.DeviceID == "" || !strings.HasPrefix(e1.Credential, "mld_") || e1.Subscription != "acme" || e1.Account != "mm" ||
		e1.MQTT.URL == "" || e1.MQTT.Username != e1.DeviceID || e1.MQTT.Password != e1.Credential {
		t.Fatalf("enrollment = %+v", e1)
	}
	tok2, err := c.CreateEnrollmentToken(ctx, "acme", "mm", client.EnrollmentTokenCreate{Labels: map[string]string{"site": "lyon"}})
	if err != nil {
		t.Fatal(err)
	}
	e2, err := anon.Enroll(ctx, cloud.EnrollRequest{Token: tok2.Token, Name: "pi-2"})
	if err != nil {
		t.Fatal(err)
	}

	ids := func(ds []cloud.Device) string {
		var out []string
		for _, d := range ds {
			out = append(out, d.ID)
		}
		sort.Strings(out)
		return strings.Join(out, ",")
	}
	both := []string{e1.DeviceID, e2.DeviceID}
	sort.Strings(both)
	lists := []struct {
		name     string
		selector map[string]string
		want     string
	}{
		{"all", nil, strings.Join(both, ",")},
		{"paris", map[string]string{"site": "paris"}, e1.DeviceID},
		{"lyon", map[string]string{"site": "lyon"}, e2.DeviceID},
		{"none", map[string]string{"site": "rome"}, ""},
		{"value with =", map[string]string{"site": "paris=x"}, ""},
	}
	for _, tt := range lists {
		t.Run("list "+tt.name, func(t *testing.T) {
			ds, err := c.ListAllDevices(ctx, "acme", "mm", tt.selector)
			if err != nil || ids(ds) != tt.want {
				t.Errorf("ListAllDevices(%v) = %q, %v; want %q", tt.selector, ids(ds), err, tt.want)
			}
		})
	}
	paged, err := client.ListAll(ctx, func(ctx context.Context, o client.ListOptions) (*cloud.Page[cloud.Device], error) {
		o.Limit = 1
		return c.ListDevices(ctx, "acme", "mm", nil, o)
	})
	if err != nil || len(paged) != 2 {
		t.Errorf("ListAll by ones = %d devices, %v", len(paged), err)
	}

	d, err := c.GetDevice(ctx, "acme", "mm", e1.DeviceID)
	if err != nil || d.Name != "pi-1" || d.Labels["site"] != "paris" || d.Online || d.Desired != nil || d.Reported != nil {
		t.Fatalf("device = %+v, %v", d, err)
	}
	d, err = c.UpdateDeviceLabels(ctx, "acme", "mm", e1.DeviceID, map[string]string{"site": "paris", "arch": "arm64"})
	if err != nil || len(d.Labels) != 2 || d.Labels["arch"] != "arm64" {
		t.Fatalf("update labels = %+v, %v", d, err)
	}
	if ds, err := c.ListAllDevices(ctx, "acme", "mm", map[string]string{"site": "paris", "arch": "arm64"}); err != nil || ids(ds) != e1.DeviceID {
		t.Errorf("two-label selector = %q, %v", ids(ds), err)
	}

	specs := []twin.ServiceSpec{{Name: "iris", Image: testImage, Port: 8080}}
	for v := uint64(1); v <= 2; v++ {
		d, err = c.SetDesiredServices(ctx, "acme", "mm", e1.DeviceID, specs)
		if err != nil || d.Desired == nil || d.Desired.Version != v || len(d.Desired.Services) != 1 || d.Desired.Services[0].Image != testImage {
			t.Fatalf("set desired #%d = %+v, %v", v, d, err)
		}
	}
	now := time.Now().UTC()
	report(t, srv, twin.Reported{Protocol: twin.Protocol, Device: e1.DeviceID, ObservedVersion: 2, Time: now, Agent: "test",
		Services: []twin.ServiceStatus{{Name: "iris", Phase: twin.Running, Image: testImage, Healthy: true, Since: now}}})
	d, err = c.GetDevice(ctx, "acme", "mm", e1.DeviceID)
	if err != nil || !d.Online || d.LastSeen == nil || d.Reported == nil || d.Reported.ObservedVersion != 2 ||
		len(d.Reported.Services) != 1 || d.Reported.Services[0].Phase != twin.Running {
		t.Fatalf("device after report = %+v, %v", d, err)
	}

	// Re-enroll: same id, new credential.
	tok3, err := c.CreateEnrollmentToken(ctx, "acme", "mm", client.EnrollmentTokenCreate{})
	if err != nil {
		t.Fatal(err)
	}
	e1b, err := anon.Enroll(ctx, cloud.EnrollRequest{Token: tok3.Token, DeviceID: e1.DeviceID, Credential: e1.Credential})
	if err != nil || e1b.DeviceID != e1.DeviceID || e1b.Credential == e1.Credential {
		t.Fatalf("re-enroll = %+v, %v", e1b, err)
	}

	errs := []struct {
		name      string
		call      func() error
		wantClass errclass.Class
		wantField string
	}{
		{"token used twice", func() error {
			_, err := anon.Enroll(ctx, cloud.EnrollRequest{Token: tok.Token})
			return err
		}, errclass.Unauthenticated, "token"},
		{"bogus token", func() error {
			_, err := anon.Enroll(ctx, cloud.EnrollRequest{Token: "mle_nope_nope"})
			return err
		}, errclass.Unauthenticated, "token"},
		{"re-enroll with old credential", func() error {
			t4, err := c.CreateEnrollmentToken(ctx, "acme", "mm", client.EnrollmentTokenCreate{})
			if err != nil {
				return err
			}
			_, err = anon.Enroll(ctx, cloud.EnrollRequest{Token: t4.Token, DeviceID: e1.DeviceID, Credential: e1.Credential})
			return err
		}, errclass.Unauthenticated, "credential"},
		{"token lifetime too long", func() error {
			_, err := c.CreateEnrollmentToken(ctx, "acme", "mm", client.EnrollmentTokenCreate{ExpiresInHours: 24 * 31})
			return err
		}, errclass.InvalidArgument, "expiresInHours"},
		{"bad label key", func() error {
			_, err := c.CreateEnrollmentToken(ctx, "acme", "mm", client.EnrollmentTokenCreate{Labels: map[string]string{"bad key": "v"}})
			return err
		}, errclass.InvalidArgument, "labels"},
		{"token for an experimentation account", func() error {
			_, err := c.CreateEnrollmentToken(ctx, "acme", "lab", client.EnrollmentTokenCreate{})
			return err
		}, "", ""},
		{"bad label value", func() error {
			_, err := c.UpdateDeviceLabels(ctx, "acme", "mm", e1.DeviceID, map[string]string{"site": "a b"})
			return err
		}, errclass.InvalidArgument, "labels.site"},
		{"unknown device", func() error { _, err := c.GetDevice(ctx, "acme", "mm", "d-nope"); return err }, errclass.NotFound, ""},
		{"labels of unknown device", func() error {
			_, err := c.UpdateDeviceLabels(ctx, "acme", "mm", "d-nope", nil)
			return err
		}, errclass.NotFound, ""},
		{"desired of unknown device", func() error {
			_, err := c.SetDesiredServices(ctx, "acme", "mm", "d-nope", specs)
			return err
		}, errclass.NotFound, ""},
		{"image not pinned", func() error {
			_, err := c.SetDesiredServices(ctx, "acme", "mm", e1.DeviceID, []twin.ServiceSpec{{Name: "iris", Image: "iris:latest"}})
			return err
		}, errclass.InvalidArgument, "services[0].image"},
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
	// Checked on the client, before any request.
	if _, err := anon.Enroll(ctx, cloud.EnrollRequest{}); errclass.FieldOf(err) != "token" {
		t.Errorf("empty enrollment token: %v", err)
	}
	if _, err := c.CreateEnrollmentToken(ctx, "acme", "mm", client.EnrollmentTokenCreate{ExpiresInHours: -1}); errclass.FieldOf(err) != "expiresInHours" {
		t.Errorf("negative lifetime: %v", err)
	}

	if err := c.DeleteDevice(ctx, "acme", "mm", e1.DeviceID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetDevice(ctx, "acme", "mm", e1.DeviceID); errclass.ClassOf(err) != errclass.NotFound {
		t.Errorf("deleted device: %v", err)
	}
	if err := c.DeleteDevice(ctx, "acme", "mm", e1.DeviceID); errclass.ClassOf(err) != errclass.NotFound {
		t.Errorf("second delete: %v", err)
	}
	// Its credential no longer re-enrolls it.
	tok5, err := c.CreateEnrollmentToken(ctx, "acme", "mm", client.EnrollmentTokenCreate{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := anon.Enroll(ctx, cloud.EnrollRequest{Token: tok5.Token, DeviceID: e1.DeviceID, Credential: e1b.Credential}); errclass.ClassOf(err) != errclass.Unauthenticated {
		t.Errorf("re-enroll of a deleted device: %v", err)
	}
	if ds, err := c.ListAllDevices(ctx, "acme", "mm", nil); err != nil || ids(ds) != e2.DeviceID {
		t.Errorf("after delete: %q, %v", ids(ds), err)
	}
}
