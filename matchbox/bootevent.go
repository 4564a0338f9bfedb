package matchbox

import "time"

// BootEvent is an event that the boot services (DHCP, TFTP, the HTTP boot
// endpoints) and the lifecycle put on a machine's timeline. The machine is
// named by MachineID or, when that is empty, by MAC (and UUID, when the
// client sent one). Whether an event may name a MAC that no machine has yet
// is the store's decision, made explicit by the operation that writes it
// (see store.Store.DiscoverAndAppendEvents).
type BootEvent struct {
	// MachineID names the machine; empty to name it by MAC.
	MachineID string
	// MAC is the client's normalised MAC address.
	MAC string
	// UUID is the SMBIOS UUID the client reported, if any.
	UUID string
	// Type names the event (`dhcp.ack`, `tftp.read`, `http.ipxe`, ...).
	Type string
	// At is when it happened (zero: when it is written).
	At time.Time
	// Detail carries event specific data.
	Detail map[string]any
	// Outcome is the answer of a boot endpoint, when the event is a
	// request to one; it is stored in the detail (status, group, profile,
	// error). A struct rather than map entries keeps the request path free
	// of allocations.
	Outcome Outcome
}

// Outcome is what a boot endpoint answered.
type Outcome struct {
	// Status is the HTTP status code.
	Status int
	// Group and Profile are the selected group and its profile, if any.
	Group, Profile string
	// Error says why the request failed, if it did.
	Error string
}

// MergedDetail returns the event's detail with its outcome merged in
// (keys status, group, profile, error), as stored on the timeline. It
// returns Detail itself when the outcome is empty; otherwise a new map.
func (ev *BootEvent) MergedDetail() map[string]any {
	o := ev.Outcome
	if o == (Outcome{}) {
		return ev.Detail
	}
	d := make(map[string]any, len(ev.Detail)+4)
	for k, v := range ev.Detail {
		d[k] = v
	}
	if o.Status != 0 {
		d["status"] = o.Status
	}
	if o.Group != "" {
		d["group"] = o.Group
	}
	if o.Profile != "" {
		d["profile"] = o.Profile
	}
	if o.Error != "" {
		d["error"] = o.Error
	}
	return d
}

// LastServed returns, per machine, the outcome of the last of evs (whose
// machines are ids, index by index) that a boot endpoint answered with a
// 2xx naming a group: what the machine was last served.
func LastServed(evs []BootEvent, ids []string) map[string]Outcome {
	var out map[string]Outcome
	for i := range evs {
		o := evs[i].Outcome
		if o.Group == "" || o.Status < 200 || o.Status > 299 {
			continue
		}
		if out == nil {
			out = map[string]Outcome{}
		}
		out[ids[i]] = o
	}
	return out
}
