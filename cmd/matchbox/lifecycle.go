package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"matchbox/bmc"
	"matchbox/bmc/secret"
	"matchbox/boothttp"
	"matchbox/lifecycle"
	"matchbox/matchbox"
	"matchbox/store"
)

// buildLifecycle loads the keys and builds the machine lifecycle service.
func (s *services) buildLifecycle() error {
	o := s.opts
	var key *secret.Key
	if o.secretKeyFile != "" {
		var err error
		if key, err = secret.LoadKeyFile(o.secretKeyFile); err != nil {
			return fmt.Errorf("--secret-key-file: %w", err)
		}
	}
	agentKeyFile := o.agentKeyFile
	if agentKeyFile == "" {
		agentKeyFile = filepath.Join(o.dataDir, "agent.key")
	}
	agentKey, err := loadOrCreateKey(agentKeyFile)
	if err != nil {
		return fmt.Errorf("agent key: %w", err)
	}
	if s.agentAuth, err = lifecycle.NewAgentAuth(agentKey); err != nil {
		return fmt.Errorf("agent key %s: %w", agentKeyFile, err)
	}
	ctl := bmc.New(bmc.Config{Timeout: o.bmcTimeout, Retries: o.bmcRetries, DriverOrder: o.bmcDrivers, Logger: s.log})
	s.lifecycle, err = lifecycle.New(lifecycle.Config{Store: s.store, BMC: ctl, Secrets: key, Logger: s.log, Parallel: o.bmcParallel})
	return err
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

// templateVars gives boot templates the agent's identity variables for the
// requesting machine: machine_id, agent_token, matchbox_url. A machine not
// known yet gets the id its MAC will give it.
func (s *services) templateVars(ctx context.Context, m *boothttp.MachineView, req boothttp.RequestInfo) map[string]any {
	id := ""
	if m != nil {
		id = m.ID
	} else if mac := req.Labels.MAC(); mac != "" {
		id = store.MachineIDFromMAC(mac)
	}
	if id == "" {
		return nil
	}
	base := s.opts.bootURL
	if base == "" {
		base = "http://" + req.Host
	}
	return s.agentAuth.Vars(id, base)
}

// configServed marks a provisioning machine provisioned once it fetched its
// first-boot config.
func (s *services) configServed(ctx context.Context, m *boothttp.MachineView, endpoint string) {
	if m == nil || m.State != matchbox.StateProvisioning {
		return
	}
	if endpoint != matchbox.EventIgnition && endpoint != matchbox.EventGeneric {
		return
	}
	s.lifecycle.ConfigFetched(context.WithoutCancel(ctx), m.ID, strings.TrimPrefix(endpoint, "http."))
}
