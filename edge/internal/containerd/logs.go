package containerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// logKeep is how many rotated files are kept: <log>.1 .. <log>.logKeep.
const logKeep = 2

// rotateLog rotates path if it is larger than max bytes. With live false
// nothing writes to path, so it is renamed; with live true a shim may hold
// it open for appending, so it is copied to <path>.1 and then truncated.
// It reports whether it rotated.
func rotateLog(path string, max int64, live bool) (bool, error) {
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, errclass.Wrap(errclass.Unavailable, err, "stat log %s", path)
	}
	if st.Size() <= max {
		return false, nil
	}
	for i := logKeep - 1; i >= 1; i-- {
		from, to := fmt.Sprintf("%s.%d", path, i), fmt.Sprintf("%s.%d", path, i+1)
		if err := os.Rename(from, to); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, errclass.Wrap(errclass.Unavailable, err, "rotate log %s", from)
		}
	}
	if !live {
		if err := os.Rename(path, path+".1"); err != nil {
			return false, errclass.Wrap(errclass.Unavailable, err, "rotate log %s", path)
		}
		return true, nil
	}
	if err := copyFile(path, path+".1"); err != nil {
		return false, err
	}
	if err := os.Truncate(path, 0); err != nil {
		return false, errclass.Wrap(errclass.Unavailable, err, "truncate log %s", path)
	}
	return true, nil
}

func copyFile(from, to string) (err error) {
	in, err := os.Open(from)
	if err != nil {
		return errclass.Wrap(errclass.Unavailable, err, "rotate log %s", from)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return errclass.Wrap(errclass.Unavailable, err, "rotate log %s", from)
	}
	defer func() {
		if cerr := out.Close(); cerr != nil && err == nil {
			err = errclass.Wrap(errclass.Unavailable, cerr, "rotate log %s", from)
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return errclass.Wrap(errclass.Unavailable, err, "rotate log %s to %s", from, to)
	}
	return nil
}

// prepareLog makes path's directory, rotates the file if it is too large,
// and creates it (mode 0640) so that it exists before the shim opens it.
func prepareLog(path string, max int64) error {
	if err := ensureDir(filepath.Dir(path)); err != nil {
		return err
	}
	if _, err := rotateLog(path, max, false); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return errclass.Wrap(errclass.Unavailable, err, "create log %s", path)
	}
	if err := f.Close(); err != nil {
		return errclass.Wrap(errclass.Unavailable, err, "create log %s", path)
	}
	return nil
}

// RotateLogs rotates the log of every instance whose log is larger than
// Config.LogMaxBytes, running or not. The daemon calls it periodically.
func (r *Runtime) RotateLogs(ctx context.Context) error {
	ctx = r.ctx(ctx)
	cs, err := r.client.Containers(ctx)
	if err != nil {
		return classify(err, "rotate logs: list containers")
	}
	var errs []error
	for _, c := range cs {
		labels, err := c.Labels(ctx)
		if err != nil {
			if !isNotFound(err) {
				errs = append(errs, classify(err, "rotate logs: read container %s", c.ID()))
			}
			continue
		}
		path := labels[labelLog]
		if path == "" {
			continue
		}
		if _, err := rotateLog(path, r.cfg.LogMaxBytes, true); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
