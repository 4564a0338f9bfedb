package lifecycle

import (
	"context"
	"strings"

	"matchbox/agent/token"
	"matchbox/matchbox"
	"matchbox/store"
)

// TemplateVars returns the variables that let a boot template hand the
// discovery agent its identity: machine_id, agent_token and matchbox_url.
// id is the requesting machine's id, empty for a machine not known yet:
// it then gets the id its MAC will give it. host is the Host the boot
// request addressed, used when Config.BootURL is empty. It returns nil
// without an agent key or anything naming the machine.
func (s *Service) TemplateVars(_ context.Context, id, mac, host string) map[string]any {
	if s.cfg.AgentKey == nil {
		return nil
	}
	if id == "" && mac != "" {
		id = store.MachineIDFromMAC(mac)
	}
	if id == "" {
		return nil
	}
	base := s.cfg.BootURL
	if base == "" {
		base = "http://" + host
	}
	return map[string]any{
		"machine_id":   id,
		"agent_token":  token.Issue(s.cfg.AgentKey, id),
		"matchbox_url": strings.TrimSuffix(base, "/"),
	}
}

// Served is told of a boot endpoint's successful answer to a known
// machine: a provisioning machine that fetched its first-boot config
// (Ignition or generic) becomes provisioned. The transition outlives the
// request (ctx's cancellation is not passed on).
func (s *Service) Served(ctx context.Context, id string, state matchbox.MachineState, event string) {
	if state != matchbox.StateProvisioning {
		return
	}
	if event != matchbox.EventIgnition && event != matchbox.EventGeneric {
		return
	}
	s.ConfigFetched(context.WithoutCancel(ctx), id, strings.TrimPrefix(event, "http."))
}
