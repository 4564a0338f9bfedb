package tftp

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestFileReaderEnds: the reader stops with ErrTimeout at its deadline and
// with ErrServerClosed when the server aborts, and reads the file whole
// otherwise.
func TestFileReaderEnds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	want := make([]byte, 5000)
	for i := range want {
		want[i] = byte(i)
	}
	if err := os.WriteFile(path, want, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tc := range []struct {
		name     string
		deadline time.Duration
		abort    bool
		want     error
	}{
		{name: "whole", deadline: time.Minute},
		{name: "deadline", deadline: -time.Millisecond, want: ErrTimeout},
		{name: "abort", deadline: time.Minute, abort: true, want: ErrServerClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			abort, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.abort {
				cancel()
			}
			r := newFileReader(f, int64(len(want)), abort, time.Now().Add(tc.deadline))
			defer r.release()
			got, err := io.ReadAll(r)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("err %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil || string(got) != string(want) {
				t.Fatalf("read %d bytes, err %v; want the file's %d", len(got), err, len(want))
			}
		})
	}
}

// BenchmarkFileReaderBlock: the reader's cost per block of 1,468 bytes
// (the usual PXE blksize) from the file cache, as pin's sender reads it.
func BenchmarkFileReaderBlock(b *testing.B) {
	data := make([]byte, 1<<20)
	block := make([]byte, 1468)
	b.ReportAllocs()
	b.SetBytes(int64(len(block)))
	r := newFileReader(nil, int64(len(data)), context.Background(), time.Now().Add(time.Hour))
	r.data = data
	defer r.release()
	for b.Loop() {
		if _, err := io.ReadFull(r, block); err != nil {
			r.off = 0
		}
	}
}
