// Package lifecycle moves machines through their states: discovered
// machines report their hardware and enroll into the group their facts
// match; provisioning sets a one-time PXE boot through the BMC and
// power-cycles the machine; the installed system's completion callback
// (or, when its profile says so, a config fetch) marks it provisioned,
// after which network boots are told to boot from disk; a machine still
// provisioning past its profile's deadline is marked failed. Transitions
// holds the state machine.
package lifecycle

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"matchbox/agent/token"
	"matchbox/audit"
	"matchbox/bmc"
	"matchbox/bmc/secret"
	"matchbox/hardware"
	"matchbox/matchbox"
	"matchbox/store"
)

// Event types this package records on machine timelines.
const (
	EventInventory    = "agent.inventory"
	EventEnrolled     = "machine.enrolled"
	EventProvisioning = "machine.provisioning"
	EventProvisioned  = "machine.provisioned"
	EventFailed       = "machine.failed"
	EventBMC          = "bmc."
)

// Config configures a Service.
type Config struct {
	// Store holds machines; required.
	Store Store
	// BMC drives BMCs; nil disables power and provisioning actions.
	BMC bmc.Client
	// Secrets seals BMC credentials; nil refuses to store credentials.
	Secrets *secret.Key
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// Parallel bounds concurrent BMC sessions of bulk actions (default 8).
	Parallel int
	// AgentKey signs the discovery agent's per-machine tokens handed to
	// boot templates (TemplateVars), at least token.MinKeyLen bytes; nil
	// hands out none.
	AgentKey []byte
	// Metrics counts failures; nil counts none.
	Metrics *Metrics
	// BootURL is matchbox's base URL as machines reach it, handed to the
	// agent as matchbox_url; empty uses the Host each boot request
	// addressed.
	BootURL string
}

// Service runs machine lifecycle transitions.
type Service struct {
	cfg Config
	log *slog.Logger
	// background provisioning started by auto-enrollment, bounded by bg
	wg       sync.WaitGroup
	bg       context.Context
	bgCancel context.CancelFunc
}

// New returns a lifecycle service.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("lifecycle: no store")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 8
	}
	if cfg.AgentKey != nil && len(cfg.AgentKey) < token.MinKeyLen {
		return nil, fmt.Errorf("lifecycle: agent token key has %d bytes, want at least %d", len(cfg.AgentKey), token.MinKeyLen)
	}
	cfg.AgentKey = bytes.Clone(cfg.AgentKey)
	s := &Service{cfg: cfg, log: cfg.Logger}
	s.bg, s.bgCancel = context.WithCancel(context.Background())
	return s, nil
}

// Wait blocks until background provisioning started by auto-enrollment ends.
func (s *Service) Wait() { s.wg.Wait() }

// Close cancels background provisioning started by auto-enrollment and
// waits for it to end.
func (s *Service) Close() {
	s.bgCancel()
	s.wg.Wait()
}

func (s *Service) event(ctx context.Context, machineID, typ string, detail map[string]any) {
	if err := s.cfg.Store.AppendEvents(ctx, []matchbox.BootEvent{{MachineID: machineID, Type: typ, At: time.Now(), Detail: detail}}); err != nil {
		s.log.WarnContext(ctx, "recording machine event failed", "machine", machineID, "type", typ, "err", err)
	}
}

// Enrollment is the outcome of an inventory report.
type Enrollment struct {
	MachineID string                `json:"machine_id"`
	State     matchbox.MachineState `json:"state"`
	Group     string                `json:"group,omitempty"`
	Changed   bool                  `json:"changed"`
	// Provisioning is true when the matched group asked for automatic
	// provisioning and it was started.
	Provisioning bool `json:"provisioning,omitempty"`
}

