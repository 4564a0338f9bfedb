package token

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

// TestLoadOrCreateKeyFile: a missing key file is created (0600) and read
// back as the same key; the forms an operator writes are read.
func TestLoadOrCreateKeyFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "agent.key")
	key, err := LoadOrCreateKeyFile(p)
	if err != nil || len(key) != MinKeyLen {
		t.Fatalf("create: %d bytes, %v", len(key), err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
	again, err := LoadOrCreateKeyFile(p)
	if err != nil || !bytes.Equal(again, key) {
		t.Fatalf("read back %x, %v; want %x", again, err, key)
	}
	want := bytes.Repeat([]byte{9}, MinKeyLen)
	cases := []struct {
		name    string
		content []byte
		wantErr bool
	}{
		{name: "raw", content: want},
		{name: "hex", content: []byte(hex.EncodeToString(want) + "\n")},
		{name: "base64", content: []byte(base64.StdEncoding.EncodeToString(want) + "\n")},
		{name: "short", content: []byte("short\n"), wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name)
			if err := os.WriteFile(p, c.content, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := LoadOrCreateKeyFile(p)
			if c.wantErr {
				if err == nil {
					t.Fatalf("read %x, want an error", got)
				}
				return
			}
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read %x, %v; want %x", got, err, want)
			}
		})
	}
}
