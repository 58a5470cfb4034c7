// Package errclass classifies errors once, at the place they are made, so that
// every boundary (HTTP servers, the CLI, MQTT handlers) can map them to its own
// status codes in one place.
//
// An error is classified by wrapping it in an *Error carrying a Class and,
// where one field of the input is to blame, that field's name:
//
//	return errclass.Invalid("name", "name %q has spaces", name)
//
// Callers wrap further with fmt.Errorf("...: %w", err) as usual; ClassOf and
// FieldOf find the classification through any number of wraps.
package errclass

import (
	"errors"
	"fmt"
)

// Class is the kind of failure, independent of any transport.
type Class string

// The classes. Unknown is what ClassOf reports for an unclassified error.
const (
	Unknown            Class = "internal"
	NotFound           Class = "not_found"
	InvalidArgument    Class = "invalid_argument"
	Conflict           Class = "conflict" // already exists, or a state that forbids the change
	Unauthenticated    Class = "unauthenticated"
	PermissionDenied   Class = "permission_denied"
	FailedPrecondition Class = "failed_precondition"
	Unavailable        Class = "unavailable"
	TooLarge           Class = "too_large"
)

// Error is a classified error.
type Error struct {
	Class Class
	// Field names the input field at fault, if any ("name", "schema.inputs[2].type").
	Field string
	Msg   string
	Err   error // optional cause
}

func (e *Error) Error() string {
	switch {
	case e.Msg != "" && e.Err != nil:
		return e.Msg + ": " + e.Err.Error()
	case e.Msg != "":
		return e.Msg
	case e.Err != nil:
		return e.Err.Error()
	}
	return string(e.Class)
}

func (e *Error) Unwrap() error { return e.Err }

// New makes a classified error with a formatted message.
func New(c Class, field, format string, args ...any) error {
	return &Error{Class: c, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Wrap classifies err, keeping it as the cause. A nil err gives nil.
func Wrap(c Class, err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &Error{Class: c, Msg: fmt.Sprintf(format, args...), Err: err}
}

// Invalid reports bad input in field.
func Invalid(field, format string, args ...any) error {
	return New(InvalidArgument, field, format, args...)
}

// NotFoundf reports a missing resource.
func NotFoundf(format string, args ...any) error { return New(NotFound, "", format, args...) }

// Conflictf reports an existing resource or a state that forbids the change.
func Conflictf(format string, args ...any) error { return New(Conflict, "", format, args...) }

// ClassOf returns the class of the outermost classified error in err's chain,
// or Unknown.
func ClassOf(err error) Class {
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	return Unknown
}

// FieldOf returns the field named by the first classified error in err's chain
// that names one.
func FieldOf(err error) string {
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return ""
		}
		if e.Field != "" {
			return e.Field
		}
		err = e.Err
	}
	return ""
}

// Is reports whether err is classified as c.
func Is(err error, c Class) bool { return ClassOf(err) == c }
