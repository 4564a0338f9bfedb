// Package wire holds the JSON documents the matchbox REST API v1 exchanges:
// bundles, plans, lists, errors, machines with their inventory, BMC
// settings and BMC actions. The server (package api) and the Go
// client (package api/client) share them.
package wire

import (
	"time"

	"matchbox/audit"
	"matchbox/hardware"
	"matchbox/matchbox"
)

// Bundle is the content of a directory laid out like the data directory:
// file paths (profiles/NAME.yaml, groups/NAME.json, ignition/NAME,
// generic/NAME) mapped to their text.
type Bundle struct {
	// Files maps a slash-separated relative path to the file's content.
	Files map[string]string `json:"files"`
}

// PlanRequest is the body of POST /api/v1/plan and POST /api/v1/apply.
type PlanRequest struct {
	Bundle
	// Prune deletes catalog objects that the bundle does not hold.
	Prune bool `json:"prune,omitempty"`
	// PlanID, on apply, is the plan_id of the plan the caller reviewed;
	// the apply is refused (412, plan_stale) when the plan it would make
	// now differs. Empty applies whatever the current plan is.
	PlanID string `json:"plan_id,omitempty"`
}

// Plan actions.
const (
	ActionCreate    = "create"
	ActionUpdate    = "update"
	ActionDelete    = "delete"
	ActionUnchanged = "unchanged"
)

// Plan lists what an apply of a bundle does to the catalog.
type Plan struct {
	// PlanID identifies the plan: a digest of the bundle, the prune flag
	// and the version of every catalog object the plan was made against.
	PlanID string `json:"plan_id"`
	// Changes lists every object of the bundle (and, with prune, every
	// object to delete), ordered by kind then id.
	Changes []Change `json:"changes"`
	// Summary counts the changes by action.
	Summary Summary `json:"summary"`
	// Warnings are accepted oddities: unknown fields, skipped files, groups
	// that can tie.
	Warnings []string `json:"warnings,omitempty"`
	// Applied is true in the answer of a successful apply.
	Applied bool `json:"applied"`
}

// HasChanges reports whether the plan creates, updates or deletes anything.
func (p *Plan) HasChanges() bool {
	return p.Summary.Create+p.Summary.Update+p.Summary.Delete > 0
}

// Summary counts a plan's changes.
type Summary struct {
	Create    int `json:"create"`
	Update    int `json:"update"`
	Delete    int `json:"delete"`
	Unchanged int `json:"unchanged"`
}

// Change is what a plan does to one object.
type Change struct {
	// Action is create, update, delete or unchanged.
	Action string `json:"action"`
	// Kind is profile, group, ignition or generic.
	Kind string `json:"kind"`
	// ID is the profile or group id, or the template name.
	ID string `json:"id"`
	// File is the bundle file that holds the object (empty for deletes).
	File string `json:"file,omitempty"`
	// Version is the stored version the plan was made against (0 for
	// creates).
	Version int64 `json:"version,omitempty"`
	// Diff lists the changed fields of an update.
	Diff []FieldChange `json:"diff,omitempty"`
	// Reason says why a delete deletes: what the object is (a shipped
	// default, imported from a data-directory file, written through the
	// API) and that the bundle does not hold it.
	Reason string `json:"reason,omitempty"`
}

// FieldChange is one changed field: its path (selector.os, boot.args[1],
// content) and the old and new values (absent when the field is not set).
type FieldChange struct {
	Path string `json:"path"`
	Old  any    `json:"old,omitempty"`
	New  any    `json:"new,omitempty"`
}

// Error is the body of every error answer.
type Error struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail describes what failed.
type ErrorDetail struct {
	// Code is a stable, machine readable code (not_found, version_conflict).
	Code string `json:"code"`
	// Message says what failed, naming the field or file.
	Message string `json:"message"`
	// Field is the offending field or bundle file, when there is one.
	Field string `json:"field,omitempty"`
	// Problems lists every problem of a refused catalog or bundle.
	Problems []string `json:"problems,omitempty"`
}

