package store_test

import (
	"context"
	"path/filepath"
	"testing"

	"matchbox/store"
	"matchbox/store/storetest"
)

// TestConformance runs the store conformance suite against SQLite.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Backend {
		s, err := store.Open(context.Background(), store.Config{Path: filepath.Join(t.TempDir(), "matchbox.db")})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
