package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"matchbox/api/wire"
	"matchbox/matchbox"
	"matchbox/store"
)

// machineBody is what clients write of a machine: its identity, labels and
// state. Timestamps are the store's; inventory and BMC have their own
// endpoints.
type machineBody struct {
	ID          string                `json:"id" yaml:"id"`
	MACs        []string              `json:"macs,omitempty" yaml:"macs,omitempty"`
	UUID        string                `json:"uuid,omitempty" yaml:"uuid,omitempty"`
	Serial      string                `json:"serial,omitempty" yaml:"serial,omitempty"`
	Hostname    string                `json:"hostname,omitempty" yaml:"hostname,omitempty"`
	IP          string                `json:"ip,omitempty" yaml:"ip,omitempty"`
	Labels      map[string]string     `json:"labels,omitempty" yaml:"labels,omitempty"`
	State       matchbox.MachineState `json:"state,omitempty" yaml:"state,omitempty"`
	Group       string                `json:"group,omitempty" yaml:"group,omitempty"`
	PXEDisabled bool                  `json:"pxe_disabled,omitempty" yaml:"pxe_disabled,omitempty"`
	// Read-only fields a client may send back unchanged.
	CreatedAt        *time.Time `json:"created_at,omitempty" yaml:"created_at,omitempty"`
	UpdatedAt        *time.Time `json:"updated_at,omitempty" yaml:"updated_at,omitempty"`
	InventorySummary any        `json:"inventory_summary,omitempty" yaml:"inventory_summary,omitempty"`
	ServedGroup      string     `json:"served_group,omitempty" yaml:"served_group,omitempty"`
	ServedProfile    string     `json:"served_profile,omitempty" yaml:"served_profile,omitempty"`
}

// decodeMachine reads and validates a machine from the request body.
func decodeMachine(r *http.Request, pathID string) (*matchbox.Machine, error) {
	data, format, err := readBody(r, false)
	if err != nil {
		return nil, err
	}
	var b machineBody
	if err := decodeStrict(data, format, &b); err != nil {
		return nil, err
	}
	if b.ID == "" {
		b.ID = pathID
	}
	if pathID != "" && b.ID != pathID {
		return nil, errorf(http.StatusBadRequest, CodeInvalidBody, "id", "field id %q differs from the %q the path names", b.ID, pathID)
	}
	if err := matchbox.ValidateID("machine", b.ID); err != nil {
		return nil, errorf(http.StatusBadRequest, CodeInvalidBody, "id", "field id: %v", err)
	}
	if b.State == "" {
		b.State = matchbox.StateDiscovered
	}
	if !b.State.Valid() {
		return nil, errorf(http.StatusBadRequest, CodeInvalidBody, "state", "field state %q: want discovered, ready, provisioning, provisioned or failed", b.State)
	}
	for i, mac := range b.MACs {
		if _, err := matchbox.NormalizeMAC(mac); err != nil {
			return nil, errorf(http.StatusBadRequest, CodeInvalidBody, fmt.Sprintf("macs[%d]", i), "field macs[%d]: %v", i, err)
		}
	}
	return &matchbox.Machine{
		ID: b.ID, MACs: b.MACs, UUID: strings.ToLower(b.UUID), Serial: b.Serial, Hostname: b.Hostname, IP: b.IP,
		Labels: b.Labels, State: b.State, Group: b.Group, PXEDisabled: b.PXEDisabled,
	}, nil
}

func (a *API) listMachines(w http.ResponseWriter, r *http.Request) error {
	limit, after, err := page(r, 500, 1000)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := store.MachineFilter{After: after, Limit: limit + 1, State: matchbox.MachineState(q.Get("state"))}
	if f.State != "" && !f.State.Valid() {
		return errorf(http.StatusBadRequest, CodeBadRequest, "state", "state %q: want discovered, ready, provisioning, provisioned or failed", f.State)
	}
	for _, l := range q["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return errorf(http.StatusBadRequest, CodeBadRequest, "label", "label %q: want key=value", l)
		}
		if f.Label == nil {
			f.Label = map[string]string{}
		}
		f.Label[k] = v
	}
	ms, err := a.cfg.Store.ListMachines(r.Context(), f)
	if err != nil {
		return err
	}
	out := wire.List{Items: []wire.Item{}}
	for i, m := range ms {
		if i == limit {
			out.Next = ms[i-1].ID
			break
		}
		out.Items = append(out.Items, wire.Item{ID: m.ID, Machine: a.machineView(m)})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) getMachine(w http.ResponseWriter, r *http.Request) error {
	m, v, err := a.cfg.Store.Machine(r.Context(), mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag(v))
	writeJSON(w, http.StatusOK, a.machineView(m))
	return nil
}

// machineView adds the summary of the machine's last inventory to m.
func (a *API) machineView(m *matchbox.Machine) *wire.Machine {
	out := &wire.Machine{Machine: *m}
	if sum, ok := a.cfg.Store.LookupMachineByID(m.ID); ok {
		out.InventorySummary = wire.Summarize(sum.Inventory)
	}
	return out
}

func (a *API) createMachine(w http.ResponseWriter, r *http.Request) error {
	m, err := decodeMachine(r, "")
	if err != nil {
		return err
	}
	return a.putMachine(w, r, m, mustNotExist)
}

