package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/gorilla/mux"

	"matchbox/hardware"
	"matchbox/hardware/token"
	"matchbox/matchbox"
)

// AgentAuth issues and checks the per-machine tokens the discovery agent
// presents with its inventory.
type AgentAuth struct {
	key []byte
}

// NewAgentAuth returns an AgentAuth with key (at least token.MinKeyLen
// bytes).
func NewAgentAuth(key []byte) (*AgentAuth, error) {
	if len(key) < token.MinKeyLen {
		return nil, fmt.Errorf("agent token key has %d bytes, want at least %d", len(key), token.MinKeyLen)
	}
	return &AgentAuth{key: append([]byte(nil), key...)}, nil
}

// Vars returns the template variables that let a profile's kernel
// arguments hand the agent its identity: machine_id, agent_token and
// matchbox_url (baseURL).
func (a *AgentAuth) Vars(machineID, baseURL string) map[string]any {
	return map[string]any{
		"machine_id":   machineID,
		"agent_token":  token.Issue(a.key, machineID),
		"matchbox_url": strings.TrimSuffix(baseURL, "/"),
	}
}

// maxInventoryBytes bounds an inventory report.
const maxInventoryBytes = 1 << 20

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func writeError(w http.ResponseWriter, status int, code, field, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]apiError{"error": {Code: code, Message: msg, Field: field}})
}

// InventoryHandler serves POST /api/v1/machines/{id}/inventory: the agent's
// report, authenticated by the machine's token (Authorization: Bearer).
// Background provisioning started by auto-enrollment runs under bgCtx.
func (s *Service) InventoryHandler(auth *AgentAuth, bgCtx context.Context) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := mux.Vars(r)["id"]
		if err := matchbox.ValidateID("machine", id); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_id", "id", err.Error())
			return
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="matchbox-agent"`)
			writeError(w, http.StatusUnauthorized, "unauthenticated", "", "an agent token is required (Authorization: Bearer TOKEN)")
			return
		}
		if err := token.Verify(auth.key, id, strings.TrimSpace(tok)); err != nil {
			s.log.WarnContext(r.Context(), "agent token refused", "machine", id, "remote", r.RemoteAddr, "err", err)
			writeError(w, http.StatusForbidden, "invalid_token", "", fmt.Sprintf("agent token refused for machine %q: %v", id, err))
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
			writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "", "inventory must be application/json")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxInventoryBytes))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", "", fmt.Sprintf("inventory over %d bytes", maxInventoryBytes))
				return
			}
			writeError(w, http.StatusBadRequest, "bad_body", "", "reading inventory: "+err.Error())
			return
		}
		var inv hardware.Inventory
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&inv); err != nil {
			field := ""
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				field = te.Field
			}
			writeError(w, http.StatusBadRequest, "invalid_inventory", field, "inventory: "+err.Error())
			return
		}
		res, err := s.ReportInventory(r.Context(), bgCtx, id, inv)
		if err != nil {
			s.log.ErrorContext(r.Context(), "storing inventory failed", "machine", id, "err", err)
			writeError(w, http.StatusInternalServerError, "internal", "", err.Error())
			return
		}
		s.log.InfoContext(r.Context(), "inventory reported", "machine", id, "state", res.State, "group", res.Group, "changed", res.Changed)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(res)
	})
}
