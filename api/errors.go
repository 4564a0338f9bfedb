package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"matchbox/api/wire"
	"matchbox/bmc"
	"matchbox/lifecycle"
	"matchbox/matchbox"
	"matchbox/matchbox/datadir"
	"matchbox/store"
)

// Stable error codes of the API. They are listed once, here (and in
// agent.go for the agent's report); TestErrorCodesDocumented finds every
// Code constant in the package's source and checks that openapi.yaml's
// enum and docs/api.md list it.
const (
	CodeBadRequest       = "bad_request"
	CodeInvalidBody      = "invalid_body"
	CodeInvalidBundle    = "invalid_bundle"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeAlreadyExists    = "already_exists"
	CodeVersionConflict  = "version_conflict"
	CodePlanStale        = "plan_stale"
	CodeTooLarge         = "body_too_large"
	CodeUnsupportedType  = "unsupported_media_type"
	CodeInvalidCatalog   = "invalid_catalog"
	CodeInternal         = "internal"
	// CodeNoSecretKey: credentials sent, but the server has no
	// --secret-key-file to seal them with.
	CodeNoSecretKey = "no_secret_key"
	// CodeCredentialsUnavailable: the machine's sealed BMC credentials
	// cannot be opened with the server's secret key.
	CodeCredentialsUnavailable = "credentials_unavailable"
	// CodeNoBMC: a BMC action on a machine without a BMC.
	CodeNoBMC = "no_bmc"
	// CodeBMCAuth: the BMC refused the credentials.
	CodeBMCAuth = "bmc_auth"
	// CodeBMCUnreachable: the BMC did not answer in time (connection
	// refused, timeouts, busy), retries included.
	CodeBMCUnreachable = "bmc_unreachable"
	// CodeBMCBootNotApplied: the BMC acknowledged a boot override but,
	// read back, does not hold it.
	CodeBMCBootNotApplied = "bmc_boot_not_applied"
	// CodeBMCFailed: the BMC or its driver answered with another failure.
	CodeBMCFailed = "bmc_failed"
	// CodeNotConfigured: the server runs without BMC control.
	CodeNotConfigured = "not_configured"
	// CodeStorageFull: the store's disk is full; nothing was stored.
	CodeStorageFull = "storage_full"
	// CodeStorageUnavailable: the store refuses writes (read-only, I/O
	// errors, unreachable); nothing was stored.
	CodeStorageUnavailable = "storage_unavailable"
)

// apiError is an error with the status and body it answers with.
type apiError struct {
	status int
	detail wire.ErrorDetail
}

func (e *apiError) Error() string { return e.detail.Message }

// errorf makes an apiError.
func errorf(status int, code, field, format string, args ...any) *apiError {
	return &apiError{status: status, detail: wire.ErrorDetail{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}}
}

