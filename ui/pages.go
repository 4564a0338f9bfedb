package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"matchbox/api/wire"
	"matchbox/hardware"
	"matchbox/matchbox"
	"matchbox/store"
)

// states are the machine states, in lifecycle order.
var states = []matchbox.MachineState{matchbox.StateDiscovered, matchbox.StateReady, matchbox.StateProvisioning, matchbox.StateProvisioned, matchbox.StateFailed}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"bytes": humanBytes,
		"ago":   ago,
		"join":  strings.Join,
		"json": func(v any) string {
			b, _ := json.Marshal(v)
			return string(b)
		},
	}
	pages := map[string]*template.Template{}
	for _, name := range []string{"login", "fleet", "machine", "groups", "confirm", "events"} {
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/boot.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("ui: parse page %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// humanBytes formats a size in binary units.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// ago formats how long ago t was.
func ago(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

// fleetRow is one machine of the fleet page.
type fleetRow struct {
	M         *matchbox.Machine
	Inv       *wire.InventorySummary
	Profile   string
	LastEvent *matchbox.Event
}

// fleetFilter is the fleet page's filter, read from its query.
type fleetFilter struct {
	State  matchbox.MachineState
	Labels map[string]string
	Facts  []matchbox.FactTerm
	// Group keeps the machines the catalog's snapshot selects that group
	// for now, as the groups page counts them.
	Group string
	// Raw are the filter's fields as typed, for the form.
	RawState, RawLabels, RawFacts string
}

// inMemory reports whether the filter has terms the store cannot evaluate.
func (f fleetFilter) inMemory() bool { return len(f.Facts) > 0 || f.Group != "" }

// parseFleetFilter reads state, labels (k=v,k=v) and facts (the group
// selector's fact terms, one per line or ";"-separated).
func (s *Server) parseFleetFilter(q url.Values) (fleetFilter, error) {
	f := fleetFilter{RawState: q.Get("state"), RawLabels: q.Get("labels"), RawFacts: q.Get("facts"), Group: q.Get("group")}
	if f.Group != "" {
		if _, ok := s.cfg.Snapshot().Group(f.Group); !ok {
			return f, fmt.Errorf("group %q does not exist", f.Group)
		}
	}
	if f.RawState != "" {
		f.State = matchbox.MachineState(f.RawState)
		if !f.State.Valid() {
			return f, fmt.Errorf("state %q: want discovered, ready, provisioning, provisioned or failed", f.RawState)
		}
	}
	labels, err := parseLabels(f.RawLabels)
	if err != nil {
		return f, err
	}
	f.Labels = labels
	for _, expr := range splitFacts(f.RawFacts) {
		if s.cfg.ParseFact == nil {
			return f, fmt.Errorf("hardware-fact filters are not available")
		}
		t, err := s.cfg.ParseFact(expr)
		if err != nil {
			return f, fmt.Errorf("fact %q: %w", expr, err)
		}
		f.Facts = append(f.Facts, t)
	}
	return f, nil
}

// parseLabels reads "k=v, k=v" (commas or new lines between pairs).
func parseLabels(s string) (map[string]string, error) {
	var out map[string]string
	for _, pair := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' }) {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q: want key=value", pair)
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = strings.TrimSpace(v)
	}
	return out, nil
}

func splitFacts(s string) []string {
	var out []string
	for _, e := range strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == '\n' }) {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// matches reports whether a listed machine passes the fact terms.
func (f fleetFilter) matchesFacts(inv *hardware.Inventory) bool {
	for _, t := range f.Facts {
		if !t.Eval(inv) {
			return false
		}
	}
	return true
}

// selectPage returns up to limit machines after `after` that pass f, and
// the id to continue after ("" at the end). The store filters state and
// labels; fact terms and the group selected are evaluated on the
// in-memory index's inventories and the catalog's snapshot.
func (s *Server) selectPage(ctx context.Context, f fleetFilter, after string, limit int) ([]*matchbox.Machine, string, error) {
	var out []*matchbox.Machine
	batch := limit + 1
	if f.inMemory() {
		batch = 1000
	}
	snap := s.cfg.Snapshot()
	for {
		ms, err := s.cfg.Machines.ListMachines(ctx, store.MachineFilter{State: f.State, Label: f.Labels, After: after, Limit: batch})
		if err != nil {
			return nil, "", err
		}
		for _, m := range ms {
			if f.inMemory() {
				idx, ok := s.cfg.Machines.LookupMachineByID(m.ID)
				if !ok || !f.matchesFacts(idx.Inventory) {
					continue
				}
				m.Inventory = idx.Inventory
				if f.Group != "" && selectedGroup(snap, m) != f.Group {
					continue
				}
			}
			if len(out) == limit {
				return out, out[limit-1].ID, nil
			}
			out = append(out, m)
		}
		if len(ms) < batch {
			return out, "", nil
		}
		after = ms[len(ms)-1].ID
	}
}

func (s *Server) fleet(w http.ResponseWriter, r *http.Request, u user) error {
	q := r.URL.Query()
	data := map[string]any{"User": u, "Title": "Fleet", "States": states, "Msg": q.Get("msg")}
	f, err := s.parseFleetFilter(q)
	data["Filter"] = f
	if err != nil {
		data["Error"] = err.Error()
		return s.render(w, "fleet", data)
	}
	ms, next, err := s.selectPage(r.Context(), f, q.Get("after"), s.cfg.PageSize)
	if err != nil {
		return err
	}
	counts, err := s.cfg.Machines.CountMachinesByState(r.Context())
	if err != nil {
		return err
	}
	type stateCount struct {
		State matchbox.MachineState
		N     int
	}
	var cs []stateCount
	total := 0
	for _, st := range states {
		cs = append(cs, stateCount{st, counts[st]})
		total += counts[st]
	}
	data["Counts"], data["Total"] = cs, total
	snap := s.cfg.Snapshot()
	rows := make([]fleetRow, len(ms))
	for i, m := range ms {
		row := fleetRow{M: m}
		if m.Inventory == nil {
			if idx, ok := s.cfg.Machines.LookupMachineByID(m.ID); ok {
				m.Inventory = idx.Inventory
			}
		}
		row.Inv = wire.Summarize(m.Inventory)
		if m.ServedProfile != "" {
			row.Profile = m.ServedProfile
		} else if g, ok := snap.Group(m.Group); ok {
			row.Profile = g.Profile
		}
		if evs, err := s.lastEvent(r.Context(), m.ID); err == nil {
			row.LastEvent = evs
		}
		rows[i] = row
	}
	data["Rows"] = rows
	if next != "" {
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("after", next)
		data["Next"] = Prefix + "?" + nq.Encode()
	}
	if q.Get("after") != "" {
		fq := url.Values{}
		for k, v := range q {
			fq[k] = v
		}
		fq.Del("after")
		data["First"] = Prefix + "?" + fq.Encode()
	}
	return s.render(w, "fleet", data)
}

// lastEvent returns a machine's newest event, nil when it has none.
func (s *Server) lastEvent(ctx context.Context, id string) (*matchbox.Event, error) {
	evs, err := s.cfg.Machines.Events(ctx, id, store.EventFilter{Newest: true, Limit: 1})
	if err != nil || len(evs) == 0 {
		return nil, err
	}
	return &evs[len(evs)-1], nil
}

// selectedGroup returns the id of the group the snapshot selects for m now
// ("" when none matches).
func selectedGroup(snap *matchbox.Snapshot, m *matchbox.Machine) string {
	match, _ := snap.Select(selectionLabels(m), m.Inventory)
	if match.Group == nil {
		return ""
	}
	return match.Group.ID
}

// selectionLabels are the labels a machine's boot requests carry, its
// stored labels joined: the groups page counts selections with them.
func selectionLabels(m *matchbox.Machine) matchbox.Labels {
	l := matchbox.Labels{}
	for k, v := range m.Labels {
		l[k] = v
	}
	if len(m.MACs) > 0 {
		l["mac"] = m.MACs[0]
	}
	if m.UUID != "" {
		l["uuid"] = m.UUID
	}
	if m.Serial != "" {
		l["serial"] = m.Serial
	}
	if m.Hostname != "" {
		l["hostname"] = m.Hostname
	}
	return l
}

func (s *Server) machine(w http.ResponseWriter, r *http.Request, u user) error {
	ctx := r.Context()
	m, _, err := s.cfg.Machines.Machine(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	if idx, ok := s.cfg.Machines.LookupMachineByID(m.ID); ok {
		m.Inventory = idx.Inventory
	}
	evs, err := s.cfg.Machines.Events(ctx, m.ID, store.EventFilter{Newest: true, Limit: 200})
	if err != nil {
		return err
	}
	// The page lists the timeline by time; the live stream follows it from
	// the last event written (the greatest id).
	var lastID int64
	for _, ev := range evs {
		lastID = max(lastID, ev.ID)
	}
	data := map[string]any{
		"User": u, "Title": "Machine " + m.ID, "M": m, "Inv": m.Inventory, "Events": evs, "LastID": lastID,
		"Boot": s.renderMachine(r, u, m), "States": states, "Msg": r.URL.Query().Get("msg"),
	}
	keys := make([]string, 0, len(m.Labels))
	for k := range m.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var lines []string
	for _, k := range keys {
		lines = append(lines, k+"="+m.Labels[k])
	}
	data["LabelText"] = strings.Join(lines, "\n")
	data["LabelKeys"] = keys
	if s.cfg.BMCs != nil {
		if ep, hasCred, err := s.cfg.BMCs.BMC(ctx, m.ID); err == nil {
			data["BMC"] = map[string]any{"Driver": ep.Driver, "Address": ep.Address, "Port": ep.Port, "HasCredentials": hasCred}
			data["Power"] = lastPower(evs)
		}
	}
	return s.render(w, "machine", data)
}

// lastPower is the power state the newest BMC event of evs reported, with
// its age: viewing a page does not query the BMC (a query is an action,
// recorded on the timeline).
func lastPower(evs []matchbox.Event) string {
	for i := len(evs) - 1; i >= 0; i-- {
		ev := evs[i]
		if p, ok := ev.Detail["power"].(string); ok && p != "" && strings.HasPrefix(ev.Type, "bmc.") {
			return p + " (" + ago(ev.At) + ")"
		}
	}
	return "not read yet"
}

// streamEvent is one timeline event as the live stream sends it.
type streamEvent struct {
	ID      int64          `json:"id"`
	Machine string         `json:"machine"`
	At      string         `json:"at"`
	Type    string         `json:"type"`
	Detail  map[string]any `json:"detail,omitempty"`
	State   string         `json:"state"`
}

// stream sends a machine's new timeline events as server-sent events until
// the client goes away, with the machine's state on each.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, u user) error {
	ctx := r.Context()
	id := r.PathValue("id")
	if _, _, err := s.cfg.Machines.Machine(ctx, id); err != nil {
		return err
	}
	return s.sse(w, r, func(after int64) ([]streamEvent, error) {
		evs, err := s.cfg.Machines.Events(ctx, id, store.EventFilter{AfterID: after, Limit: 100, Written: true})
		if err != nil || len(evs) == 0 {
			return nil, err
		}
		m, _, err := s.cfg.Machines.Machine(ctx, id)
		if err != nil {
			return nil, err
		}
		return streamEvents(evs, m.State), nil
	})
}

// fleetStream sends every machine's new events of the type filter.
func (s *Server) fleetStream(w http.ResponseWriter, r *http.Request, u user) error {
	typ := r.URL.Query().Get("type")
	return s.sse(w, r, func(after int64) ([]streamEvent, error) {
		evs, err := s.cfg.Machines.FleetEvents(r.Context(), store.EventFilter{AfterID: after, Type: typ, Limit: 100})
		return streamEvents(evs, ""), err
	})
}

func streamEvents(evs []matchbox.Event, state matchbox.MachineState) []streamEvent {
	out := make([]streamEvent, len(evs))
	for i, ev := range evs {
		out[i] = streamEvent{ID: ev.ID, Machine: ev.MachineID, At: ev.At.UTC().Format(time.RFC3339), Type: ev.Type, Detail: ev.Detail, State: string(state)}
	}
	return out
}

// sse streams what next returns after the request's Last-Event-ID (or its
// after parameter) as server-sent events, polling every PollInterval, until
// the client goes away.
func (s *Server) sse(w http.ResponseWriter, r *http.Request, next func(after int64) ([]streamEvent, error)) error {
	var after int64
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		fmt.Sscan(v, &after)
	} else if v := r.URL.Query().Get("after"); v != "" {
		fmt.Sscan(v, &after)
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		return &httpError{status: http.StatusInternalServerError, msg: "streaming is not supported"}
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": stream of events\n\n")
	fl.Flush()
	rc := http.NewResponseController(w)
	tick := time.NewTicker(s.cfg.PollInterval)
	defer tick.Stop()
	ctx := r.Context()
	for {
		evs, err := next(after)
		if err != nil {
			if ctx.Err() == nil {
				s.log.WarnContext(ctx, "console event stream ended", "err", err)
			}
			return nil
		}
		if len(evs) > 0 {
			for _, ev := range evs {
				b, _ := json.Marshal(ev)
				fmt.Fprintf(w, "id: %d\nevent: timeline\ndata: %s\n\n", ev.ID, b)
				after = ev.ID
			}
			rc.SetWriteDeadline(time.Now().Add(time.Minute))
			fl.Flush()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (s *Server) events(w http.ResponseWriter, r *http.Request, u user) error {
	typ := r.URL.Query().Get("type")
	evs, err := s.cfg.Machines.FleetEvents(r.Context(), store.EventFilter{Type: typ, Newest: true, Limit: 100})
	if err != nil {
		return err
	}
	var lastID int64
	if len(evs) > 0 {
		lastID = evs[len(evs)-1].ID
	}
	stream := Prefix + "events/stream?" + url.Values{"type": {typ}, "after": {fmt.Sprint(lastID)}}.Encode()
	return s.render(w, "events", map[string]any{"User": u, "Title": "Events", "Events": evs, "Type": typ, "Stream": stream})
}

// groupView is a group of the groups page with the machines it selects.
type groupView struct {
	G        *matchbox.Group
	Selector string
	Selected int
	// Sample holds a few selected machines' ids.
	Sample []string
	// Fleet links to the fleet filtered to the machines it selects.
	Fleet   string
	Dangles bool
	// Warnings are the snapshot's warnings that name the group or its
	// profile.
	Warnings []string
}

// groupWarnings returns the warnings of ws (the snapshot's) about group g:
// its dangling profile, its profile's dangling templates, and the ties it
// is part of.
func groupWarnings(ws []string, g *matchbox.Group) []string {
	id, prof := strconv.Quote(g.ID), strconv.Quote(g.Profile)
	var out []string
	for _, w := range ws {
		d := strings.TrimPrefix(w, "dangling reference: ")
		switch {
		case strings.HasPrefix(d, "group "+id+":"),
			strings.HasPrefix(d, "profile "+prof+":"),
			strings.HasPrefix(w, "groups "+id+" "),
			strings.HasPrefix(w, "groups ") && strings.Contains(w, "} and "+id+" {"):
			out = append(out, w)
		}
	}
	return out
}

func (s *Server) groups(w http.ResponseWriter, r *http.Request, u user) error {
	snap := s.cfg.Snapshot()
	gs := snap.Groups()
	warnings := snap.Warnings()
	views := make([]groupView, len(gs))
	index := map[string]int{}
	for i, g := range gs {
		var terms []string
		for k, v := range g.Selector {
			terms = append(terms, k+"="+v)
		}
		sort.Strings(terms)
		terms = append(terms, g.Facts...)
		_, hasProfile := snap.Profile(g.Profile)
		views[i] = groupView{G: g, Selector: strings.Join(terms, ", "), Dangles: !hasProfile,
			Fleet: Prefix + "?" + url.Values{"group": {g.ID}}.Encode(), Warnings: groupWarnings(warnings, g)}
		index[g.ID] = i
	}
	// Which group each machine selects now, over the whole fleet.
	after := ""
	for {
		ms, err := s.cfg.Machines.ListMachines(r.Context(), store.MachineFilter{After: after, Limit: 1000})
		if err != nil {
			return err
		}
		for _, m := range ms {
			if idx, ok := s.cfg.Machines.LookupMachineByID(m.ID); ok {
				m.Inventory = idx.Inventory
			}
			g := selectedGroup(snap, m)
			if g == "" {
				continue
			}
			v := &views[index[g]]
			v.Selected++
			if len(v.Sample) < 10 {
				v.Sample = append(v.Sample, m.ID)
			}
		}
		if len(ms) < 1000 {
			break
		}
		after = ms[len(ms)-1].ID
	}
	var profiles []*matchbox.Profile
	for _, g := range gs {
		if p, ok := snap.Profile(g.Profile); ok && !slices.Contains(profiles, p) {
			profiles = append(profiles, p)
		}
	}
	data := map[string]any{"User": u, "Title": "Groups and profiles", "Groups": views, "Profiles": profiles, "Warnings": warnings}
	if typed := r.URL.Query().Get("machine"); typed != "" {
		data["Chosen"] = typed
		q, err := s.machineQuery(r, typed)
		if err != nil {
			data["Boot"] = bootAnswer{Error: err.Error()}
		} else {
			data["Boot"] = s.renderBoot(r, u, q)
		}
	}
	return s.render(w, "groups", data)
}
