package main

import (
	"fmt"
	"path/filepath"

	"matchbox/agent/token"
	"matchbox/bmc/secret"
)

// loadKeys loads the key sealing BMC credentials (nil without
// --secret-key-file) and the discovery agent's token key (created when
// missing).
func loadKeys(o *serveOptions) (*secret.Key, []byte, error) {
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
	agentKey, err := token.LoadOrCreateKeyFile(agentKeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("agent key: %w", err)
	}
	return key, agentKey, nil
}
