package registry

import (
	"context"
	"encoding/xml"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// conformanceModule is the OCI distribution-spec conformance suite, pinned by
// testdata/conformance/go.mod.
const conformanceModule = "github.com/opencontainers/distribution-spec/conformance"

// junit is the part of the suite's junit.xml that the test reads.
type junit struct {
	Suites []struct {
		Cases []struct {
			Name    string    `xml:"name,attr"`
			Status  string    `xml:"status,attr"`
			Failure *struct{} `xml:"failure"`
			Error   *struct{} `xml:"error"`
			Skipped *struct{} `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// TestConformance builds the OCI distribution-spec conformance suite with
// `go test -c` (the module comes from the Go module proxy or the module
// cache) and runs all four workflows (pull, push, content discovery, content
// management) against the embedded registry, authenticated by Basic auth.
// Every spec must pass; the skipped ones need settings that make the suite
// use content it did not push itself (OCI_TAG_NAME, OCI_TAG_LIST) or a
// registry that mounts blobs without being told where from.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("conformance suite skipped in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dir := t.TempDir()

	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "conformance.test")
	build := exec.CommandContext(ctx, goBin, "test", "-c", "-o", bin, conformanceModule)
	build.Dir = filepath.Join("testdata", "conformance")
	build.Env = append(os.Environ(), "GOFLAGS=-mod=readonly", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the conformance suite: %v\n%s", err, out)
	}

	authz := testAuthorizer{"conformance-token": {prefix: "conformance/"}}
	reg, err := New(ctx, Config{RootDir: filepath.Join(dir, "registry"), Authorizer: authz, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	srv := httptest.NewServer(reg) // listens on 127.0.0.1:0
	defer srv.Close()

	reports := filepath.Join(dir, "reports")
	if err := os.MkdirAll(reports, 0o700); err != nil {
		t.Fatal(err)
	}
	run := exec.CommandContext(ctx, bin, "-ginkgo.no-color")
	run.Dir = dir
	run.Env = append(os.Environ(),
		"OCI_ROOT_URL="+srv.URL,
		"OCI_NAMESPACE=conformance/acct/repo",
		"OCI_CROSSMOUNT_NAMESPACE=conformance/acct/other",
		"OCI_USERNAME=mlfleet",
		"OCI_PASSWORD=conformance-token",
		"OCI_TEST_PULL=1",
		"OCI_TEST_PUSH=1",
		"OCI_TEST_CONTENT_DISCOVERY=1",
		"OCI_TEST_CONTENT_MANAGEMENT=1",
		"OCI_AUTOMATIC_CROSSMOUNT=0", // distribution mounts only with from=
		"OCI_HIDE_SKIPPED_WORKFLOWS=1",
		"OCI_DEBUG=0",
		"OCI_REPORT_DIR="+reports,
	)
	out, runErr := run.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("conformance suite timed out: %v\n%s", ctx.Err(), out)
	}
	var exitErr *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exitErr) {
		t.Fatalf("run the conformance suite: %v\n%s", runErr, out)
	}

	raw, err := os.ReadFile(filepath.Join(reports, "junit.xml"))
	if err != nil {
		t.Fatalf("read the suite's junit report: %v\nsuite output:\n%s", err, out)
	}
	var rep junit
	if err := xml.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("parse junit.xml: %v", err)
	}
	var passed, skipped int
	var failed []string
	for _, s := range rep.Suites {
		for _, c := range s.Cases {
			if !strings.HasPrefix(c.Name, "[It]") {
				continue // suite-level nodes (reporters), not specs
			}
			switch {
			case c.Failure != nil || c.Error != nil:
				failed = append(failed, c.Name)
			case c.Skipped != nil || c.Status == "skipped" || c.Status == "pending":
				skipped++
				t.Logf("skipped: %s", c.Name)
			default:
				passed++
			}
		}
	}
	t.Logf("OCI conformance: %d passed, %d failed, %d skipped", passed, len(failed), skipped)
	if passed == 0 {
		t.Fatalf("no conformance spec passed; suite output:\n%s", out)
	}
	if len(failed) > 0 {
		t.Fatalf("%d conformance specs failed:\n  %s\nsuite output:\n%s", len(failed), strings.Join(failed, "\n  "), out)
	}
}
