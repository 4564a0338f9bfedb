package secret

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustKey(t *testing.T) (*Key, []byte) {
	t.Helper()
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	k, err := NewKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k, raw
}

func TestSealOpen(t *testing.T) {
	k, _ := mustKey(t)
	other, _ := mustKey(t)
	pw := []byte("bmc-Pa55word!")
	sealed, err := k.Seal(pw, []byte("machine-a"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, pw) {
		t.Fatal("sealed value contains the plaintext")
	}
	again, _ := k.Seal(pw, []byte("machine-a"))
	if bytes.Equal(sealed, again) {
		t.Error("two seals of the same value are equal: nonce not random")
	}
	tampered := append([]byte(nil), sealed...)
	tampered[len(tampered)-1] ^= 1
	tests := []struct {
		name    string
		key     *Key
		sealed  []byte
		ad      string
		wantErr error
	}{
		{"round trip", k, sealed, "machine-a", nil},
		{"wrong key", other, sealed, "machine-a", ErrDecrypt},
		{"other machine", k, sealed, "machine-b", ErrDecrypt},
		{"tampered", k, tampered, "machine-a", ErrDecrypt},
		{"truncated", k, sealed[:10], "machine-a", ErrMalformed},
		{"unknown version", k, append([]byte{9}, sealed[1:]...), "machine-a", ErrMalformed},
		{"empty", k, nil, "machine-a", ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.key.Open(tc.sealed, []byte(tc.ad))
			if tc.wantErr == nil {
				if err != nil || !bytes.Equal(got, pw) {
					t.Fatalf("Open = %q, %v", got, err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), string(pw)) {
				t.Errorf("error leaks the plaintext: %v", err)
			}
		})
	}
	if _, err := other.Open(sealed, []byte("machine-a")); !strings.Contains(err.Error(), "wrong secret key") {
		t.Errorf("wrong-key error does not say so: %v", err)
	}
}

func TestLoadKeyFile(t *testing.T) {
	_, raw := mustKey(t)
	dir := t.TempDir()
	tests := []struct {
		name    string
		content []byte
		wantErr bool
	}{
		{"raw 32 bytes", raw, false},
		{"hex", []byte(hex.EncodeToString(raw)), false},
		{"hex newline", []byte(hex.EncodeToString(raw) + "\n"), false},
		{"base64 newline", []byte(base64.StdEncoding.EncodeToString(raw) + "\n"), false},
		{"base64 url crlf", []byte(base64.URLEncoding.EncodeToString(raw) + "\r\n"), false},
		{"too short", []byte("abc\n"), true},
		{"hex of 16 bytes", []byte(hex.EncodeToString(raw[:16]) + "\n"), true},
		{"empty", nil, true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "key"+string(rune('a'+i)))
			if err := os.WriteFile(p, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			k, err := LoadKeyFile(p)
			if tc.wantErr {
				if !errors.Is(err, ErrBadKey) {
					t.Fatalf("err = %v, want ErrBadKey", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ref, _ := NewKey(raw)
			s, _ := ref.Seal([]byte("x"), nil)
			if got, err := k.Open(s, nil); err != nil || string(got) != "x" {
				t.Errorf("loaded key differs from the written one: %v", err)
			}
		})
	}
	if _, err := LoadKeyFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing key file accepted")
	}
}

func FuzzOpen(f *testing.F) {
	f.Add([]byte{1, 2, 3})
	raw := bytes.Repeat([]byte{7}, KeySize)
	k, _ := NewKey(raw)
	s, _ := k.Seal([]byte("pw"), []byte("m"))
	f.Add(s)
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := k.Open(b, []byte("m")); err != nil && !errors.Is(err, ErrDecrypt) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("unclassified error %v", err)
		}
	})
}
