package token

import (
	"bytes"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	key := bytes.Repeat([]byte{0x5a}, 32)
	other := bytes.Repeat([]byte{0xa5}, 32)
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	good := IssueAt(key, "52:54:00:12:34:56", now)
	parts := strings.SplitN(good, ".", 3)
	tests := []struct {
		name    string
		key     []byte
		id      string
		token   string
		now     time.Time
		wantErr error
	}{
		{"valid", key, "52:54:00:12:34:56", good, now, nil},
		{"valid near max age", key, "52:54:00:12:34:56", good, now.Add(MaxAge), nil},
		{"other machine", key, "52:54:00:12:34:57", good, now, ErrInvalid},
		{"other key", other, "52:54:00:12:34:56", good, now, ErrInvalid},
		{"expired", key, "52:54:00:12:34:56", good, now.Add(MaxAge + time.Second), ErrExpired},
		{"from the future", key, "52:54:00:12:34:56", good, now.Add(-MaxSkew - time.Second), ErrExpired},
		{"short key", key[:16], "52:54:00:12:34:56", IssueAt(key[:16], "52:54:00:12:34:56", now), now, ErrShortKey},
		{"empty", key, "52:54:00:12:34:56", "", now, ErrMalformed},
		{"wrong version", key, "52:54:00:12:34:56", "v2" + good[2:], now, ErrMalformed},
		{"truncated signature", key, "52:54:00:12:34:56", good[:len(good)-2], now, ErrMalformed},
		{"bad issue time", key, "52:54:00:12:34:56", "v1.!!." + parts[2], now, ErrMalformed},
		{"non-canonical issue time", key, "52:54:00:12:34:56", "v1.0" + good[3:], now, ErrMalformed},
		{"changed issue time", key, "52:54:00:12:34:56", "v1." + strconv.FormatInt(now.Unix()+60, 36) + "." + parts[2], now, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyAt(tt.key, tt.id, tt.token, tt.now, MaxAge)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("VerifyAt = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestIssueNowVerifies(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	tok := Issue(key, "machine-1")
	if err := Verify(key, "machine-1", tok); err != nil {
		t.Fatalf("Verify(Issue()) = %v", err)
	}
	if err := Verify(key, "machine-2", tok); !errors.Is(err, ErrInvalid) {
		t.Fatalf("token of machine-1 accepted for machine-2: %v", err)
	}
	if url.QueryEscape(tok) != tok || strings.ContainsAny(tok, " \t\"'") {
		t.Errorf("token %q is not URL and command-line safe", tok)
	}
}

// TestIssueIsStableWithinAStep checks that Issue rounds its issue time down
// to Granularity, so that answers rendered twice carry the same token.
func TestIssueIsStableWithinAStep(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 32)
	for try := 0; try < 3; try++ {
		step := time.Now().Truncate(Granularity)
		a, b := Issue(key, "machine-1"), Issue(key, "machine-1")
		if !time.Now().Truncate(Granularity).Equal(step) {
			continue // a step boundary passed between the two
		}
		if a != b {
			t.Fatalf("two tokens issued within one step differ: %q, %q", a, b)
		}
		parts := strings.Split(a, ".")
		issued, err := strconv.ParseInt(parts[1], 36, 64)
		if err != nil {
			t.Fatal(err)
		}
		if issued != step.Unix() {
			t.Errorf("issue time %d, want %d (now rounded down to %s)", issued, step.Unix(), Granularity)
		}
		return
	}
	t.Fatal("no step without a boundary in three tries")
}
