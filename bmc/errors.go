package bmc

import (
	"context"
	"errors"
	"regexp"
	"strconv"
	"strings"
)

// Error is the error every operation returns. Its message names the
// operation, the endpoint (without credentials), the driver and the number
// of attempts, followed by the cause with any credential redacted. It
// matches, with errors.Is, one of ErrAuth, ErrUnreachable,
// ErrBootDeviceNotApplied, ErrInvalidArgument or ErrFailed, and
// context.Canceled or context.DeadlineExceeded when the context ended. The
// underlying driver error is not kept, since it may quote credentials.
type Error struct {
	// Op is the operation, e.g. "power cycle" or "boot device pxe".
	Op string
	// Endpoint is the BMC, as Endpoint.String prints it.
	Endpoint string
	// Driver is the driver that failed last, if one was chosen.
	Driver string
	// Attempts counts the sessions tried.
	Attempts int
	// Kind is the sentinel error classifying the failure.
	Kind error
	// Cause is the redacted text of the underlying error.
	Cause string

	ctxErr error
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("bmc ")
	b.WriteString(e.Op)
	b.WriteString(" on ")
	b.WriteString(e.Endpoint)
	if e.Driver != "" {
		b.WriteString(" via ")
		b.WriteString(e.Driver)
	}
	if e.Attempts > 1 {
		b.WriteString(" after ")
		b.WriteString(strconv.Itoa(e.Attempts))
		b.WriteString(" attempts")
	}
	b.WriteString(": ")
	b.WriteString(e.Kind.Error())
	if e.Cause != "" {
		b.WriteString(": ")
		b.WriteString(e.Cause)
	}
	return b.String()
}

// Unwrap returns the classifying sentinel and the context's error, if any.
func (e *Error) Unwrap() []error {
	if e.ctxErr != nil {
		return []error{e.Kind, e.ctxErr}
	}
	return []error{e.Kind}
}

// redact removes the credentials from s.
func redact(s string, ep Endpoint) string {
	if ep.Password != "" {
		s = strings.ReplaceAll(s, ep.Password, "[redacted]")
	}
	if ep.Username != "" {
		s = strings.ReplaceAll(s, ep.Username, "[user]")
	}
	return s
}

var (
	authPattern = regexp.MustCompile(`(?i)\b40[13]\b|unauthori[sz]ed|forbidden|hmac is invalid|invalid (user ?name|password|credentials|authentication)|authentication failed|access denied|insufficient privilege|rakp .*(error|invalid)|login failed`)

	transientPattern = regexp.MustCompile(`(?i)connection refused|connection reset|broken pipe|no route to host|network is unreachable|host is down|i/o timeout|timed? ?out|deadline exceeded|unable to establish ipmi|no response|eof|tls handshake timeout|\b50[234]\b|service unavailable|temporarily unavailable`)
)

// classify returns the sentinel that describes err.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrInvalidArgument), errors.Is(err, ErrBootDeviceNotApplied), errors.Is(err, ErrAuth), errors.Is(err, ErrUnreachable):
		for _, k := range []error{ErrInvalidArgument, ErrBootDeviceNotApplied, ErrAuth, ErrUnreachable} {
			if errors.Is(err, k) {
				return k
			}
		}
	case errors.Is(err, context.DeadlineExceeded):
		return ErrUnreachable
	}
	msg := err.Error()
	if authPattern.MatchString(msg) {
		return ErrAuth
	}
	if transientPattern.MatchString(msg) {
		return ErrUnreachable
	}
	return ErrFailed
}