// Item is one element of a list answer: an object with its version and
// origin. Exactly one of Profile, Group, Template and Machine is set.
type Item struct {
	ID string `json:"id"`
	// Version is the object's version, its ETag (0 when not known, as for
	// machines in lists).
	Version int64 `json:"version,omitempty"`
	// Source is the data-directory file the object was imported from, or
	// empty when it was written through the API.
	Source   string             `json:"source,omitempty"`
	Profile  *matchbox.Profile  `json:"profile,omitempty"`
	Group    *matchbox.Group    `json:"group,omitempty"`
	Template *matchbox.Template `json:"template,omitempty"`
	Machine  *Machine           `json:"machine,omitempty"`
	Lease    *Lease             `json:"lease,omitempty"`
	Instance *Instance          `json:"instance,omitempty"`
}

// Instance is a running matchbox instance sharing the store.
type Instance struct {
	ID        string   `json:"id"`
	Addresses []string `json:"addresses"`
	Version   string   `json:"version"`
	// DHCPRanges are the ranges its DHCP server hands out.
	DHCPRanges []string `json:"dhcp_ranges,omitempty"`
	// StartedAt is when it registered, RFC 3339 in UTC.
	StartedAt string `json:"started_at"`
}

// Lease is a stored DHCP lease (its list item's id is its address).
type Lease struct {
	IP       string `json:"ip"`
	MAC      string `json:"mac"`
	Hostname string `json:"hostname,omitempty"`
	// Expires is the lease's end, RFC 3339 in UTC.
	Expires string `json:"expires"`
	// State is bound, released or declined.
	State string `json:"state"`
}

// List is the answer of a list request.
type List struct {
	Items []Item `json:"items"`
	// Next is the `after` value that fetches the next page; empty on the
	// last page.
	Next string `json:"next,omitempty"`
}

// EventList is a page of a machine's timeline.
type EventList struct {
	Events []matchbox.Event `json:"events"`
	// Next is the `after` value that fetches the next page; 0 on the last
	// page.
	Next int64 `json:"next,omitempty"`
}

// AuditList is a page of the audit trail, oldest first.
type AuditList struct {
	Records []audit.Record `json:"records"`
	// Next is the `after` value that fetches the next page; 0 on the last
	// page.
	Next int64 `json:"next,omitempty"`
}

// StateChange is the body of PUT /api/v1/machines/{id}/state.
type StateChange struct {
	State matchbox.MachineState `json:"state"`
}

// Labels is the body of PUT /api/v1/machines/{id}/labels.
type Labels struct {
	Labels map[string]string `json:"labels"`
}

// Machine is a machine as the API answers it: the stored machine and a
// read-only summary of its last reported inventory.
type Machine struct {
	matchbox.Machine `yaml:",inline"`
	// InventorySummary summarises the last inventory the discovery agent
	// reported; absent when none was reported. Read-only: ignored when a
	// machine is written.
	InventorySummary *InventorySummary `json:"inventory_summary,omitempty" yaml:"inventory_summary,omitempty"`
}

// InventorySummary is the gist of a machine's hardware inventory.
type InventorySummary struct {
	Vendor      string `json:"vendor,omitempty" yaml:"vendor,omitempty"`
	Product     string `json:"product,omitempty" yaml:"product,omitempty"`
	Arch        string `json:"arch,omitempty" yaml:"arch,omitempty"`
	CPUModel    string `json:"cpu_model,omitempty" yaml:"cpu_model,omitempty"`
	CPUCores    int    `json:"cpu_cores" yaml:"cpu_cores"`
	CPUThreads  int    `json:"cpu_threads" yaml:"cpu_threads"`
	MemoryBytes uint64 `json:"memory_bytes" yaml:"memory_bytes"`
	// Disks counts the physical disks; DiskBytes is their total size.
	Disks     int    `json:"disks" yaml:"disks"`
	DiskBytes uint64 `json:"disk_bytes" yaml:"disk_bytes"`
	// NICs counts the physical network interfaces.
	NICs     int    `json:"nics" yaml:"nics"`
	BootMode string `json:"boot_mode,omitempty" yaml:"boot_mode,omitempty"`
	// CollectedAt is when the agent collected the inventory.
	CollectedAt time.Time `json:"collected_at,omitzero" yaml:"collected_at,omitempty"`
}

