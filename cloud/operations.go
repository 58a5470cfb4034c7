package cloud

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// Work is the body of an operation: it reports progress through logf and
// returns the path of what it made.
type Work func(ctx context.Context, logf func(format string, args ...any)) (result string, err error)

type job struct {
	path string
	work Work
}

// operations runs long work in the background: Submit records an operation
// as Queued and answers at once; RunOperations executes the queue until its
// ctx ends.
type operations struct {
	queue chan job
	mu    sync.Mutex // serializes log appends of one process
}

const maxQueuedOperations = 256

// SubmitOperation records a Queued operation in an account and queues its
// work. The caller has checked authorization for what the work does.
func (s *Service) SubmitOperation(ctx context.Context, sub, acct, kind, target string, work Work) (*Operation, error) {
	var idb [8]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return nil, err
	}
	id := hex.EncodeToString(idb[:])
	op := Operation{Meta: s.meta(ctx, OperationPath(sub, acct, id)), ID: id, Kind: kind, Target: target, Status: OpQueued}
	if err := s.store.Update(ctx, func(tx Tx) error { return tx.Create(op.Path, &op) }); err != nil {
		return nil, err
	}
	select {
	case s.ops.queue <- job{path: op.Path, work: work}:
		return &op, nil
	default:
		s.finish(context.WithoutCancel(ctx), op.Path, "", errclass.New(errclass.Unavailable, "", "too many operations queued"))
		return nil, errclass.New(errclass.Unavailable, "", "too many operations queued (%d); retry later", maxQueuedOperations)
	}
}

// RunOperations executes queued operations with the given number of workers
// until ctx ends. Operations left Queued or Running by a previous process
// are marked Failed first.
func (s *Service) RunOperations(ctx context.Context, workers int) error {
	if err := s.failInterrupted(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-s.ops.queue:
					s.runJob(ctx, j)
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

func (s *Service) runJob(ctx context.Context, j job) {
	s.setStatus(ctx, j.path, func(op *Operation) { op.Status = OpRunning })
	logf := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		s.setStatus(context.WithoutCancel(ctx), j.path, func(op *Operation) {
			if len(op.Log) < 10000 {
				op.Log = append(op.Log, line)
			}
		})
	}
	result, err := j.work(ctx, logf)
	s.finish(context.WithoutCancel(ctx), j.path, result, err)
}

func (s *Service) finish(ctx context.Context, path, result string, err error) {
	s.setStatus(ctx, path, func(op *Operation) {
		op.Done = true
		op.Result = result
		op.Status = OpSucceeded
		if err != nil {
			op.Status = OpFailed
			op.Error = &APIError{Code: string(errclass.ClassOf(err)), Message: err.Error(), Field: errclass.FieldOf(err)}
		}
	})
}

func (s *Service) setStatus(ctx context.Context, path string, fn func(*Operation)) {
	s.ops.mu.Lock()
	defer s.ops.mu.Unlock()
	err := s.store.Update(ctx, func(tx Tx) error {
		var op Operation
		if err := tx.Get(path, &op); err != nil {
			return err
		}
		fn(&op)
		op.UpdatedAt = s.now()
		return tx.Put(path, &op)
	})
	if err != nil {
		slog.Warn("update operation", "path", path, "err", err)
	}
}

// failInterrupted marks operations a previous process left unfinished.
func (s *Service) failInterrupted(ctx context.Context) error {
	return s.store.Update(ctx, func(tx Tx) error {
		var paths []string
		// Operations live at depth 5 below /subscriptions: sub/accounts/acct/operations/id.
		_, err := tx.List("/subscriptions", 5, "", 0, func(raw []byte) error {
			var op Operation
			if json.Unmarshal(raw, &op) == nil && strings.Contains(op.Path, "/operations/") && !op.Done {
				paths = append(paths, op.Path)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, p := range paths {
			var op Operation
			if err := tx.Get(p, &op); err != nil {
				return err
			}
			op.Done, op.Status = true, OpFailed
			op.Error = &APIError{Code: string(errclass.Unavailable), Message: "interrupted by a cloud restart; submit it again"}
			op.UpdatedAt = s.now()
			if err := tx.Put(p, &op); err != nil {
				return err
			}
		}
		return nil
	})
}

// GetOperation reads an operation.
func (s *Service) GetOperation(ctx context.Context, sub, acct, id string) (*Operation, error) {
	return get[Operation](ctx, s, OperationPath(sub, acct, id), Reader)
}

// ListOperations lists an account's operations.
func (s *Service) ListOperations(ctx context.Context, sub, acct string, o ListOptions) (Page[Operation], error) {
	if _, err := authorize(ctx, AccountPath(sub, acct), Reader); err != nil {
		return Page[Operation]{}, err
	}
	return list[Operation](ctx, s, AccountPath(sub, acct)+"/operations", 1, o, nil)
}
