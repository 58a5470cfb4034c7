package containerd

import (
	"context"
	"errors"
	"net/http"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"

	"github.com/mlfleet/mlfleet/shared/errclass"
)

// classify wraps err, an error from containerd or a registry, with its class
// and a message saying what was being done.
func classify(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return errclass.Wrap(classOf(err), err, format, args...)
}

func classOf(err error) errclass.Class {
	var status remoteerrors.ErrUnexpectedStatus
	if errors.As(err, &status) {
		switch status.StatusCode {
		case http.StatusUnauthorized:
			return errclass.Unauthenticated
		case http.StatusForbidden:
			return errclass.PermissionDenied
		case http.StatusNotFound:
			return errclass.NotFound
		}
		return errclass.Unavailable
	}
	if errors.Is(err, docker.ErrInvalidAuthorization) {
		return errclass.Unauthenticated
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return errclass.Unavailable
	}
	if c := nativeClass(err); c != errclass.Unknown {
		return c
	}
	// A raw gRPC status from a call the client did not convert.
	return nativeClass(errgrpc.ToNative(err))
}

func nativeClass(native error) errclass.Class {
	switch {
	case errdefs.IsNotFound(native):
		return errclass.NotFound
	case errdefs.IsAlreadyExists(native), errdefs.IsConflict(native):
		return errclass.Conflict
	case errdefs.IsInvalidArgument(native):
		return errclass.InvalidArgument
	case errdefs.IsFailedPrecondition(native):
		return errclass.FailedPrecondition
	case errdefs.IsUnauthorized(native):
		return errclass.Unauthenticated
	case errdefs.IsPermissionDenied(native):
		return errclass.PermissionDenied
	case errdefs.IsUnavailable(native), errdefs.IsDeadlineExceeded(native), errdefs.IsCanceled(native):
		return errclass.Unavailable
	}
	return errclass.Unknown
}

func isNotFound(err error) bool {
	return classOf(err) == errclass.NotFound
}