// Summarize returns the summary of inv.
func Summarize(inv *hardware.Inventory) *InventorySummary {
	if inv == nil {
		return nil
	}
	s := &InventorySummary{
		Vendor: inv.System.Vendor, Product: inv.System.Product, Arch: inv.CPU.Arch, CPUModel: inv.CPU.Model,
		CPUCores: inv.CPU.Cores, CPUThreads: inv.CPU.Threads, MemoryBytes: inv.Memory.Bytes,
		Disks: len(inv.Disks), NICs: len(inv.NICs), BootMode: inv.System.BootMode, CollectedAt: inv.CollectedAt,
	}
	for _, d := range inv.Disks {
		s.DiskBytes += d.SizeBytes
	}
	return s
}

// InventoryReport is one stored inventory of a machine.
type InventoryReport struct {
	// Seq orders a machine's reports.
	Seq int64 `json:"seq"`
	// ReportedAt is when the server stored the report.
	ReportedAt time.Time          `json:"reported_at"`
	Inventory  hardware.Inventory `json:"inventory"`
}

// Inventory is the answer of GET /api/v1/machines/{id}/inventory.
type Inventory struct {
	// Current is the last reported inventory, null when none was reported.
	Current *hardware.Inventory `json:"current"`
	// History lists the reports that changed the facts, oldest first.
	History []InventoryReport `json:"history"`
}

// BMC is a machine's BMC: the body of PUT /api/v1/machines/{id}/bmc and
// the answer of it and of GET. Username and Password are write-only: no
// answer ever carries them. HasCredentials is read-only: every answer
// carries it, a request may not.
type BMC struct {
	// Address is the BMC's host name or IP address.
	Address string `json:"address" yaml:"address"`
	// Port is the BMC's port; 0 is the driver's default (623, 443).
	Port int `json:"port,omitempty" yaml:"port,omitempty"`
	// Driver is "ipmi", "redfish" or empty to try the server's driver order.
	Driver string `json:"driver,omitempty" yaml:"driver,omitempty"`
	// CipherSuite is the IPMI cipher suite ("3", "17").
	CipherSuite string `json:"cipher_suite,omitempty" yaml:"cipher_suite,omitempty"`
	// Insecure skips verification of the Redfish TLS certificate.
	Insecure bool   `json:"insecure,omitempty" yaml:"insecure,omitempty"`
	Username string `json:"username,omitempty" yaml:"username,omitempty"`
	Password string `json:"password,omitempty" yaml:"password,omitempty"`
	// HasCredentials tells whether credentials are stored (sealed); set
	// in answers only.
	HasCredentials *bool `json:"has_credentials,omitempty" yaml:"has_credentials,omitempty"`
}

// Credentials reports whether an answer says credentials are stored.
func (b *BMC) Credentials() bool { return b != nil && b.HasCredentials != nil && *b.HasCredentials }

// PowerRequest is the body of POST /api/v1/machines/{id}/power.
type PowerRequest struct {
	// Action is on, off, cycle, reset, soft or status.
	Action string `json:"action" yaml:"action"`
}

// PowerStatus is the answer of a power request with action status.
type PowerStatus struct {
	// Power is on, off or unknown.
	Power string `json:"power" yaml:"power"`
}

// BootDeviceRequest is the body of POST /api/v1/machines/{id}/bootdevice.
type BootDeviceRequest struct {
	// Device is pxe or disk.
	Device string `json:"device" yaml:"device"`
	// Persistent keeps the override for every later boot, not the next one
	// only.
	Persistent bool `json:"persistent,omitempty" yaml:"persistent,omitempty"`
	// EFI requests UEFI boot rather than legacy BIOS boot.
	EFI bool `json:"efi,omitempty" yaml:"efi,omitempty"`
}

