// Package apperr is the server's error model: every error that leaves domain
// code carries a Kind that says what the caller should do about it (fix the
// input, retry later, authenticate, give up). The HTTP layer turns a Kind into
// a status code in exactly one place (httpapi.statusOf); domain packages never
// see HTTP.
//
// An *Error has two faces. Message is written for the client and must not leak
// internals (paths, SQL, hostnames); the wrapped Err carries the detail and
// goes only to the log.
package apperr

import (
	"context"
	"errors"
	"fmt"
)

// Kind sorts errors by what the caller should do.
type Kind int

const (
	// Internal is a bug or an unexpected failure: nothing the caller can fix.
	Internal Kind = iota
	// Invalid means the request itself is wrong: fix it and send it again.
	Invalid
	// NotFound means the named thing does not exist.
	NotFound
	// Conflict means the request clashes with current state (a stale version,
	// a duplicate): re-read and decide again.
	Conflict
	// Unauthorized means the caller is not authenticated.
	Unauthorized
	// Forbidden means the caller is authenticated but may not do this.
	Forbidden
	// Unavailable means a dependency (database, object storage) is down or
	// slow: the same request may succeed later.
	Unavailable
	// TooLarge means the request exceeds a named limit.
	TooLarge
	// VerificationFailed means signed data did not verify: a signature,
	// threshold, hash or length check failed. Never retry blindly.
	VerificationFailed
	// OutOfRange means a requested byte range lies outside the object:
	// ask for another range (or the whole object).
	OutOfRange
	// MethodNotAllowed means the path exists but not with this method.
	MethodNotAllowed
	// RateLimited means the caller sent too much too fast: wait, then try
	// again.
	RateLimited
)

var kindNames = map[Kind]string{
	Internal:           "internal",
	Invalid:            "invalid_argument",
	NotFound:           "not_found",
	Conflict:           "conflict",
	Unauthorized:       "unauthenticated",
	Forbidden:          "permission_denied",
	Unavailable:        "unavailable",
	TooLarge:           "too_large",
	VerificationFailed: "verification_failed",
	OutOfRange:         "range_not_satisfiable",
	MethodNotAllowed:   "method_not_allowed",
	RateLimited:        "rate_limited",
}

// String returns the kind's stable code, used as the default client code.
func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return "internal"
}

// Error is a classified error.
type Error struct {
	Kind Kind
	// Code is a stable machine-readable code; empty means Kind.String().
	Code string
	// Message is safe to show to the client.
	Message string
	// Field names the input field the error is about, when it is about
	// one (a form shows the message next to it).
	Field string
	// Err is the underlying cause, for logs only.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// ClientCode is the code sent to clients.
func (e *Error) ClientCode() string {
	if e.Code != "" {
		return e.Code
	}
	return e.Kind.String()
}

// New returns an error of kind k with a client-safe message.
func New(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Message: fmt.Sprintf(format, args...)}
}

// Wrap classifies err as kind k with a client-safe message. The cause stays
// reachable through errors.Is/As and is logged, never sent.
func Wrap(err error, k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Message: fmt.Sprintf(format, args...), Err: err}
}

// WithCode sets a specific stable code and returns e.
func (e *Error) WithCode(code string) *Error {
	e.Code = code
	return e
}

// WithField names the input field the error is about and returns e.
func (e *Error) WithField(field string) *Error {
	e.Field = field
	return e
}

// FieldOf returns the field an error is about ("" when none).
func FieldOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}

// KindOf reports the kind of err: the kind of the outermost *Error in its
// chain; context cancellation and deadlines count as Unavailable; anything
// unclassified is Internal.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return Unavailable
	}
	return Internal
}

// Is reports whether err is of kind k.
func Is(err error, k Kind) bool { return err != nil && KindOf(err) == k }

// Public returns the code and message a client may see for err. Internal
// errors never reveal their text.
func Public(err error) (code, message string) {
	var e *Error
	if errors.As(err, &e) && e.Kind != Internal {
		return e.ClientCode(), e.Message
	}
	if k := KindOf(err); k == Unavailable {
		return k.String(), "a dependency is unavailable; try again later"
	}
	return Internal.String(), "internal error"
}
