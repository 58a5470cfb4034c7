package ortbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"
)

// benchRows are the batch sizes of BenchmarkCompare.
var benchRows = []int{1, 256}

// The onnxruntime side, set by ort_test.go when built with the tag "ort".
var (
	// ortInit loads the library and starts onnxruntime's environment.
	ortInit func() (teardown func(), err error)
	// newORT makes an onnxruntime session of the example's model, single
	// threaded, bound to the given inputs.
	newORT func(ex *example, cols []column) (ortRunner, error)
)

// ortRunner runs one onnxruntime session on fixed inputs.
type ortRunner interface {
	run() error                         // one inference, outputs discarded
	outputs() (map[string]value, error) // one inference, outputs converted
	close()
}

// refusedError is onnxruntime refusing to load a model: the model is not
// compared (reported in the table), which is no failure of the engine.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// timing is the per-op time of one benchmark. Within a round, go test
// calls the benchmark with growing b.N and the last call counts; a call with
// a b.N not above the previous one starts a new round (-count), and the
// fastest round is kept.
type timing struct {
	n, curN     int     // n > 0 once a figure exists
	ns, cur     float64 // best finished round; current round
	lat, curLat [2]time.Duration
	finished    bool // ns holds a finished round
}

func (t *timing) add(n int, d time.Duration) { t.addLat(n, d, [2]time.Duration{}) }

// addLat records a call with the p50 and p99 latency of its requests.
func (t *timing) addLat(n int, d time.Duration, lat [2]time.Duration) {
	if n <= 0 {
		return
	}
	if t.curN > 0 && n <= t.curN {
		if !t.finished || t.cur < t.ns {
			t.ns, t.lat = t.cur, t.curLat
		}
		t.finished = true
	}
	t.curN, t.cur, t.curLat = n, float64(d.Nanoseconds())/float64(n), lat
	t.n = t.curN
}

// best is the fastest round's ns/op and latencies.
func (t *timing) best() float64 {
	ns, _ := t.bestLat()
	return ns
}

func (t *timing) bestLat() (float64, [2]time.Duration) {
	if t.finished && t.ns < t.cur {
		return t.ns, t.lat
	}
	return t.cur, t.curLat
}

type cmpKey struct {
	model string
	rows  int
}

type cmpResult struct {
	mlfleet, ort timing
	agree        string // "yes", or why not checked / what differed
}

type httpResult struct {
	reqs timing // ns per request of the whole client pool, p50 and p99
}

// results collects figures for the table TestMain prints.
var results = struct {
	sync.Mutex
	cmp  map[cmpKey]*cmpResult
	http map[string]map[string]*httpResult // model -> scorer/baseline
}{cmp: map[cmpKey]*cmpResult{}, http: map[string]map[string]*httpResult{}}

func cmpEntry(model string, rows int) *cmpResult {
	k := cmpKey{model, rows}
	r := results.cmp[k]
	if r == nil {
		r = &cmpResult{}
		results.cmp[k] = r
	}
	return r
}

func TestMain(m *testing.M) {
	teardown := func() {}
	if ortInit != nil {
		td, err := ortInit()
		if err != nil {
			fmt.Fprintln(os.Stderr, "ortbench:", err)
			os.Exit(2)
		}
		teardown = td
	}
	code := m.Run()
	teardown()
	printTables(os.Stdout)
	os.Exit(code)
}

// printTables writes the collected figures, if any.
func printTables(w io.Writer) {
	results.Lock()
	defer results.Unlock()
	if len(results.cmp) > 0 {
		keys := make([]cmpKey, 0, len(results.cmp))
		for k := range results.cmp {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			if keys[i].model != keys[j].model {
				return keys[i].model < keys[j].model
			}
			return keys[i].rows < keys[j].rows
		})
		fmt.Fprintln(w, "\nmlfleet engine vs onnxruntime (one thread each; ratio = mlfleet/onnxruntime, lower is better)")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "model\trows\tmlfleet ns/op\tonnxruntime ns/op\tratio\tgoal\tagree\t")
		for _, k := range keys {
			r := results.cmp[k]
			ml, ort, ratio, goal := "-", "-", "-", ""
			if r.mlfleet.n > 0 {
				ml = fmt.Sprintf("%.0f", r.mlfleet.best())
			}
			if r.ort.n > 0 {
				ort = fmt.Sprintf("%.0f", r.ort.best())
			}
			var q float64
			if r.mlfleet.n > 0 && r.ort.n > 0 {
				q = r.mlfleet.best() / r.ort.best()
				ratio = fmt.Sprintf("%.2fx", q)
			}
			if limit, ok := cmpGoal(k); ok {
				goal = fmt.Sprintf("<=%.1fx", limit)
				if ratio != "-" {
					if q <= limit {
						goal += " ok"
					} else {
						goal += " MISS"
					}
				}
			}
			agree := r.agree
			if agree == "" {
				agree = "-"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t\n", k.model, k.rows, ml, ort, ratio, goal, agree)
		}
		tw.Flush()
	}
	if len(results.http) > 0 {
		models := make([]string, 0, len(results.http))
		for m := range results.http {
			models = append(models, m)
		}
		sort.Strings(models)
		fmt.Fprintf(w, "\nPOST /score, %d concurrent clients, one row per request (ratio = scorer/baseline req/s, goal >= %.1fx)\n", httpClients, httpGoal)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "model\tscorer req/s\tp50 µs\tp99 µs\tbaseline req/s\tp50 µs\tp99 µs\tratio\tgoal\t")
		for _, m := range models {
			s, base := results.http[m]["scorer"], results.http[m]["baseline"]
			cells := []string{m}
			rps := func(r *httpResult) float64 { return 1e9 / r.reqs.best() }
			for _, r := range []*httpResult{s, base} {
				if r == nil || r.reqs.n == 0 {
					cells = append(cells, "-", "-", "-")
					continue
				}
				_, lat := r.reqs.bestLat()
				cells = append(cells, fmt.Sprintf("%.0f", rps(r)), strconv.FormatInt(lat[0].Microseconds(), 10), strconv.FormatInt(lat[1].Microseconds(), 10))
			}
			if s != nil && base != nil && s.reqs.n > 0 && base.reqs.n > 0 {
				q := rps(s) / rps(base)
				verdict := "ok"
				if q < httpGoal {
					verdict = "MISS"
				}
				cells = append(cells, fmt.Sprintf("%.2fx", q), verdict)
			} else {
				cells = append(cells, "-", "")
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
		}
		tw.Flush()
	}
}

