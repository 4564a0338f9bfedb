package fulldisktest

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestFill: a filled tmpfs refuses a write with ENOSPC and takes it once
// the fill file is removed.
func TestFill(t *testing.T) {
	dir := Mount(t, "1m")
	filler := Fill(t, dir)
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, make([]byte, 8<<10), 0o644); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write on a full tmpfs: %v, want ENOSPC", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, make([]byte, 8<<10), 0o644); err != nil {
		t.Fatalf("write after freeing: %v", err)
	}
}