// ReportInventory stores a machine's inventory and enrolls the machine into
// the group its labels and facts select, unless only the default group
// (no selector terms) matches. A group with auto_provision starts
// provisioning in the background, until Close.
func (s *Service) ReportInventory(ctx context.Context, machineID string, inv hardware.Inventory) (Enrollment, error) {
	ctx = audit.WithDefaultActor(ctx, audit.ActorLifecycle)
	st := s.cfg.Store
	changed, err := st.RecordInventory(ctx, machineID, inv)
	if err != nil {
		return Enrollment{}, err
	}
	s.event(ctx, machineID, EventInventory, map[string]any{"changed": changed, "cpu_cores": inv.CPU.Cores, "memory_bytes": inv.Memory.Bytes, "disks": len(inv.Disks), "nics": len(inv.NICs)})
	sum, ok := st.LookupMachineByID(machineID)
	if !ok {
		return Enrollment{}, fmt.Errorf("machine %q vanished after its inventory was stored", machineID)
	}
	out := Enrollment{MachineID: machineID, State: sum.State, Changed: changed}
	match, err := s.selectFor(sum, inv)
	if err != nil {
		return out, nil // nothing matches: stays as it is
	}
	if len(match.Group.Selector) == 0 && len(match.Group.Facts) == 0 {
		return out, nil // only the default group: nothing learned
	}
	state, err := st.Enroll(ctx, machineID, match.Group.ID)
	if err != nil {
		return out, err
	}
	out.State, out.Group = state, match.Group.ID
	s.event(ctx, machineID, EventEnrolled, map[string]any{"group": match.Group.ID, "profile": match.Profile.ID, "state": string(state)})
	if match.Group.AutoProvision && state == matchbox.StateReady {
		if _, err := s.endpoint(ctx, machineID); err != nil {
			s.log.WarnContext(ctx, "auto_provision skipped", "machine", machineID, "group", match.Group.ID, "err", err)
			s.event(ctx, machineID, EventFailed, map[string]any{"step": "auto_provision", "error": err.Error()})
			return out, nil
		}
		out.Provisioning = true
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if _, err := s.Provision(s.bg, machineID); err != nil {
				s.log.Error("auto provisioning failed", "machine", machineID, "err", err)
			}
		}()
	}
	return out, nil
}

// selectFor selects the group of a machine by its stored labels, identity
// and inventory, as a boot request from it would; extraMACs are tried
// beside the inventory's NICs.
func (s *Service) selectFor(sum matchbox.Machine, inv hardware.Inventory, extraMACs ...string) (matchbox.Match, error) {
	snap := s.cfg.Store.Snapshot()
	base := matchbox.Labels{}
	for k, v := range sum.Labels {
		base[k] = v
	}
	if sum.UUID != "" {
		base["uuid"] = sum.UUID
	}
	if inv.System.Serial != "" {
		base["serial"] = inv.System.Serial
	}
	// Try each NIC's MAC: a group may name any of them.
	var best matchbox.Match
	var bestErr error = matchbox.ErrNoMatch
	macs := []string{""}
	for _, n := range inv.NICs {
		if mac, err := matchbox.NormalizeMAC(n.MAC); err == nil {
			macs = append(macs, mac)
		}
	}
	for _, m := range extraMACs {
		if mac, err := matchbox.NormalizeMAC(m); err == nil && !slices.Contains(macs, mac) {
			macs = append(macs, mac)
		}
	}
	for _, mac := range macs {
		labels := base
		if mac != "" {
			labels = make(matchbox.Labels, len(base)+1)
			for k, v := range base {
				labels[k] = v
			}
			labels["mac"] = mac
		}
		m, err := snap.Select(labels, &inv)
		if err != nil {
			continue
		}
		if bestErr != nil || snap.Precedes(m.Group, best.Group) {
			best, bestErr = m, nil
		}
	}
	return best, bestErr
}

// bmcRecord is a machine's BMC as the lifecycle stores it (Store's BMC
// record, JSON): the endpoint without credentials, and the credentials
// sealed.
type bmcRecord struct {
	Address     string `json:"address"`
	Port        int    `json:"port,omitempty"`
	Driver      string `json:"driver,omitempty"`
	CipherSuite string `json:"cipher_suite,omitempty"`
	Insecure    bool   `json:"insecure,omitempty"`
	// Sealed holds username and password, AES-GCM sealed and bound to the
	// machine id.
	Sealed string `json:"sealed,omitempty"`
}

// ErrNoSecretKey is returned when credentials are to be stored but no
// secret key is configured.
var ErrNoSecretKey = errors.New("refusing to store BMC credentials without a secret key (--secret-key-file)")

// ErrNoBMC is returned for BMC actions on a machine without a BMC.
var ErrNoBMC = errors.New("machine has no BMC")

// ErrCredentialsUnavailable is returned when a machine's sealed BMC
// credentials cannot be opened: no secret key is configured, or it is not
// the key they were sealed with.
var ErrCredentialsUnavailable = errors.New("BMC credentials cannot be opened")

type credentials struct {
	Username string `json:"u"`
	Password string `json:"p"`
}

