package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// backend answers "<id> <method> <path> <auth>".
func backend(t testing.TB, id string) *url.URL {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s %s %s %s", id, r.Method, r.URL.RequestURI(), r.Header.Get("Authorization"))
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return u
}

func serve(t testing.TB, g *Gateway) string {
	t.Helper()
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestRouting(t *testing.T) {
	a, b := backend(t, "A"), backend(t, "B")
	g := New(Config{})
	g.SetRoutes([]Route{{Service: "iris", Backend: a}, {Service: "digits", Model: "mnist", Backend: b}})
	base := serve(t, g)
	tests := []struct {
		method, path string
		wantCode     int
		wantBody     string
	}{
		{"POST", "/services/iris/score", 200, "A POST /score "},
		{"GET", "/services/iris/swagger.json", 200, "A GET /swagger.json "},
		{"POST", "/services/iris/invocations", 200, "A POST /invocations "},
		{"GET", "/services/iris/v1/profile?window=1", 200, "A GET /v1/profile?window=1 "},
		{"GET", "/services/iris", 200, "A GET / "},
		{"POST", "/services/digits/score", 200, "B POST /score "},
		{"POST", "/v2/models/mnist/infer", 200, "B POST /v2/models/mnist/infer "},
		{"GET", "/v2/models/mnist", 200, "B GET /v2/models/mnist "},
		{"GET", "/v2/models/iris/ready", 200, "A GET /v2/models/iris/ready "},
		{"GET", "/v2/models/digits/ready", 503, `{"error":"no service serves model \"digits\""}`},
		{"POST", "/services/nope/score", 503, `"code":"unavailable"`},
		{"GET", "/elsewhere", 404, `"code":"not_found"`},
		{"GET", "/healthz", 200, `"status":"ok"`},
		{"GET", "/v2/health/live", 200, `"live":true`},
		{"GET", "/v2/health/ready", 200, `"ready":true`},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, base+tc.path, strings.NewReader("{}"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantCode || !strings.Contains(string(body), tc.wantBody) {
				t.Fatalf("%s %s = %d %q, want %d containing %q", tc.method, tc.path, resp.StatusCode, body, tc.wantCode, tc.wantBody)
			}
			if tc.wantCode >= 400 && resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("error answer has Content-Type %q", resp.Header.Get("Content-Type"))
			}
		})
	}
}

func TestLocalKey(t *testing.T) {
	g := New(Config{Key: "s3cret"})
	g.SetRoutes([]Route{{Service: "iris", Backend: backend(t, "A")}})
	base := serve(t, g)
	tests := []struct {
		name, path, auth string
		wantCode         int
	}{
		{"no key", "/services/iris/score", "", 401},
		{"wrong key", "/services/iris/score", "Bearer nope", 401},
		{"basic scheme", "/services/iris/score", "Basic s3cret", 401},
		{"right key", "/services/iris/score", "Bearer s3cret", 200},
		{"v2 needs key", "/v2/models/iris/infer", "", 401},
		{"healthz open", "/healthz", "", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", base+tc.path, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("code = %d (%s), want %d", resp.StatusCode, body, tc.wantCode)
			}
			if tc.wantCode == 200 && strings.Contains(string(body), "s3cret") {
				t.Fatalf("the local key reached the backend: %q", body)
			}
		})
	}
}

func TestBadGatewayWhenBackendDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead, _ := url.Parse("http://" + ln.Addr().String())
	ln.Close()
	g := New(Config{})
	g.SetRoutes([]Route{{Service: "iris", Backend: dead}})
	resp, err := http.Post(serve(t, g)+"/services/iris/score", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || resp.StatusCode != 502 || e.Error.Code != "bad_gateway" {
		t.Fatalf("dead backend: %d %+v %v", resp.StatusCode, e, err)
	}
}

// TestAtomicSwitchUnderLoad flips the route between two live backends while
// clients hammer the gateway: no request may fail, and both backends must
// have served.
func TestAtomicSwitchUnderLoad(t *testing.T) {
	a, b := backend(t, "A"), backend(t, "B")
	g := New(Config{})
	g.SetRoutes([]Route{{Service: "iris", Backend: a}})
	base := serve(t, g)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var ok, failed, sawA, sawB atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Post(base+"/services/iris/score", "application/json", strings.NewReader(`{"input_df":[]}`))
				if err != nil {
					failed.Add(1)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case resp.StatusCode != 200:
					failed.Add(1)
				case strings.HasPrefix(string(body), "A "):
					sawA.Add(1)
					ok.Add(1)
				case strings.HasPrefix(string(body), "B "):
					sawB.Add(1)
					ok.Add(1)
				default:
					failed.Add(1)
				}
			}
		})
	}
	for i := range 50 {
		be := a
		if i%2 == 0 {
			be = b
		}
		g.SetRoutes([]Route{{Service: "iris", Backend: be}})
		// Let some requests through on each route before flipping again.
		deadline := time.Now().Add(5 * time.Second)
		for n := ok.Load(); ok.Load() < n+5 && failed.Load() == 0 && time.Now().Before(deadline); {
			runtime.Gosched()
		}
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || sawA.Load() == 0 || sawB.Load() == 0 {
		t.Fatalf("ok=%d failed=%d A=%d B=%d; want no failures and both backends used", ok.Load(), failed.Load(), sawA.Load(), sawB.Load())
	}
}

func benchTarget(b *testing.B, url string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(url, "application/json", strings.NewReader(`{"input_df":[{"a":1}]}`))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
}

// BenchmarkDirect and BenchmarkGateway compare calling a scorer directly with
// calling it through the gateway; the gateway should stay close.
func BenchmarkDirect(b *testing.B) {
	be := backend(b, "A")
	benchTarget(b, be.String()+"/score")
}

func BenchmarkGateway(b *testing.B) {
	g := New(Config{})
	g.SetRoutes([]Route{{Service: "iris", Backend: backend(b, "A")}})
	benchTarget(b, serve(b, g)+"/services/iris/score")
}
