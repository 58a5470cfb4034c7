package scorer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/mlfleet/mlfleet/images/onnx"
	"github.com/mlfleet/mlfleet/shared/errclass"
	"github.com/mlfleet/mlfleet/shared/manifest"
)

// Backoff between restarts of a dead child.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
	// A child that ran this long resets the backoff.
	stableRun = 10 * time.Second
	// maxLine bounds one line of the child's output.
	maxLine = 64 << 20
)

// ErrTimeout is the error of a call the child did not answer in time.
var ErrTimeout = errors.New("scorer: the scoring command did not answer in time")

// execBackend runs manifest.scoring.command as a child process speaking
// JSON lines on its stdin and stdout.
type execBackend struct {
	command []string
	dir     string
	env     []string
	timeout time.Duration
	batch   bool // the command takes many rows per call
	log     *slog.Logger

	mu      sync.Mutex
	stdin   io.WriteCloser // nil while no child is running
	pending map[uint64]chan execReply
	nextID  uint64
	done    chan struct{} // closed when the supervisor has stopped
}

type execReply struct {
	ID     uint64            `json:"id"`
	Result []json.RawMessage `json:"result"`
	Error  *string           `json:"error"`
	dead   bool              // the child died before answering
}

func newExec(m *manifest.Manifest, dir, modelDir string, log *slog.Logger) (*execBackend, error) {
	if _, err := exec.LookPath(m.Scoring.Command[0]); err != nil {
		return nil, errclass.Invalid("scoring.command", "scoring.command: %q: %v", m.Scoring.Command[0], err)
	}
	for _, ref := range m.Models {
		p := modelDir + string(os.PathSeparator) + ref.Path
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("model %q: %w", ref.Name, err)
		}
	}
	t := time.Duration(m.Scoring.TimeoutMs) * time.Millisecond
	if t <= 0 {
		t = manifest.DefaultTimeoutMs * time.Millisecond
	}
	return &execBackend{
		command: m.Scoring.Command, dir: dir, timeout: t, batch: m.Scoring.BatchInput, log: log,
		env:     append(os.Environ(), "MLFLEET_MODEL_DIR="+modelDir),
		pending: map[uint64]chan execReply{}, done: make(chan struct{}),
	}, nil
}

func (b *execBackend) platform() string           { return "exec" }
func (b *execBackend) modelInputs() []onnx.IOInfo { return nil }

func (b *execBackend) ready() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stdin != nil
}

// start runs the supervisor: it starts the child, and restarts it with
// exponential backoff whenever it dies, until ctx ends.
func (b *execBackend) start(ctx context.Context) {
	go func() {
		defer close(b.done)
		backoff := minBackoff
		for {
			began := time.Now()
			err := b.runChild(ctx)
			if ctx.Err() != nil {
				return
			}
			if time.Since(began) > stableRun {
				backoff = minBackoff
			}
			b.log.Warn("scoring command exited; restarting", "err", err, "backoff", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(backoff*2, maxBackoff)
		}
	}()
}

// runChild runs one child until it exits or ctx ends.
func (b *execBackend) runChild(ctx context.Context) error {
	cmd := exec.Command(b.command[0], b.command[1:]...)
	cmd.Dir, cmd.Env, cmd.Stderr = b.dir, b.env, os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %q: %w", b.command[0], err)
	}
	b.mu.Lock()
	b.stdin = stdin
	b.mu.Unlock()

	readDone := make(chan error, 1)
	go func() { readDone <- b.read(stdout) }()
	var readErr error
	select {
	case readErr = <-readDone:
	case <-ctx.Done():
		stdin.Close() // a well-behaved child exits at EOF
		select {
		case readErr = <-readDone:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			readErr = <-readDone
		}
	}
	b.mu.Lock()
	b.stdin = nil
	for id, ch := range b.pending { // calls in flight fail now
		ch <- execReply{ID: id, dead: true}
		delete(b.pending, id)
	}
	b.mu.Unlock()
	stdin.Close()
	_ = cmd.Process.Kill() // it may still run after closing stdout
	waitErr := cmd.Wait()
	if readErr != nil {
		return readErr
	}
	return waitErr
}