// SetBMC validates (bmc.Endpoint.Validate) and stores a machine's BMC,
// sealing its credentials.
func (s *Service) SetBMC(ctx context.Context, machineID string, c bmc.Endpoint) error {
	if err := c.Validate(); err != nil {
		return err
	}
	ep := c
	ep.Username, ep.Password = "", ""
	rec := bmcRecord{Address: c.Address, Port: c.Port, Driver: c.Driver, CipherSuite: c.CipherSuite, Insecure: c.Insecure}
	if c.Username != "" || c.Password != "" {
		if s.cfg.Secrets == nil {
			return ErrNoSecretKey
		}
		plain, err := json.Marshal(credentials{c.Username, c.Password})
		if err != nil {
			return fmt.Errorf("encode credentials: %w", err)
		}
		sealed, err := s.cfg.Secrets.Seal(plain, []byte(machineID))
		if err != nil {
			return fmt.Errorf("seal credentials of machine %q: %w", machineID, err)
		}
		rec.Sealed = base64.StdEncoding.EncodeToString(sealed)
	}
	body, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode BMC of machine %q: %w", machineID, err)
	}
	if err := s.cfg.Store.SetMachineBMC(ctx, machineID, string(body)); err != nil {
		return err
	}
	s.event(ctx, machineID, EventBMC+"configured", map[string]any{"endpoint": ep.String(), "has_credentials": rec.Sealed != ""})
	return nil
}

// DeleteBMC removes a machine's BMC.
func (s *Service) DeleteBMC(ctx context.Context, machineID string) error {
	if err := s.cfg.Store.SetMachineBMC(ctx, machineID, ""); err != nil {
		return err
	}
	s.event(ctx, machineID, EventBMC+"removed", nil)
	return nil
}

// BMC returns a machine's BMC without its credentials, and whether
// credentials are stored (sealed).
func (s *Service) BMC(ctx context.Context, machineID string) (ep bmc.Endpoint, hasCredentials bool, err error) {
	rec, err := s.record(ctx, machineID)
	if err != nil {
		return bmc.Endpoint{}, false, err
	}
	return rec.endpoint(), rec.Sealed != "", nil
}

// endpoint is the record's endpoint without credentials.
func (r bmcRecord) endpoint() bmc.Endpoint {
	return bmc.Endpoint{Address: r.Address, Port: r.Port, Driver: r.Driver, CipherSuite: r.CipherSuite, Insecure: r.Insecure}
}

func (s *Service) record(ctx context.Context, machineID string) (bmcRecord, error) {
	raw, err := s.cfg.Store.MachineBMC(ctx, machineID)
	if err != nil {
		return bmcRecord{}, err
	}
	if raw == "" {
		return bmcRecord{}, fmt.Errorf("machine %q: %w", machineID, ErrNoBMC)
	}
	var rec bmcRecord
	if err := json.Unmarshal([]byte(raw), &rec); err != nil {
		return bmcRecord{}, fmt.Errorf("decode BMC of machine %q: %w", machineID, err)
	}
	return rec, nil
}

// endpoint returns the machine's BMC endpoint with its credentials opened.
func (s *Service) endpoint(ctx context.Context, machineID string) (bmc.Endpoint, error) {
	if s.cfg.BMC == nil {
		return bmc.Endpoint{}, errors.New("BMC control is not configured")
	}
	rec, err := s.record(ctx, machineID)
	if err != nil {
		return bmc.Endpoint{}, err
	}
	ep := rec.endpoint()
	if rec.Sealed != "" {
		if s.cfg.Secrets == nil {
			return bmc.Endpoint{}, fmt.Errorf("machine %q: %w: they are sealed and no secret key is configured (--secret-key-file)", machineID, ErrCredentialsUnavailable)
		}
		sealed, err := base64.StdEncoding.DecodeString(rec.Sealed)
		if err != nil {
			return bmc.Endpoint{}, fmt.Errorf("machine %q: stored credentials are malformed: %w", machineID, err)
		}
		plain, err := s.cfg.Secrets.Open(sealed, []byte(machineID))
		if err != nil {
			return bmc.Endpoint{}, fmt.Errorf("machine %q: %w: %w", machineID, ErrCredentialsUnavailable, err)
		}
		var c credentials
		if err := json.Unmarshal(plain, &c); err != nil {
			return bmc.Endpoint{}, fmt.Errorf("machine %q: stored credentials are malformed: %w", machineID, err)
		}
		ep.Username, ep.Password = c.Username, c.Password
	}
	return ep, nil
}

func resultDetail(r bmc.Result, err error) map[string]any {
	d := map[string]any{"operation": r.Operation, "driver": r.Driver, "attempts": r.Attempts, "duration_ms": r.Duration.Milliseconds()}
	if r.PowerState != "" {
		d["power"] = string(r.PowerState)
	}
	if r.BootDevice != "" {
		d["boot_device"] = r.BootDevice
		d["boot_verified"] = r.BootVerified
	}
	if err != nil {
		d["error"] = err.Error()
	}
	return d
}

