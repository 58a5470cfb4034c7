// Command scorer is the test program the containerd tests put in their
// images: it serves HTTP on $MLFLEET_ADDR and reports what it sees of its
// container. Env: TEST_CRASH=<code> exits at start with that code;
// TEST_IGNORE_TERM=1 ignores SIGTERM; otherwise SIGTERM exits 0 after
// printing "graceful exit".
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	fmt.Println("scorer starting")
	if c := os.Getenv("TEST_CRASH"); c != "" {
		code, _ := strconv.Atoi(c)
		fmt.Println("crashing as asked")
		os.Exit(code)
	}
	sigs := make(chan os.Signal, 1)
	if os.Getenv("TEST_IGNORE_TERM") == "1" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(sigs, syscall.SIGTERM)
	}
	ln, err := net.Listen("tcp", os.Getenv("MLFLEET_ADDR"))
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(2)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/info", func(w http.ResponseWriter, _ *http.Request) {
		rootErr := os.WriteFile("/probe", []byte("x"), 0o644)
		tmpErr := os.WriteFile("/tmp/probe", []byte("x"), 0o644)
		env := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		json.NewEncoder(w).Encode(map[string]any{
			"uid":          os.Getuid(),
			"gid":          os.Getgid(),
			"env":          env,
			"rootWritable": rootErr == nil,
			"tmpWritable":  tmpErr == nil,
			"memLimit":     readFirst("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"),
			"cpuMax":       readFirst("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us"),
		})
	})
	go http.Serve(ln, mux)
	fmt.Println("serving on", ln.Addr())
	<-sigs
	fmt.Println("graceful exit")
	os.Exit(0)
}

func readFirst(paths ...string) string {
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	return ""
}