// cmpGoal is issue 3's goal for a model and batch size: single rows at or
// below onnxruntime's time; 256 rows of the MLP within 3x.
func cmpGoal(k cmpKey) (float64, bool) {
	switch {
	case k.rows == 1:
		return 1, true
	case k.model == "iris_mlp" && k.rows == 256:
		return 3, true
	}
	return 0, false
}

// BenchmarkCompare times the engine and (with the tag "ort") onnxruntime on
// 1 and 256 rows of every example model, after checking that their outputs
// agree.
func BenchmarkCompare(b *testing.B) {
	for _, name := range exampleNames(b) {
		ex, err := loadExample(name)
		if err != nil {
			b.Fatal(err)
		}
		sess, err := engineSession(ex)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			for _, rows := range benchRows {
				b.Run(strconv.Itoa(rows), func(b *testing.B) {
					cols := ex.feed(rows)
					in := engineFeed(cols)
					want, err := runEngine(sess, in)
					if err != nil {
						b.Fatalf("model %s, %d rows: engine: %v", name, rows, err)
					}
					var ort ortRunner
					agreeNote := ""
					if newORT != nil {
						ort, err = newORT(ex, cols)
						var refused *refusedError
						switch {
						case errors.As(err, &refused):
							b.Logf("model %s: onnxruntime refuses it: %v", name, err)
							agreeNote = "onnxruntime refuses the model"
						case err != nil:
							b.Errorf("model %s, %d rows: onnxruntime: %v", name, rows, err)
							agreeNote = "onnxruntime failed"
						default:
							defer ort.close()
							agreeNote = checkAgreement(want, ort)
							if strings.HasPrefix(agreeNote, "NO") {
								b.Errorf("model %s, %d rows: outputs differ: %s", name, rows, agreeNote)
							}
						}
					}
					results.Lock()
					cmpEntry(name, rows).agree = agreeNote
					results.Unlock()

					b.Run("mlfleet", func(b *testing.B) {
						ctx := context.Background()
						b.ReportAllocs()
						b.ResetTimer()
						for i := 0; i < b.N; i++ {
							if _, err := sess.Run(ctx, in); err != nil {
								b.Fatal(err)
							}
						}
						b.StopTimer()
						results.Lock()
						cmpEntry(name, rows).mlfleet.add(b.N, b.Elapsed())
						results.Unlock()
					})
					if ort == nil {
						return
					}
					b.Run("onnxruntime", func(b *testing.B) {
						b.ReportAllocs()
						b.ResetTimer()
						for i := 0; i < b.N; i++ {
							if err := ort.run(); err != nil {
								b.Fatal(err)
							}
						}
						b.StopTimer()
						results.Lock()
						cmpEntry(name, rows).ort.add(b.N, b.Elapsed())
						results.Unlock()
					})
				})
			}
		})
	}
}

// checkAgreement runs onnxruntime once and compares with the engine's
// outputs: "yes", "NO: <difference>", or why it could not be checked.
func checkAgreement(want map[string]value, ort ortRunner) string {
	got, err := ort.outputs()
	if err != nil {
		return "unchecked: " + err.Error()
	}
	if err := agreeAll(want, got); err != nil {
		return "NO: " + err.Error()
	}
	return "yes"
}

