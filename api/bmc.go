package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"

	"github.com/gorilla/mux"

	"matchbox/api/wire"
	"matchbox/bmc"
	"matchbox/lifecycle"
	"matchbox/matchbox"
	"matchbox/store"
)

// maxProvisionIDs bounds the ids of one bulk provisioning request.
const maxProvisionIDs = 10000

// needLifecycle returns the lifecycle service, or a 501 not_configured
// error when the server runs without one.
func (a *API) needLifecycle() (Lifecycle, error) {
	if a.cfg.Lifecycle == nil {
		return nil, errorf(http.StatusNotImplemented, CodeNotConfigured, "", "this server runs without BMC control")
	}
	return a.cfg.Lifecycle, nil
}

// actionContext is the context BMC actions run under: a client that goes
// away does not abort an action half done (a cycle stopped after its power
// off would leave the machine off). The BMC controller's timeouts bound it.
func actionContext(r *http.Request) context.Context {
	return context.WithoutCancel(r.Context())
}

// machineExists returns the path's machine id, or the store's error (not
// found) when the machine does not exist.
func (a *API) machineExists(r *http.Request) (string, error) {
	id := mux.Vars(r)["id"]
	if _, _, err := a.cfg.Store.Machine(r.Context(), id); err != nil {
		return id, err
	}
	return id, nil
}

// quoted matches the values YAML decoding errors quote.
var quoted = regexp.MustCompile("`[^`]*`")

// decodeCredentialBody decodes a body that may hold credentials: YAML
// errors, which quote the offending value, are answered without it.
func decodeCredentialBody(r *http.Request, v any) error {
	data, format, err := readBody(r, false)
	if err != nil {
		return err
	}
	err = decodeStrict(data, format, v)
	var ae *apiError
	if format == formatYAML && errors.As(err, &ae) {
		scrubbed := *ae
		scrubbed.detail.Message = quoted.ReplaceAllString(ae.detail.Message, "`…`")
		return &scrubbed
	}
	return err
}

func (a *API) putBMC(w http.ResponseWriter, r *http.Request) error {
	lc, err := a.needLifecycle()
	if err != nil {
		return err
	}
	id, err := a.machineExists(r)
	if err != nil {
		return err
	}
	var b wire.BMC
	if err := decodeCredentialBody(r, &b); err != nil {
		return err
	}
	if b.HasCredentials != nil {
		return errorf(http.StatusBadRequest, CodeInvalidBody, "has_credentials", "field has_credentials is read-only")
	}
	// Validated by lc.SetBMC (bmc.Endpoint.Validate): a *bmc.FieldError
	// answers 400 invalid_body naming the field.
	ctx := r.Context()
	err = lc.SetBMC(ctx, id, bmc.Endpoint{
		Address: b.Address, Port: b.Port, Driver: b.Driver, CipherSuite: b.CipherSuite, Insecure: b.Insecure,
		Username: b.Username, Password: b.Password,
	})
	if err != nil {
		return err
	}
	ep, creds, err := lc.BMC(ctx, id)
	if err != nil {
		return err
	}
	a.log.InfoContext(ctx, "machine BMC set", "machine", id, "address", ep.Address, "port", ep.Port, "driver", ep.Driver, "has_credentials", creds)
	writeJSON(w, http.StatusOK, bmcView(ep, creds))
	return nil
}

// bmcView is the API's answer for a BMC: never with credentials.
func bmcView(ep bmc.Endpoint, hasCredentials bool) wire.BMC {
	return wire.BMC{Address: ep.Address, Port: ep.Port, Driver: ep.Driver, CipherSuite: ep.CipherSuite, Insecure: ep.Insecure, HasCredentials: &hasCredentials}
}

func (a *API) getBMC(w http.ResponseWriter, r *http.Request) error {
	lc, err := a.needLifecycle()
	if err != nil {
		return err
	}
	id := mux.Vars(r)["id"]
	ep, creds, err := lc.BMC(r.Context(), id)
	if errors.Is(err, lifecycle.ErrNoBMC) {
		return errorf(http.StatusNotFound, CodeNotFound, "", "machine %q has no BMC", id)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, bmcView(ep, creds))
	return nil
}

func (a *API) deleteBMC(w http.ResponseWriter, r *http.Request) error {
	lc, err := a.needLifecycle()
	if err != nil {
		return err
	}
	id := mux.Vars(r)["id"]
	if err := lc.DeleteBMC(r.Context(), id); err != nil {
		return err
	}
	a.log.InfoContext(r.Context(), "machine BMC removed", "machine", id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// resultOf converts a BMC result to its wire form.
func resultOf(res bmc.Result) *wire.BMCResult {
	return &wire.BMCResult{
		Endpoint: res.Endpoint, Operation: res.Operation, Requested: res.Requested, Steps: res.Steps,
		Driver: res.Driver, Provider: res.Provider, Attempts: res.Attempts, Started: res.Started,
		DurationMS: res.Duration.Milliseconds(), PowerState: string(res.PowerState), Settled: res.Settled,
		BootDevice: res.BootDevice, BootVerified: res.BootVerified,
	}
}

func (a *API) machinePower(w http.ResponseWriter, r *http.Request) error {
	lc, err := a.needLifecycle()
	if err != nil {
		return err
	}
	var b wire.PowerRequest
	if err := decodeBody(r, &b); err != nil {
		return err
	}
	id := mux.Vars(r)["id"]
	ctx := actionContext(r)
	switch action := bmc.PowerAction(b.Action); action {
	case "status":
		state, err := lc.PowerStatus(ctx, id)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, wire.PowerStatus{Power: string(state)})
	case bmc.ActionOn, bmc.ActionOff, bmc.ActionCycle, bmc.ActionReset, bmc.ActionSoft:
		res, err := lc.SetPower(ctx, id, action)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, resultOf(res))
	default:
		return errorf(http.StatusBadRequest, CodeInvalidBody, "action", "field action %q: want on, off, cycle, reset, soft or status", b.Action)
	}
	return nil
}

