package lifecycle

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"matchbox/agent/token"
	"matchbox/audit"
	"matchbox/matchbox"
	"matchbox/store"
)

// ProvisionedPath is the boot listener's path of the completion callback:
// POST /provisioned?machine=ID&token=T, the URL a template gets as
// provisioned_url.
const ProvisionedPath = "/provisioned"

// TemplateVars returns the variables that let a boot template hand the
// discovery agent its identity (machine_id, agent_token, matchbox_url)
// and the installed system its one-time completion callback
// (provisioned_url). id is the requesting machine's id, empty for a
// machine not known yet: it then gets the id its MAC will give it; state
// is the known machine's state when the request came. host is the Host
// the boot request addressed, used when Config.BootURL is empty. It
// returns nil without an agent key or anything naming the machine.
//
// agent_token, the credential an agent reports with, is issued only to a
// machine that is being discovered (not known yet, or discovered) or
// provisioned: a ready, provisioned or failed machine's answers (its
// /metadata, say) carry an empty agent_token, so that whoever asks the
// boot endpoints in its name cannot report inventory for it.
//
// uses names the variables the template to render may read (nil: all):
// the two that cost an HMAC each, agent_token and provisioned_url, are
// computed and returned only when it may read them, and nothing at all
// (nil) when it may read none of the four.
func (s *Service) TemplateVars(_ context.Context, id string, state matchbox.MachineState, mac, host string, uses func(name string) bool) map[string]any {
	if s.cfg.AgentKey == nil {
		return nil
	}
	if uses != nil && !uses("machine_id") && !uses("matchbox_url") && !uses("agent_token") && !uses("provisioned_url") {
		// The template names none of them (most kernel arguments): no
		// map for every boot request.
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
	base = strings.TrimSuffix(base, "/")
	vars := map[string]any{
		"machine_id":   id,
		"matchbox_url": base,
	}
	if uses == nil || uses("agent_token") {
		agentToken := ""
		if AgentTokenIssued(state) {
			agentToken = token.Issue(s.cfg.AgentKey, id)
			if s.cfg.Metrics != nil {
				s.cfg.Metrics.signedAgent.Inc()
			}
		}
		vars["agent_token"] = agentToken
	}
	if uses == nil || uses("provisioned_url") {
		vars["provisioned_url"] = base + ProvisionedPath + "?" + url.Values{"machine": {id}, "token": {s.completionToken(id)}}.Encode()
		if s.cfg.Metrics != nil {
			s.cfg.Metrics.signedProvisioned.Inc()
		}
	}
	return vars
}

// AgentTokenIssued reports whether boot templates hand a machine in state
// (empty: not known yet) its discovery agent's token: only while it is
// discovered or provisioning, when an agent may run on it.
func AgentTokenIssued(state matchbox.MachineState) bool {
	switch state {
	case "", matchbox.StateDiscovered, matchbox.StateProvisioning:
		return true
	}
	return false
}

// completionToken is a machine's completion callback token: an HMAC of
// its id under the agent key, apart from the agent's own tokens (an
// agent token does not complete provisioning, nor the reverse).
func (s *Service) completionToken(id string) string {
	m := hmac.New(sha256.New, s.cfg.AgentKey)
	m.Write([]byte("matchbox provisioned\x00" + id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Refusal is an error of the completion callback that names the HTTP
// status its caller should answer.
type Refusal struct {
	msg    string
	status int
}

func (e *Refusal) Error() string { return e.msg }

// HTTPStatus is the status a refused callback is answered with.
func (e *Refusal) HTTPStatus() int { return e.status }

// Errors of Complete.
var (
	// ErrBadCompletionToken: the token is not the machine's.
	ErrBadCompletionToken = &Refusal{"completion token does not match the machine", http.StatusForbidden}
	// ErrNotProvisioning: the machine is not provisioning (or failed):
	// the callback was used already, or the machine was never
	// provisioned.
	ErrNotProvisioning = &Refusal{"machine is not provisioning", http.StatusConflict}
	// ErrUnknownMachine: no such machine.
	ErrUnknownMachine = &Refusal{"no such machine", http.StatusNotFound}
)

// Complete is the installed system's completion callback: with its
// machine's token it moves a provisioning (or timed-out, failed) machine
// to provisioned, once.
func (s *Service) Complete(ctx context.Context, machineID, tok string) error {
	ctx = audit.WithDefaultActor(ctx, audit.ActorLifecycle)
	if s.cfg.AgentKey == nil {
		return fmt.Errorf("machine %q: %w: no key configured", machineID, ErrBadCompletionToken)
	}
	if !hmac.Equal([]byte(tok), []byte(s.completionToken(machineID))) {
		return fmt.Errorf("machine %q: %w", machineID, ErrBadCompletionToken)
	}
	m, ok := s.cfg.Store.LookupMachineByID(machineID)
	if !ok {
		return fmt.Errorf("machine %q: %w", machineID, ErrUnknownMachine)
	}
	from, to := From(TriggerCallback)
	err := s.cfg.Store.SetMachineState(ctx, machineID, to, from...)
	if errors.Is(err, store.ErrVersionConflict) {
		return fmt.Errorf("machine %q is %s: %w", machineID, m.State, ErrNotProvisioning)
	}
	if err != nil {
		return fmt.Errorf("mark machine %q provisioned: %w", machineID, err)
	}
	s.event(ctx, machineID, EventProvisioned, map[string]any{"via": string(TriggerCallback), "was": string(m.State)})
	s.log.InfoContext(ctx, "machine provisioned", "machine", machineID, "via", TriggerCallback)
	return nil
}

// Served is told of a boot endpoint's successful answer to a known
// machine: a provisioning machine that fetched the endpoint its profile
// names in provisioned_by becomes provisioned. The transition outlives
// the request (ctx's cancellation is not passed on).
func (s *Service) Served(ctx context.Context, id string, state matchbox.MachineState, event string, p *matchbox.Profile) {
	if p == nil {
		return
	}
	// The profile first: most name no completion event, and this runs
	// for every boot request served.
	if ce := p.CompletionEvent(); ce == "" || ce != event || !Allowed(TriggerConfigFetched, state) {
		return
	}
	s.ConfigFetched(context.WithoutCancel(ctx), id, strings.TrimPrefix(event, "http."))
}