// read dispatches the child's answers to the waiting calls.
func (b *execBackend) read(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for sc.Scan() {
		var rep execReply
		if err := json.Unmarshal(sc.Bytes(), &rep); err != nil {
			b.log.Warn("scoring command wrote a line that is not a reply", "err", err)
			continue
		}
		b.mu.Lock()
		ch := b.pending[rep.ID]
		delete(b.pending, rep.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- rep
		}
	}
	return sc.Err()
}

// infer sends the rows to the child (in one call, or one call per row when
// the command does not take batches) and waits for the results.
func (b *execBackend) infer(ctx context.Context, bt *batch) (*result, error) {
	ctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	res := &result{n: bt.n, raw: make([]json.RawMessage, 0, bt.n)}
	if b.batch {
		out, err := b.call(ctx, bt.rows)
		if err != nil {
			return nil, err
		}
		res.raw = out
		return res, nil
	}
	calls := make([]execCall, len(bt.rows))
	for i := range bt.rows {
		id, ch, err := b.send(bt.rows[i : i+1 : i+1])
		if err != nil {
			b.forget(calls[:i])
			return nil, err
		}
		calls[i] = execCall{ch, id}
	}
	for i, c := range calls {
		out, err := b.wait(ctx, c.id, c.ch, 1)
		if err != nil {
			for _, rest := range calls[i+1:] {
				b.drop(rest.id)
			}
			return nil, err
		}
		res.raw = append(res.raw, out...)
	}
	return res, nil
}

type execCall struct {
	ch chan execReply
	id uint64
}

func (b *execBackend) forget(calls []execCall) {
	for _, c := range calls {
		b.drop(c.id)
	}
}

func (b *execBackend) drop(id uint64) {
	b.mu.Lock()
	delete(b.pending, id)
	b.mu.Unlock()
}

func (b *execBackend) call(ctx context.Context, rows []map[string]any) ([]json.RawMessage, error) {
	id, ch, err := b.send(rows)
	if err != nil {
		return nil, err
	}
	return b.wait(ctx, id, ch, len(rows))
}

// send writes one request line; it fails with errclass.Unavailable when no
// child is running.
func (b *execBackend) send(rows []map[string]any) (uint64, chan execReply, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stdin == nil {
		return 0, nil, errclass.New(errclass.Unavailable, "", "the scoring command is not running (restarting)")
	}
	b.nextID++
	id := b.nextID
	line, err := json.Marshal(struct {
		ID   uint64           `json:"id"`
		Rows []map[string]any `json:"rows"`
	}{id, rows})
	if err != nil {
		return 0, nil, fmt.Errorf("encode rows: %w", err)
	}
	line = append(line, '\n')
	if _, err := b.stdin.Write(line); err != nil {
		return 0, nil, errclass.Wrap(errclass.Unavailable, err, "write to the scoring command")
	}
	ch := make(chan execReply, 1)
	b.pending[id] = ch
	return id, ch, nil
}

func (b *execBackend) wait(ctx context.Context, id uint64, ch chan execReply, n int) ([]json.RawMessage, error) {
	select {
	case rep := <-ch:
		if rep.dead {
			return nil, errclass.New(errclass.Unavailable, "", "the scoring command exited before answering")
		}
		if rep.Error != nil {
			return nil, fmt.Errorf("scoring command: %s", *rep.Error)
		}
		if len(rep.Result) != n {
			return nil, fmt.Errorf("scoring command returned %d results for %d rows", len(rep.Result), n)
		}
		for i, r := range rep.Result {
			var buf bytes.Buffer
			if err := json.Compact(&buf, r); err != nil {
				return nil, fmt.Errorf("scoring command: result %d: %w", i, err)
			}
			rep.Result[i] = buf.Bytes()
		}
		return rep.Result, nil
	case <-ctx.Done():
		b.drop(id)
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("call %d after %v: %w", id, b.timeout, ErrTimeout)
		}
		return nil, ctx.Err()
	}
}

// wait blocks until the supervisor has stopped (after ctx of start ended).
func (b *execBackend) stopped() <-chan struct{} { return b.done }
