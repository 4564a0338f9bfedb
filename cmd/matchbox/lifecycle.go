package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"matchbox/bmc/secret"
	"matchbox/lifecycle"
)

// loadKeys loads the key sealing BMC credentials (nil without
// --secret-key-file) and the discovery agent's token key (created when
// missing).
func loadKeys(o *serveOptions) (*secret.Key, *lifecycle.AgentAuth, error) {
	var key *secret.Key
	if o.secretKeyFile != "" {
		var err error
		if key, err = secret.LoadKeyFile(o.secretKeyFile); err != nil {
			return nil, nil, fmt.Errorf("--secret-key-file: %w", err)
		}
	}
	agentKeyFile := o.agentKeyFile
	if agentKeyFile == "" {
		agentKeyFile = filepath.Join(o.dataDir, "agent.key")
	}
	agentKey, err := loadOrCreateKey(agentKeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("agent key: %w", err)
	}
	auth, err := lifecycle.NewAgentAuth(agentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("agent key %s: %w", agentKeyFile, err)
	}
	return key, auth, nil
}

// loadOrCreateKey reads a key file, creating it with 32 random bytes (mode
// 0600) when it does not exist.
func loadOrCreateKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		raw := make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return nil, fmt.Errorf("generate %s: %w", path, err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create %s: %w", path, err)
		}
		if _, err := f.Write(raw); err != nil {
			f.Close()
			return nil, fmt.Errorf("write %s: %w", path, err)
		}
		return raw, f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return secret.ParseKey(b)
}
