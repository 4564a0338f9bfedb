package e2elibvirt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"matchbox/api/wire"
	"matchbox/hardware"
)

// apiStatusError is an API answer other than 2xx.
type apiStatusError struct {
	Method, Path string
	Status       int
	Body         string
}

func (e *apiStatusError) Error() string {
	return fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.Status, http.StatusText(e.Status), e.Body)
}

// isNotFound reports whether err is a 404 answer of the API.
func isNotFound(err error) bool {
	var se *apiStatusError
	return errors.As(err, &se) && se.Status == http.StatusNotFound
}

// apiCall sends a JSON request to matchbox's API (from inside the lab's
// namespace, as a loopback client) and decodes a 2xx answer into out (nil:
// discarded). BMC actions can take several seconds: the timeout is long.
func (s *matchboxServer) apiCall(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+s.APIAddr+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Transport: s.client.Transport, Timeout: 2 * time.Minute}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return &apiStatusError{Method: method, Path: path, Status: resp.StatusCode, Body: strings.TrimSpace(string(b))}
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return nil
}

// machinePath is the API path of machine id, plus sub ("" or "/bmc"...).
func machinePath(id, sub string) string {
	return "/api/v1/machines/" + url.PathEscape(id) + sub
}

// MachineByID returns the machine id with its inventory summary.
func (s *matchboxServer) MachineByID(ctx context.Context, id string) (wire.Machine, error) {
	var m wire.Machine
	err := s.apiCall(ctx, http.MethodGet, machinePath(id, ""), nil, &m)
	return m, err
}

// Inventory returns the machine's current hardware inventory (nil when
// none was reported).
func (s *matchboxServer) Inventory(ctx context.Context, id string) (*hardware.Inventory, error) {
	var out struct {
		Current *hardware.Inventory `json:"current"`
	}
	err := s.apiCall(ctx, http.MethodGet, machinePath(id, "/inventory"), nil, &out)
	return out.Current, err
}

// bmcAction is the answer of a power or provisioning action.
type bmcAction struct {
	Endpoint   string   `json:"endpoint"`
	Operation  string   `json:"operation"`
	Requested  string   `json:"requested"`
	Steps      []string `json:"steps"`
	PowerState string   `json:"power_state"`
	Settled    bool     `json:"settled"`
	DurationMS int64    `json:"duration_ms"`
}

// SetBMC declares the machine's BMC (vmBMC b, reached from matchbox's
// namespace) with its credentials.
func (s *matchboxServer) SetBMC(ctx context.Context, id string, b *vmBMC) error {
	return s.apiCall(ctx, http.MethodPut, machinePath(id, "/bmc"), map[string]any{
		"address": b.Host, "port": b.Port, "driver": "ipmi", "cipher_suite": b.CipherSu,
		"username": b.Username, "password": b.Password,
	}, nil)
}

// Power runs a power action (on, off, cycle, ...) through matchbox.
func (s *matchboxServer) Power(ctx context.Context, id, action string) (bmcAction, error) {
	var out bmcAction
	err := s.apiCall(ctx, http.MethodPost, machinePath(id, "/power"), map[string]string{"action": action}, &out)
	return out, err
}

// Provision provisions the machine through matchbox: one-time PXE boot
// and a power cycle.
func (s *matchboxServer) Provision(ctx context.Context, id string) (bmcAction, error) {
	var out bmcAction
	err := s.apiCall(ctx, http.MethodPost, machinePath(id, "/provision"), nil, &out)
	return out, err
}

// EventsByID returns the whole timeline of machine id, oldest first.
func (s *matchboxServer) EventsByID(ctx context.Context, id string) ([]event, error) {
	var all []event
	after := int64(0)
	for {
		var page struct {
			Events []event `json:"events"`
			Next   int64   `json:"next"`
		}
		path := machinePath(id, "/events") + "?limit=1000"
		if after > 0 {
			path += fmt.Sprintf("&after=%d", after)
		}
		if err := s.apiCall(ctx, http.MethodGet, path, nil, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Events...)
		if page.Next == 0 || page.Next == after || len(page.Events) == 0 {
			return all, nil
		}
		after = page.Next
	}
}

// eventTypes lists the types of evs, for messages.
func eventTypes(evs []event) string {
	types := make([]string, len(evs))
	for i, e := range evs {
		types[i] = e.Type
		if p, ok := e.Detail["profile"].(string); ok && strings.HasPrefix(e.Type, "http.") {
			types[i] += "(" + p + ")"
		}
		if b, ok := e.Detail["boot_file"].(string); ok {
			types[i] += "(" + b + ")"
		}
	}
	return strings.Join(types, " ")
}

// eventStep is one expected event of a timeline: its type (exact) and,
// when set, detail values it must carry.
type eventStep struct {
	Type   string
	Detail map[string]any
}

func (st eventStep) String() string {
	if len(st.Detail) == 0 {
		return st.Type
	}
	return fmt.Sprintf("%s%v", st.Type, st.Detail)
}

// matches reports whether e is the step.
func (st eventStep) matches(e event) bool {
	if e.Type != st.Type {
		return false
	}
	for k, v := range st.Detail {
		if fmt.Sprint(e.Detail[k]) != fmt.Sprint(v) {
			return false
		}
	}
	return true
}

// findInOrder finds steps in evs in order (other events may come
// between) and returns the index of each, or the first step missing.
func findInOrder(evs []event, steps []eventStep) ([]int, *eventStep) {
	var at []int
	i := 0
	for _, st := range steps {
		for i < len(evs) && !st.matches(evs[i]) {
			i++
		}
		if i == len(evs) {
			st := st
			return at, &st
		}
		at = append(at, i)
		i++
	}
	return at, nil
}

// lastOf returns the index of the last event of type typ, or -1.
func lastOf(evs []event, typ string) int {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == typ {
			return i
		}
	}
	return -1
}