// classify maps an error of the store, the decoders or the handlers to its
// answer.
func classify(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "", "request body exceeds %d bytes", mbe.Limit)
	}
	switch {
	case errors.Is(err, store.ErrStorageFull):
		return errorf(http.StatusInsufficientStorage, CodeStorageFull, "", "the store's disk is full, nothing was stored (retry once space is freed): %v", err)
	case errors.Is(err, store.ErrUnavailable):
		return errorf(http.StatusServiceUnavailable, CodeStorageUnavailable, "", "the store cannot take writes, nothing was stored (retry once it is writable again): %v", err)
	}
	var ve *matchbox.ValidationError
	if errors.As(err, &ve) {
		e := errorf(http.StatusUnprocessableEntity, CodeInvalidCatalog, "", "the catalog would be invalid, nothing was stored: %v", ve)
		e.detail.Problems = append([]string(nil), ve.Problems...)
		return e
	}
	var fe *datadir.FileError
	if errors.As(err, &fe) {
		return errorf(http.StatusBadRequest, CodeInvalidBody, fe.File, "%v", err)
	}
	switch {
	case errors.Is(err, lifecycle.ErrNoSecretKey):
		return errorf(http.StatusUnprocessableEntity, CodeNoSecretKey, "password", "%v", err)
	case errors.Is(err, lifecycle.ErrCredentialsUnavailable):
		return errorf(http.StatusConflict, CodeCredentialsUnavailable, "", "%v: set them again with `matchbox machine bmc set ID --address ADDR --username U --password-file F` (PUT %s/machines/ID/bmc)", err, Prefix)
	case errors.Is(err, lifecycle.ErrNoBMC):
		return errorf(http.StatusConflict, CodeNoBMC, "", "%v: declare it with `matchbox machine bmc set ID --address ADDR` (PUT %s/machines/ID/bmc)", err, Prefix)
	}
	var bfe *bmc.FieldError
	if errors.As(err, &bfe) {
		return errorf(http.StatusBadRequest, CodeInvalidBody, bfe.Field, "%v", bfe)
	}
	switch {
	case errors.Is(err, bmc.ErrInvalidArgument):
		return errorf(http.StatusBadRequest, CodeInvalidBody, "", "%v", err)
	case errors.Is(err, bmc.ErrAuth):
		return errorf(http.StatusBadGateway, CodeBMCAuth, "", "%v", err)
	case errors.Is(err, bmc.ErrBootDeviceNotApplied):
		return errorf(http.StatusBadGateway, CodeBMCBootNotApplied, "", "%v", err)
	case errors.Is(err, bmc.ErrUnreachable), errors.Is(err, context.DeadlineExceeded):
		return errorf(http.StatusGatewayTimeout, CodeBMCUnreachable, "", "%v", err)
	case errors.Is(err, bmc.ErrFailed):
		return errorf(http.StatusBadGateway, CodeBMCFailed, "", "%v", err)
	case errors.Is(err, store.ErrNotFound):
		return errorf(http.StatusNotFound, CodeNotFound, "", "%v", err)
	case errors.Is(err, store.ErrVersionConflict):
		return errorf(http.StatusPreconditionFailed, CodeVersionConflict, "", "%v", err)
	case errors.Is(err, store.ErrExists):
		return errorf(http.StatusConflict, CodeAlreadyExists, "", "%v", err)
	}
	return errorf(http.StatusInternalServerError, CodeInternal, "", "internal error: %v", err)
}

// handlerFunc is an API handler that returns its failure rather than
// writing it: serve writes the answer the error classifies as.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// serve adapts h to http.Handler: an error h returns is answered with its
// status and JSON body (code, message, field), as writeError does. h must
// not have written anything when it returns an error.
func (a *API) serve(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			a.writeError(w, r, err)
		}
	})
}

// writeError answers with err's status and JSON body.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := classify(err)
	switch {
	case e.status == http.StatusBadGateway || e.status == http.StatusGatewayTimeout:
		// A BMC failed, not the server.
		a.log.WarnContext(r.Context(), "api request failed at the BMC", "method", r.Method, "path", r.URL.Path, "status", e.status, "code", e.detail.Code, "err", err)
	case e.status == http.StatusInsufficientStorage || e.detail.Code == CodeStorageUnavailable:
		// The storage failed; the store's health logs the condition once.
		a.log.WarnContext(r.Context(), "api write refused: storage failing", "method", r.Method, "path", r.URL.Path, "status", e.status, "code", e.detail.Code, "err", err)
	case e.status >= 500:
		a.log.ErrorContext(r.Context(), "api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	default:
		a.log.DebugContext(r.Context(), "api request refused", "method", r.Method, "path", r.URL.Path, "status", e.status, "code", e.detail.Code, "err", err)
	}
	writeJSON(w, e.status, wire.Error{Error: e.detail})
}

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(wire.Error{Error: wire.ErrorDetail{Code: CodeInternal, Message: "encode answer: " + err.Error()}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// discardLogger is used when Config.Logger is nil.
func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
