package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests run the real mlfleet-cloud binary as a separate process.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func cloudBinary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mlfleet-cloud-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "mlfleet-cloud")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

type proc struct {
	cmd *exec.Cmd
	url string
}

var urlRE = regexp.MustCompile(`url=(http://\S+)`)

// startCloud runs `mlfleet-cloud serve` on a free port and waits until it
// serves.
func startCloud(tb testing.TB, dataDir string) *proc {
	tb.Helper()
	cmd := exec.Command(cloudBinary(tb), "serve", "--data-dir", dataDir, "--addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := urlRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case urls <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case u := <-urls:
		return &proc{cmd: cmd, url: u}
	case <-time.After(30 * time.Second):
		tb.Fatal("mlfleet-cloud did not start in 30s")
	}
	return nil
}

func initCloud(tb testing.TB, dataDir string) string {
	tb.Helper()
	tokenFile := filepath.Join(dataDir, "admin.token")
	if out, err := exec.Command(cloudBinary(tb), "init", "--data-dir", dataDir).CombinedOutput(); err != nil {
		tb.Fatalf("init: %v\n%s", err, out)
	}
	st, err := os.Stat(tokenFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		tb.Fatalf("token file %v mode %v, want 0600", err, st.Mode())
	}
	b, _ := os.ReadFile(tokenFile)
	return strings.TrimSpace(string(b))
}

func call(tb testing.TB, url, token, method, path string, body io.Reader, out any) int {
	tb.Helper()
	req, _ := http.NewRequest(method, url+path, body)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			tb.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

func setupAccount(tb testing.TB, url, token string) string {
	tb.Helper()
	for _, c := range []struct{ path, body string }{
		{"/api/v1/subscriptions", `{"name":"s"}`},
		{"/api/v1/subscriptions/s/accounts", `{"name":"mm","kind":"modelmanagement"}`},
	} {
		if st := call(tb, url, token, "POST", c.path, strings.NewReader(c.body), nil); st != 201 {
			tb.Fatalf("POST %s = %d", c.path, st)
		}
	}
	return "/api/v1/subscriptions/s/accounts/mm"
}

// model is a deterministic pseudo-random "model file" of n bytes.
func model(n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{1, 2, 3}), n)
}

func TestKill9DuringUploadLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	token := initCloud(t, dir)
	p := startCloud(t, dir)
	acct := setupAccount(t, p.url, token)

	// Stream 8 MB, then hold the upload open and kill -9 the cloud.
	pr, pw := io.Pipe()
	go func() {
		io.Copy(pw, model(8<<20))
		// keep the request open: never close pw
	}()
	req, _ := http.NewRequestWithContext(context.Background(), "POST", p.url+acct+"/models/big/versions?format=file", pr)
	req.Header.Set("Authorization", "Bearer "+token)
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	tmp := filepath.Join(dir, "blobs", "tmp")
	deadline := time.Now().Add(30 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(tmp, "upload-*"))
		if len(files) == 1 {
			if st, err := os.Stat(files[0]); err == nil && st.Size() >= 4<<20 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("upload never reached the cloud's temp file")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.cmd.Wait()
	pw.CloseWithError(io.ErrClosedPipe)
	<-done

	// Restart: the store opens, no partial model is listed, no temp file is left.
	p = startCloud(t, dir)
	var page struct {
		Items []json.RawMessage `json:"items"`
	}
	if st := call(t, p.url, token, "GET", acct+"/models", nil, &page); st != 200 || len(page.Items) != 0 {
		t.Fatalf("after kill -9: list = %d %d items, want 200 and none", st, len(page.Items))
	}
	if files, _ := filepath.Glob(filepath.Join(tmp, "*")); len(files) != 0 {
		t.Errorf("temp files left after restart: %v", files)
	}
	// The same upload now succeeds.
	h := sha256.New()
	io.Copy(h, model(8<<20))
	var m struct {
		Version int    `json:"version"`
		Digest  string `json:"digest"`
	}
	if st := call(t, p.url, token, "POST", acct+"/models/big/versions?format=file", model(8<<20), &m); st != 201 {
		t.Fatalf("upload after restart = %d", st)
	}
	if want := "sha256:" + hex.EncodeToString(h.Sum(nil)); m.Digest != want || m.Version != 1 {
		t.Errorf("model = %+v, want version 1 digest %s", m, want)
	}
}

// vmHWM reads a process's peak resident set size in bytes.
func vmHWM(tb testing.TB, pid int) int64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	tb.Fatal("no VmHWM")
	return 0
}

// BenchmarkUpload200MB uploads a 200 MB model file to a real cloud process
// and reports how much its peak RSS grew (goal: under 40 MB) and whether the
// digest it reports equals sha256sum's.
func BenchmarkUpload200MB(b *testing.B) {
	dir := b.TempDir()
	token := initCloud(b, dir)
	p := startCloud(b, dir)
	acct := setupAccount(b, p.url, token)
	file := filepath.Join(b.TempDir(), "model.bin")
	f, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(f, model(200<<20)); err != nil {
		b.Fatal(err)
	}
	f.Close()
	out, err := exec.Command("sha256sum", file).Output()
	if err != nil {
		b.Fatal(err)
	}
	want := "sha256:" + strings.Fields(string(out))[0]
	// Warm up the server (first requests grow the heap a little).
	call(b, p.url, token, "GET", acct+"/models", nil, nil)
	before := vmHWM(b, p.cmd.Process.Pid)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, _ := os.Open(file)
		var m struct {
			Digest string `json:"digest"`
		}
		st := call(b, p.url, token, "POST", acct+"/models/big/versions?format=file", f, &m)
		f.Close()
		if st != 201 || m.Digest != want {
			b.Fatalf("upload = %d digest %s, want 201 %s", st, m.Digest, want)
		}
	}
	b.StopTimer()
	delta := vmHWM(b, p.cmd.Process.Pid) - before
	b.SetBytes(200 << 20)
	b.ReportMetric(float64(delta)/(1<<20), "peak-RSS-growth-MB")
	b.Logf("peak RSS %d MB before, +%.1f MB after uploading 200 MB; digest %s = sha256sum", before>>20, float64(delta)/(1<<20), want)
}
