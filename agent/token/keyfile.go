package token

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"matchbox/bmc/secret"
)

// LoadOrCreateKeyFile reads the key file at path (32 raw bytes, 64 hex
// digits or base64 of 32 bytes). When the file does not exist it creates
// it, mode 0600 and never overwriting a file another process created
// meanwhile, with 32 random bytes written as base64 text. This is the one
// writer of agent key files.
func LoadOrCreateKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createKeyFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	key, err := secret.ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

func createKeyFile(path string) ([]byte, error) {
	raw := make([]byte, MinKeyLen)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("generate %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(raw) + "\n"); err != nil {
		f.Close()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return raw, nil
}
