package logclip

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestString(t *testing.T) {
	tests := []struct {
		name, in string
		wantLen  int // of the kept prefix
	}{
		{"short", "abc", 3},
		{"exactly Max", strings.Repeat("a", Max), Max},
		{"long", strings.Repeat("a", 10_000), Max},
		{"cut inside a rune", strings.Repeat("a", Max-1) + strings.Repeat("é", 100), Max - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := String(tt.in)
			if !utf8.ValidString(got) {
				t.Fatalf("invalid UTF-8: %q", got)
			}
			if !strings.HasPrefix(tt.in, got[:tt.wantLen]) {
				t.Fatalf("prefix changed")
			}
			if len(tt.in) <= Max {
				if got != tt.in {
					t.Fatalf("short string changed: %q", got)
				}
				return
			}
			if len(got) > Max+40 || !strings.Contains(got, "more bytes") {
				t.Fatalf("long string kept %d bytes: %.80q", len(got), got)
			}
		})
	}
}

// TestLoggerBoundsClientStrings logs a 10 KB client-supplied string as a
// value and inside an error: the line stays under 1 KB.
func TestLoggerBoundsClientStrings(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		opts := &slog.HandlerOptions{ReplaceAttr: ReplaceAttr}
		var h slog.Handler = slog.NewTextHandler(&buf, opts)
		if format == "json" {
			h = slog.NewJSONHandler(&buf, opts)
		}
		junk := strings.Repeat("x", 10_000)
		slog.New(h).With("remote", "192.0.2.1:1").Warn("asset refused", "path", junk, "err", errors.New("open "+junk+": denied"))
		if buf.Len() > 1024 {
			t.Errorf("%s: a 10 KB name gives a %d-byte log line", format, buf.Len())
		}
		if !strings.Contains(buf.String(), "192.0.2.1:1") || !strings.Contains(buf.String(), "more bytes") {
			t.Errorf("%s: %s", format, buf.String())
		}
	}
}