// BMCResult records what a BMC action did.
type BMCResult struct {
	// Endpoint is the BMC, as driver://address[:port], without credentials.
	Endpoint string `json:"endpoint" yaml:"endpoint"`
	// Operation is power, boot-device or provision.
	Operation string `json:"operation" yaml:"operation"`
	// Requested is the requested action or device (cycle, pxe).
	Requested string `json:"requested,omitempty" yaml:"requested,omitempty"`
	// Steps lists the commands sent to the BMC, in order.
	Steps []string `json:"steps,omitempty" yaml:"steps,omitempty"`
	// Driver is the protocol that answered: ipmi or redfish.
	Driver string `json:"driver,omitempty" yaml:"driver,omitempty"`
	// Provider is the bmclib provider that answered (ipmitool, gofish).
	Provider string `json:"provider,omitempty" yaml:"provider,omitempty"`
	// Attempts counts the sessions opened, retries included.
	Attempts int `json:"attempts" yaml:"attempts"`
	// Started is when the action began; DurationMS its wall time.
	Started    time.Time `json:"started" yaml:"started"`
	DurationMS int64     `json:"duration_ms" yaml:"duration_ms"`
	// PowerState is the power state read back last: on, off or unknown.
	PowerState string `json:"power_state" yaml:"power_state"`
	// Settled is true when PowerState is the state the action leads to.
	Settled bool `json:"settled" yaml:"settled"`
	// BootDevice is the boot override read back (Redfish only).
	BootDevice string `json:"boot_device,omitempty" yaml:"boot_device,omitempty"`
	// BootVerified is true when BootDevice was read back and matches.
	BootVerified bool `json:"boot_verified" yaml:"boot_verified"`
}

// ProvisionRequest is the body of POST /api/v1/machines/provision: exactly
// one of Selector (every machine whose stored labels include all of it) and
// IDs.
type ProvisionRequest struct {
	Selector map[string]string `json:"selector,omitempty" yaml:"selector,omitempty"`
	IDs      []string          `json:"ids,omitempty" yaml:"ids,omitempty"`
}

// ProvisionOutcome is the outcome of provisioning one machine.
type ProvisionOutcome struct {
	ID string `json:"id"`
	// OK is true when the machine was sent to provisioning.
	OK bool `json:"ok"`
	// Result is what the BMC did, absent when nothing was sent to it.
	Result *BMCResult `json:"result,omitempty"`
	// Error says why it failed, with the code a single-machine request
	// would have answered.
	Error *ErrorDetail `json:"error,omitempty"`
}

// ProvisionAnswer is the answer of POST /api/v1/machines/provision.
type ProvisionAnswer struct {
	// Outcomes holds one entry per selected machine: in the order of the
	// request's ids, or ordered by id for a selector.
	Outcomes []ProvisionOutcome `json:"outcomes"`
	// Succeeded and Failed count the outcomes.
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
}

// Rendered is the answer of GET /api/v1/render: what a machine would get
// from a boot endpoint, and which group and profile chose it. Rendering
// records nothing and moves no state.
type Rendered struct {
	// Endpoint is the boot endpoint rendered (ipxe, grub, ignition,
	// generic, metadata).
	Endpoint string `json:"endpoint" yaml:"endpoint"`
	// Status is the HTTP status the endpoint would answer.
	Status int `json:"status" yaml:"status"`
	// ContentType is the answer's content type.
	ContentType string `json:"content_type,omitempty" yaml:"content_type,omitempty"`
	// Group and Profile are the ids of the group and profile selected,
	// empty when none matched.
	Group   string `json:"group,omitempty" yaml:"group,omitempty"`
	Profile string `json:"profile,omitempty" yaml:"profile,omitempty"`
	// Body is the answer.
	Body string `json:"body" yaml:"body"`
}