// PowerStatus reads a machine's power state.
func (s *Service) PowerStatus(ctx context.Context, machineID string) (bmc.PowerState, error) {
	ep, err := s.endpoint(ctx, machineID)
	if err != nil {
		return bmc.PowerUnknown, err
	}
	state, err := s.cfg.BMC.PowerStatus(ctx, ep)
	d := map[string]any{"operation": "status", "power": string(state)}
	if err != nil {
		d["error"] = err.Error()
	}
	s.event(ctx, machineID, EventBMC+"power_status", d)
	return state, err
}

// SetPower runs a power action on a machine's BMC.
func (s *Service) SetPower(ctx context.Context, machineID string, action bmc.PowerAction) (bmc.Result, error) {
	ep, err := s.endpoint(ctx, machineID)
	if err != nil {
		return bmc.Result{}, err
	}
	r, err := s.cfg.BMC.SetPower(ctx, ep, action)
	s.event(ctx, machineID, EventBMC+"power", resultDetail(r, err))
	return r, err
}

// SetBootDevice sets a machine's boot device through its BMC.
func (s *Service) SetBootDevice(ctx context.Context, machineID string, opts bmc.BootOptions) (bmc.Result, error) {
	ep, err := s.endpoint(ctx, machineID)
	if err != nil {
		return bmc.Result{}, err
	}
	r, err := s.cfg.BMC.SetBootDevice(ctx, ep, opts)
	s.event(ctx, machineID, EventBMC+"boot_device", resultDetail(r, err))
	return r, err
}

// Provision marks a machine provisioning, sets a one-time PXE boot and
// power-cycles it (powering it on when off). Its next network boot is
// served its group's profile; its completion callback then marks it
// provisioned. A BMC failure leaves the machine failed.
func (s *Service) Provision(ctx context.Context, machineID string) (bmc.Result, error) {
	ctx = audit.WithDefaultActor(ctx, audit.ActorLifecycle) // auto_provision names none
	ep, err := s.endpoint(ctx, machineID)
	if err != nil {
		return bmc.Result{}, err
	}
	if err := s.cfg.Store.SetMachineState(ctx, machineID, matchbox.StateProvisioning); err != nil {
		return bmc.Result{}, err
	}
	s.event(ctx, machineID, EventProvisioning, nil)
	r, err := s.cfg.BMC.ProvisionBoot(ctx, ep)
	s.event(ctx, machineID, EventBMC+"provision_boot", resultDetail(r, err))
	if err != nil {
		from, to := From(TriggerBMCFailed)
		if serr := s.cfg.Store.SetMachineState(context.WithoutCancel(ctx), machineID, to, from...); serr != nil {
			s.log.Warn("marking machine failed", "machine", machineID, "err", serr)
		}
		s.countFailure("provision_boot")
		s.event(context.WithoutCancel(ctx), machineID, EventFailed, map[string]any{"step": "provision_boot", "reason": "provision_boot", "error": err.Error()})
		return r, fmt.Errorf("provision machine %q: %w", machineID, err)
	}
	return r, nil
}

// ConfigFetched is called when a machine was served the endpoint its
// profile's provisioned_by names: a provisioning machine becomes
// provisioned.
func (s *Service) ConfigFetched(ctx context.Context, machineID, endpoint string) {
	ctx = audit.WithDefaultActor(ctx, audit.ActorLifecycle)
	sum, ok := s.cfg.Store.LookupMachineByID(machineID)
	if !ok || sum.State != matchbox.StateProvisioning {
		return
	}
	from, to := From(TriggerConfigFetched)
	err := s.cfg.Store.SetMachineState(ctx, machineID, to, from...)
	if errors.Is(err, store.ErrVersionConflict) {
		return // another request got there first
	}
	if err != nil {
		s.log.Warn("marking machine provisioned failed", "machine", machineID, "err", err)
		return
	}
	s.event(ctx, machineID, EventProvisioned, map[string]any{"via": endpoint})
}

// ProvisionAll provisions machines with a bounded number of BMC sessions in
// parallel and returns an outcome per machine.
func (s *Service) ProvisionAll(ctx context.Context, machineIDs []string) []bmc.Outcome {
	targets := make([]bmc.Target, len(machineIDs))
	for i, id := range machineIDs {
		targets[i] = bmc.Target{ID: id}
	}
	return bmc.RunAll(ctx, targets, s.cfg.Parallel, func(ctx context.Context, t bmc.Target) (bmc.Result, error) {
		return s.Provision(ctx, t.ID)
	})
}