func (a *API) machineBootDevice(w http.ResponseWriter, r *http.Request) error {
	lc, err := a.needLifecycle()
	if err != nil {
		return err
	}
	var b wire.BootDeviceRequest
	if err := decodeBody(r, &b); err != nil {
		return err
	}
	if b.Device != bmc.BootPXE && b.Device != bmc.BootDisk {
		return errorf(http.StatusBadRequest, CodeInvalidBody, "device", "field device %q: want pxe or disk", b.Device)
	}
	res, err := lc.SetBootDevice(actionContext(r), mux.Vars(r)["id"], bmc.BootOptions{Device: b.Device, Persistent: b.Persistent, EFI: b.EFI})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resultOf(res))
	return nil
}

func (a *API) provisionMachine(w http.ResponseWriter, r *http.Request) error {
	lc, err := a.needLifecycle()
	if err != nil {
		return err
	}
	res, err := lc.Provision(actionContext(r), mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resultOf(res))
	return nil
}

func (a *API) provisionMachines(w http.ResponseWriter, r *http.Request) error {
	lc, err := a.needLifecycle()
	if err != nil {
		return err
	}
	var b wire.ProvisionRequest
	if err := decodeBody(r, &b); err != nil {
		return err
	}
	ids, err := a.provisionTargets(r.Context(), b)
	if err != nil {
		return err
	}
	out := wire.ProvisionAnswer{Outcomes: make([]wire.ProvisionOutcome, 0, len(ids))}
	for _, o := range lc.ProvisionAll(actionContext(r), ids) {
		po := wire.ProvisionOutcome{ID: o.ID, OK: o.Err == nil}
		if o.Result.Operation != "" {
			po.Result = resultOf(o.Result)
		}
		if o.Err != nil {
			detail := classify(o.Err).detail
			po.Error = &detail
			out.Failed++
		} else {
			out.Succeeded++
		}
		out.Outcomes = append(out.Outcomes, po)
	}
	a.log.InfoContext(r.Context(), "bulk provisioning", "machines", len(ids), "succeeded", out.Succeeded, "failed", out.Failed)
	writeJSON(w, http.StatusOK, out)
	return nil
}

// provisionTargets resolves a bulk provisioning request to machine ids:
// the request's ids (checked, duplicates dropped) or the machines whose
// stored labels include every selector label.
func (a *API) provisionTargets(ctx context.Context, b wire.ProvisionRequest) ([]string, error) {
	switch {
	case len(b.Selector) == 0 && len(b.IDs) == 0:
		return nil, errorf(http.StatusBadRequest, CodeInvalidBody, "selector", "give a selector ({\"selector\": {\"rack\": \"r12\"}}) or ids")
	case len(b.Selector) > 0 && len(b.IDs) > 0:
		return nil, errorf(http.StatusBadRequest, CodeInvalidBody, "ids", "give a selector or ids, not both")
	case len(b.IDs) > maxProvisionIDs:
		return nil, errorf(http.StatusBadRequest, CodeInvalidBody, "ids", "%d ids: at most %d at once", len(b.IDs), maxProvisionIDs)
	}
	if len(b.IDs) > 0 {
		seen := map[string]bool{}
		var ids []string
		for i, id := range b.IDs {
			if err := matchbox.ValidateID("machine", id); err != nil {
				return nil, errorf(http.StatusBadRequest, CodeInvalidBody, "ids["+strconv.Itoa(i)+"]", "field ids[%d]: %v", i, err)
			}
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		return ids, nil
	}
	for k := range b.Selector {
		if k == "" {
			return nil, errorf(http.StatusBadRequest, CodeInvalidBody, "selector", "field selector: a label key is empty")
		}
	}
	ms, err := a.cfg.Store.ListMachines(ctx, store.MachineFilter{Label: b.Selector})
	if err != nil {
		return nil, fmt.Errorf("select machines to provision: %w", err)
	}
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return ids, nil
}

func (a *API) machineInventory(w http.ResponseWriter, r *http.Request) error {
	id, err := a.machineExists(r)
	if err != nil {
		return err
	}
	hist, err := a.cfg.Store.InventoryHistory(r.Context(), id)
	if err != nil {
		return err
	}
	out := wire.Inventory{History: make([]wire.InventoryReport, len(hist))}
	for i, h := range hist {
		out.History[i] = wire.InventoryReport{Seq: h.Seq, ReportedAt: h.ReportedAt, Inventory: h.Inventory}
	}
	if sum, ok := a.cfg.Store.LookupMachineByID(id); ok {
		out.Current = sum.Inventory
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// decodeBody reads and strictly decodes a JSON or YAML request body.
func decodeBody(r *http.Request, v any) error {
	data, format, err := readBody(r, false)
	if err != nil {
		return err
	}
	return decodeStrict(data, format, v)
}
