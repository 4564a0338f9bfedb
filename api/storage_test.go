package api

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"matchbox/api/rpc"
	"matchbox/store"
)

// TestStorageFailuresAnswer507And503: a write the storage refused answers
// 507 storage_full or 503 storage_unavailable (never 500 internal), with
// a message saying nothing was stored.
func TestStorageFailuresAnswer507And503(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("put profile p: commit: %w", errors.Join(store.ErrStorageFull, errors.New("database or disk is full (13)"))), http.StatusInsufficientStorage, CodeStorageFull},
		{fmt.Errorf("put profile p: %w", errors.Join(store.ErrUnavailable, errors.New("attempt to write a readonly database (8)"))), http.StatusServiceUnavailable, CodeStorageUnavailable},
		{fmt.Errorf("put profile p: %w", errors.Join(store.ErrUnavailable, store.ErrVersionConflict)), http.StatusServiceUnavailable, CodeStorageUnavailable},
		{errors.New("something else"), http.StatusInternalServerError, CodeInternal},
	} {
		e := classify(tc.err)
		if e.status != tc.status || e.detail.Code != tc.code {
			t.Errorf("classify(%v) = %d %s, want %d %s", tc.err, e.status, e.detail.Code, tc.status, tc.code)
		}
		if tc.status != http.StatusInternalServerError && !strings.Contains(e.detail.Message, "nothing was stored") {
			t.Errorf("message %q does not say nothing was stored", e.detail.Message)
		}
	}
}

// TestRPCStorageFailures: the gRPC catalog marks the store's storage
// failures as rpc's, keeping the cause.
func TestRPCStorageFailures(t *testing.T) {
	full := fmt.Errorf("put: %w", store.ErrStorageFull)
	if got := rpcError(full); !errors.Is(got, rpc.ErrStorageFull) || !errors.Is(got, store.ErrStorageFull) {
		t.Errorf("rpcError(%v) = %v: not rpc.ErrStorageFull", full, got)
	}
	ro := fmt.Errorf("put: %w", store.ErrUnavailable)
	if got := rpcError(ro); !errors.Is(got, rpc.ErrUnavailable) || errors.Is(got, rpc.ErrStorageFull) {
		t.Errorf("rpcError(%v) = %v: not rpc.ErrUnavailable alone", ro, got)
	}
}
