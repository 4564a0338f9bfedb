package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gorilla/mux"

	"matchbox/agent/token"
	"matchbox/hardware"
	"matchbox/lifecycle"
	"matchbox/matchbox"
)

// Error codes of the discovery agent's report
// (POST /api/v1/machines/{id}/inventory).
const (
	// CodeInvalidID: the path's machine id is not a valid id.
	CodeInvalidID = "invalid_id"
	// CodeUnauthenticated: the report carries no agent token.
	CodeUnauthenticated = "unauthenticated"
	// CodeInvalidToken: the agent token is not the machine's, or expired.
	CodeInvalidToken = "invalid_token"
	// CodeBadBody: the report's body could not be read.
	CodeBadBody = "bad_body"
	// CodeInvalidInventory: the report is not an inventory.
	CodeInvalidInventory = "invalid_inventory"
)

// maxInventoryBytes bounds an inventory report.
const maxInventoryBytes = 1 << 20

// Inventories takes the discovery agent's reports: lifecycle.Service
// implements it.
type Inventories interface {
	// ReportInventory stores a machine's inventory and enrolls it into the
	// group its facts select.
	ReportInventory(ctx context.Context, machineID string, inv hardware.Inventory) (lifecycle.Enrollment, error)
}

// AgentConfig configures the discovery agent's endpoint.
type AgentConfig struct {
	// Key verifies the agent's per-machine tokens (the key the lifecycle
	// issues them with); required.
	Key []byte
	// Inventories takes the reports; required.
	Inventories Inventories
}

// RegisterAgent adds the discovery agent's report,
// POST /api/v1/machines/{id}/inventory, to r. It is authenticated by the
// machine's agent token (Authorization: Bearer), not by API tokens: r must
// not be behind the API's authentication, and when r also serves the API
// the route must be added before Register.
func (a *API) RegisterAgent(r *mux.Router, cfg AgentConfig) error {
	if len(cfg.Key) < token.MinKeyLen {
		return fmt.Errorf("api: agent token key has %d bytes, want at least %d", len(cfg.Key), token.MinKeyLen)
	}
	if cfg.Inventories == nil {
		return errors.New("api: agent endpoint without inventories")
	}
	h := &agentHandler{a: a, key: append([]byte(nil), cfg.Key...), inv: cfg.Inventories}
	r.Handle(Prefix+"/machines/{id}/inventory", a.serve(h.report)).Methods(http.MethodPost)
	return nil
}

type agentHandler struct {
	a   *API
	key []byte
	inv Inventories
}

// authenticate checks the request's agent token for the machine id.
func (h *agentHandler) authenticate(w http.ResponseWriter, r *http.Request, id string) error {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="matchbox-agent"`)
		return errorf(http.StatusUnauthorized, CodeUnauthenticated, "", "an agent token is required (Authorization: Bearer TOKEN)")
	}
	if err := token.Verify(h.key, id, strings.TrimSpace(tok)); err != nil {
		h.a.log.WarnContext(r.Context(), "agent token refused", "machine", id, "remote", r.RemoteAddr, "err", err)
		return errorf(http.StatusForbidden, CodeInvalidToken, "", "agent token refused for machine %q: %v", id, err)
	}
	return nil
}

// report serves the agent's inventory report and answers with the
// machine's enrollment.
func (h *agentHandler) report(w http.ResponseWriter, r *http.Request) error {
	id := mux.Vars(r)["id"]
	if err := matchbox.ValidateID("machine", id); err != nil {
		return errorf(http.StatusBadRequest, CodeInvalidID, "id", "%v", err)
	}
	if err := h.authenticate(w, r, id); err != nil {
		return err
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return errorf(http.StatusUnsupportedMediaType, CodeUnsupportedType, "", "inventory must be application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxInventoryBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "", "inventory over %d bytes", maxInventoryBytes)
		}
		return errorf(http.StatusBadRequest, CodeBadBody, "", "reading inventory: %v", err)
	}
	inv, err := decodeInventory(body)
	if err != nil {
		return err
	}
	res, err := h.inv.ReportInventory(r.Context(), id, inv)
	if err != nil {
		return errorf(http.StatusInternalServerError, CodeInternal, "", "%v", err)
	}
	h.a.log.InfoContext(r.Context(), "inventory reported", "machine", id, "state", res.State, "group", res.Group, "changed", res.Changed)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(res)
	return nil
}

// decodeInventory decodes an agent's inventory report, refusing unknown
// fields: a refusal is a 400 invalid_inventory naming the field when it
// can.
func decodeInventory(body []byte) (hardware.Inventory, error) {
	var inv hardware.Inventory
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&inv); err != nil {
		field := ""
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field = te.Field
		}
		return inv, errorf(http.StatusBadRequest, CodeInvalidInventory, field, "inventory: %v", err)
	}
	return inv, nil
}