func (a *API) replaceMachine(w http.ResponseWriter, r *http.Request) error {
	ifVersion, err := precondition(r)
	if err != nil {
		return err
	}
	m, err := decodeMachine(r, mux.Vars(r)["id"])
	if err != nil {
		return err
	}
	return a.putMachine(w, r, m, ifVersion)
}

// putMachine writes m under the precondition ifVersion and answers with the
// stored machine.
func (a *API) putMachine(w http.ResponseWriter, r *http.Request, m *matchbox.Machine, ifVersion int64) error {
	ctx := r.Context()
	created := false
	if ifVersion == mustExist || ifVersion == 0 {
		_, cur, err := a.cfg.Store.Machine(ctx, m.ID)
		switch {
		case err == nil && ifVersion == mustExist:
			ifVersion = cur
		case err != nil && ifVersion == mustExist:
			return fmt.Errorf("machine %q does not exist, If-Match cannot hold: %w", m.ID, store.ErrVersionConflict)
		case err != nil:
			created = true
		}
	}
	if ifVersion == mustNotExist {
		created = true
	}
	if _, err := a.cfg.Store.PutMachine(ctx, m, ifVersion); err != nil {
		return preconditionError(err, ifVersion)
	}
	return a.answerMachine(ctx, w, r, m.ID, created)
}

// preconditionError turns "not found" under an If-Match into the failed
// precondition it is.
func preconditionError(err error, ifVersion int64) error {
	if ifVersion > 0 && errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%v: %w", err, store.ErrVersionConflict)
	}
	return err
}

func (a *API) answerMachine(ctx context.Context, w http.ResponseWriter, r *http.Request, id string, created bool) error {
	m, v, err := a.cfg.Store.Machine(ctx, id)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag(v))
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", Prefix+"/machines/"+id)
	}
	writeJSON(w, status, a.machineView(m))
	return nil
}

func (a *API) deleteMachine(w http.ResponseWriter, r *http.Request) error {
	ifVersion, err := precondition(r)
	if err != nil {
		return err
	}
	if ifVersion < 0 {
		ifVersion = 0
	}
	if err := a.cfg.Store.DeleteMachine(r.Context(), mux.Vars(r)["id"], ifVersion); err != nil {
		return preconditionError(err, ifVersion)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// modifyMachine reads a machine, applies change and writes it back under
// the version read (or the If-Match version, which must equal it).
func (a *API) modifyMachine(w http.ResponseWriter, r *http.Request, change func(m *matchbox.Machine) error) error {
	ifVersion, err := precondition(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	id := mux.Vars(r)["id"]
	m, cur, err := a.cfg.Store.Machine(ctx, id)
	if err != nil {
		return err
	}
	if ifVersion > 0 && ifVersion != cur {
		return fmt.Errorf("machine %q is at version %d, not %d: %w", id, cur, ifVersion, store.ErrVersionConflict)
	}
	if err := change(m); err != nil {
		return err
	}
	if _, err := a.cfg.Store.PutMachine(ctx, m, cur); err != nil {
		return err
	}
	return a.answerMachine(ctx, w, r, id, false)
}

func (a *API) setMachineLabels(w http.ResponseWriter, r *http.Request) error {
	return a.modifyMachine(w, r, func(m *matchbox.Machine) error {
		data, format, err := readBody(r, false)
		if err != nil {
			return err
		}
		var b wire.Labels
		if err := decodeStrict(data, format, &b); err != nil {
			return err
		}
		for k := range b.Labels {
			if k == "" {
				return errorf(http.StatusBadRequest, CodeInvalidBody, "labels", "field labels: a label key is empty")
			}
		}
		m.Labels = b.Labels
		return nil
	})
}

func (a *API) setMachineState(w http.ResponseWriter, r *http.Request) error {
	return a.modifyMachine(w, r, func(m *matchbox.Machine) error {
		data, format, err := readBody(r, false)
		if err != nil {
			return err
		}
		var b wire.StateChange
		if err := decodeStrict(data, format, &b); err != nil {
			return err
		}
		if !b.State.Valid() {
			return errorf(http.StatusBadRequest, CodeInvalidBody, "state", "field state %q: want discovered, ready, provisioning, provisioned or failed", b.State)
		}
		m.State = b.State
		return nil
	})
}

func (a *API) machineEvents(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id := mux.Vars(r)["id"]
	q := r.URL.Query()
	f := store.EventFilter{Type: q.Get("type"), Limit: 100}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			return errorf(http.StatusBadRequest, CodeBadRequest, "limit", "limit %q: want a number from 1 to 1000", s)
		}
		f.Limit = n
	}
	if s := q.Get("after"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return errorf(http.StatusBadRequest, CodeBadRequest, "after", "after %q: want an event id", s)
		}
		f.AfterID = n
	}
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return errorf(http.StatusBadRequest, CodeBadRequest, "since", "since %q: want an RFC 3339 time (2006-01-02T15:04:05Z)", s)
		}
		f.Since = t
	}
	if _, _, err := a.cfg.Store.Machine(ctx, id); err != nil {
		return err
	}
	limit := f.Limit
	f.Limit++
	evs, err := a.cfg.Store.Events(ctx, id, f)
	if err != nil {
		return err
	}
	out := wire.EventList{Events: evs}
	if len(evs) > limit {
		out.Events = evs[:limit]
		out.Next = evs[limit-1].ID
	}
	if out.Events == nil {
		out.Events = []matchbox.Event{}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
