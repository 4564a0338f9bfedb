package rpc

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestStorageFailuresAnswerResourceExhaustedAndUnavailable: a write the
// storage refused is not an Internal error to gRPC clients (Terraform).
func TestStorageFailuresAnswerResourceExhaustedAndUnavailable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("put: %w", ErrStorageFull), codes.ResourceExhausted},
		{fmt.Errorf("put: %w", ErrUnavailable), codes.Unavailable},
		{errors.New("other"), codes.Internal},
	} {
		if got := status.Code(callError("create profile", tc.err)); got != tc.want {
			t.Errorf("callError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