// TestAgreement checks, for every example model and batch size, that
// onnxruntime gives the engine's outputs to 1e-4 (absolute up to 1,
// relative above; labels and strings exactly).
func TestAgreement(t *testing.T) {
	if newORT == nil {
		t.Skip("built without the tag ort: no onnxruntime to compare with")
	}
	for _, name := range exampleNames(t) {
		t.Run(name, func(t *testing.T) {
			ex, err := loadExample(name)
			if err != nil {
				t.Fatal(err)
			}
			sess, err := engineSession(ex)
			if err != nil {
				t.Fatal(err)
			}
			for _, rows := range benchRows {
				cols := ex.feed(rows)
				want, err := runEngine(sess, engineFeed(cols))
				if err != nil {
					t.Fatalf("%d rows: engine: %v", rows, err)
				}
				ort, err := newORT(ex, cols)
				var refused *refusedError
				if errors.As(err, &refused) {
					t.Skipf("onnxruntime refuses the model: %v", err)
				}
				if err != nil {
					t.Fatalf("%d rows: onnxruntime: %v", rows, err)
				}
				note := checkAgreement(want, ort)
				ort.close()
				switch {
				case note == "yes":
				case strings.HasPrefix(note, "NO"):
					t.Errorf("%d rows: %s", rows, note)
				default:
					t.Logf("%d rows: %s", rows, note)
				}
			}
		})
	}
}

// TestEngineFeeds checks the harness without onnxruntime: every example
// loads, tiles to each batch size and runs in the engine with one output
// row per input row.
func TestEngineFeeds(t *testing.T) {
	for _, name := range exampleNames(t) {
		t.Run(name, func(t *testing.T) {
			ex, err := loadExample(name)
			if err != nil {
				t.Fatal(err)
			}
			sess, err := engineSession(ex)
			if err != nil {
				t.Fatal(err)
			}
			for _, rows := range benchRows {
				cols := ex.feed(rows)
				for _, c := range cols {
					if c.rows() != rows || len(c.f32)+len(c.f64)+len(c.i64)+len(c.str) != rows*c.rowLen() {
						t.Fatalf("input %s tiled to %d rows has shape %v", c.name, rows, c.shape)
					}
				}
				out, err := runEngine(sess, engineFeed(cols))
				if err != nil {
					t.Fatalf("%d rows: %v", rows, err)
				}
				for oname, v := range out {
					n := len(v.maps)
					if v.maps == nil {
						n = v.shape[0]
					}
					if n != rows {
						t.Errorf("%d rows: output %s has %d rows", rows, oname, n)
					}
				}
				// Agreement with itself, through the same conversion as onnxruntime's.
				if err := agreeAll(out, out); err != nil {
					t.Errorf("%d rows: %v", rows, err)
				}
			}
		})
	}
}

// TestSetupScript runs setup.sh against a cache directory that already
// holds a (fake) library: it must print that path without installing.
func TestSetupScript(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	tests := []struct {
		name    string
		lib     string // created under the cache dir; "" for none
		path    string // PATH for the script
		want    string // suffix of stdout, or of stderr when wantErr
		wantErr bool
	}{
		{name: "cached", lib: "onnxruntime-node-1.30.0/node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1", path: os.Getenv("PATH"), want: "/linux/x64/libonnxruntime.so.1"},
		{name: "no npm", path: t.TempDir(), want: "npm is not installed", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cache := t.TempDir()
			if tc.lib != "" {
				p := filepath.Join(cache, tc.lib)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte("fake"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(bash, "setup.sh")
			cmd.Env = append(os.Environ(), "ORT_CACHE_DIR="+cache, "PATH="+tc.path)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if tc.wantErr {
				if err == nil {
					t.Fatalf("setup.sh succeeded: %s", out)
				}
				if !strings.Contains(stderr.String(), tc.want) {
					t.Errorf("setup.sh stderr %q lacks %q", stderr.String(), tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("setup.sh: %v\n%s", err, stderr.String())
			}
			got := strings.TrimSpace(string(out))
			if !strings.HasPrefix(got, cache) || !strings.HasSuffix(got, tc.want) {
				t.Errorf("setup.sh printed %q, want %s...%s", got, cache, tc.want)
			}
		})
	}
}

// TestTiming checks which figure the table reports: the last call of a
// round, the fastest round over -count.
func TestTiming(t *testing.T) {
	tests := []struct {
		name  string
		calls [][2]int // b.N, total ns
		want  float64
	}{
		{"one call", [][2]int{{1, 500}}, 500},
		{"last of a round", [][2]int{{1, 900}, {100, 20000}, {1000, 100000}}, 100},
		{"fastest round", [][2]int{{1, 900}, {1000, 200000}, {1, 800}, {900, 90000}, {1, 700}, {1100, 330000}}, 100},
		{"equal N starts a round", [][2]int{{50, 5000}, {50, 4000}}, 80},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var tm timing
			for _, c := range tc.calls {
				tm.add(c[0], time.Duration(c[1]))
			}
			if got := tm.best(); got != tc.want {
				t.Errorf("best() = %v, want %v", got, tc.want)
			}
		})
	}
}
