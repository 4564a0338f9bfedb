// Package matchbox holds the core model of the provisioning service: profiles,
// groups, machines and their selectors, and the immutable snapshot that request
// handlers read to decide what each machine gets.
package matchbox

import (
	"fmt"
	"matchbox/hardware"
	"regexp"
	"time"
)

// Boot is the network boot part of a profile: the kernel, the initramfs
// images and the kernel command line.
type Boot struct {
	// Kernel is the URL or path of the kernel image.
	Kernel string `json:"kernel,omitempty" yaml:"kernel,omitempty"`
	// Initrd lists the URLs or paths of the initramfs images, in load order.
	Initrd []string `json:"initrd,omitempty" yaml:"initrd,omitempty"`
	// Args are the kernel arguments. Each argument may be a Go template
	// (`{{.mac}}`); arguments without template actions are passed unchanged.
	Args []string `json:"args,omitempty" yaml:"args,omitempty"`
}

// Profile names what a machine boots: its kernel, initrd and arguments and the
// first-boot configs (Ignition or Butane, and a generic template).
type Profile struct {
	// ID identifies the profile; groups refer to it.
	ID string `json:"id" yaml:"id"`
	// Name is a human readable name.
	Name string `json:"name,omitempty" yaml:"name,omitempty"`
	// Boot is the network boot configuration.
	Boot Boot `json:"boot" yaml:"boot"`
	// IgnitionID names an Ignition JSON config (.ign, .ignition, .json) or a
	// Butane YAML template (.yaml, .yml, .bu) served at /ignition.
	IgnitionID string `json:"ignition_id,omitempty" yaml:"ignition_id,omitempty"`
	// GenericID names a generic template served at /generic.
	GenericID string `json:"generic_id,omitempty" yaml:"generic_id,omitempty"`
	// ProvisionedBy says what marks a provisioning machine provisioned:
	// "" or "callback" (the default), the installed system's call of its
	// one-time {{.provisioned_url}}; or a boot endpoint ("ignition",
	// "generic", "metadata", "ipxe", "grub") whose successful fetch
	// completes provisioning, for systems that cannot call back.
	ProvisionedBy string `json:"provisioned_by,omitempty" yaml:"provisioned_by,omitempty"`
	// ProvisioningTimeout is how long a machine may stay provisioning
	// (a Go duration, "30m") before it is marked failed; "" waits forever.
	ProvisioningTimeout string `json:"provisioning_timeout,omitempty" yaml:"provisioning_timeout,omitempty"`
	// Shipped marks a profile matchbox ships as a default (discovery):
	// plans that would delete it say so.
	Shipped bool `json:"shipped,omitempty" yaml:"shipped,omitempty"`
}

// ProvisionedByCallback is Profile.ProvisionedBy's default: the installed
// system calls its provisioned_url.
const ProvisionedByCallback = "callback"

// CompletionEvent returns the boot event type whose successful answer
// completes provisioning under this profile, "" when only the callback
// does.
func (p *Profile) CompletionEvent() string {
	switch p.ProvisionedBy {
	case "", ProvisionedByCallback:
		return ""
	}
	return "http." + p.ProvisionedBy
}

// Deadline returns the profile's provisioning timeout, 0 for none.
// Validate has checked it.
func (p *Profile) Deadline() time.Duration {
	d, _ := time.ParseDuration(p.ProvisioningTimeout)
	return d
}

// ValidateLifecycle checks provisioned_by and provisioning_timeout,
// naming the field.
func (p *Profile) ValidateLifecycle() error {
	switch p.ProvisionedBy {
	case "", ProvisionedByCallback, "ignition", "generic", "metadata", "ipxe", "grub":
	default:
		return fmt.Errorf("profile %q: provisioned_by %q: want callback, ignition, generic, metadata, ipxe or grub", p.ID, p.ProvisionedBy)
	}
	if p.ProvisioningTimeout != "" {
		d, err := time.ParseDuration(p.ProvisioningTimeout)
		if err != nil || d <= 0 {
			return fmt.Errorf("profile %q: provisioning_timeout %q: want a positive duration such as 30m", p.ID, p.ProvisioningTimeout)
		}
	}
	return nil
}

// Group binds machines, chosen by a selector, to a profile and metadata.
type Group struct {
	// ID identifies the group.
	ID string `json:"id" yaml:"id"`
	// Name is a human readable name.
	Name string `json:"name,omitempty" yaml:"name,omitempty"`
	// Profile is the ID of the profile machines of this group boot.
	Profile string `json:"profile" yaml:"profile"`
	// Selector holds label terms: every key must be present in a request's
	// labels with the same value. An empty selector makes the default group.
	Selector map[string]string `json:"selector,omitempty" yaml:"selector,omitempty"`
	// Facts holds hardware-fact terms (`memory.bytes >= 64GiB`) evaluated
	// against the inventory the machine's agent reported.
	Facts []string `json:"facts,omitempty" yaml:"facts,omitempty"`
	// Priority orders groups before specificity: higher wins.
	Priority int `json:"priority,omitempty" yaml:"priority,omitempty"`
	// Metadata is free-form data handed to templates.
	Metadata map[string]any `json:"metadata,omitempty" yaml:"metadata,omitempty"`
	// AutoProvision asks for machines that enroll into this group by their
	// hardware facts to be provisioned at once.
	AutoProvision bool `json:"auto_provision,omitempty" yaml:"auto_provision,omitempty"`
	// Shipped marks a group matchbox ships as a default (default): plans
	// that would delete it say so.
	Shipped bool `json:"shipped,omitempty" yaml:"shipped,omitempty"`
}

// Kind names a kind of catalog object: profile, group, or one of the
// template kinds. The store, the API and the data directory all use it.
type Kind string

const (
	// KindProfile is a Profile.
	KindProfile Kind = "profile"
	// KindGroup is a Group.
	KindGroup Kind = "group"
	// TemplateIgnition is an Ignition JSON config or a Butane YAML template.
	TemplateIgnition Kind = "ignition"
	// TemplateGeneric is a generic text template.
	TemplateGeneric Kind = "generic"
)

// TemplateKind is the Kind of a template, TemplateIgnition or
// TemplateGeneric: which endpoint it serves.
type TemplateKind = Kind

// Kinds returns every catalog object kind, in the order a data directory
// is read: profiles, groups, then templates.
func Kinds() []Kind { return []Kind{KindProfile, KindGroup, TemplateIgnition, TemplateGeneric} }

// Template is a named first-boot config or generic template.
type Template struct {
	// Kind is ignition or generic.
	Kind TemplateKind `json:"kind" yaml:"kind"`
	// Name is the file name the profile refers to (`etcd.yaml`).
	Name string `json:"name" yaml:"name"`
	// Content is the template text.
	Content string `json:"content" yaml:"content"`
}

// ShownGroup is the group to show for a machine: the one it was last
// served, else the one it enrolled into ("" for neither).
func (m *Machine) ShownGroup() string {
	if m.ServedGroup != "" {
		return m.ServedGroup
	}
	return m.Group
}

// MachineState is a step of a machine's lifecycle.
type MachineState string

// Machine lifecycle states.
const (
	StateDiscovered   MachineState = "discovered"
	StateReady        MachineState = "ready"
	StateProvisioning MachineState = "provisioning"
	StateProvisioned  MachineState = "provisioned"
	StateFailed       MachineState = "failed"
)

// Valid reports whether s is a known state.
func (s MachineState) Valid() bool {
	switch s {
	case StateDiscovered, StateReady, StateProvisioning, StateProvisioned, StateFailed:
		return true
	}
	return false
}

// Machine is a server matchbox knows of.
type Machine struct {
	// ID identifies the machine.
	ID string `json:"id" yaml:"id"`
	// MACs are the machine's NIC addresses, normalised (aa:bb:cc:dd:ee:ff).
	MACs []string `json:"macs,omitempty" yaml:"macs,omitempty"`
	// UUID is the SMBIOS system UUID.
	UUID string `json:"uuid,omitempty" yaml:"uuid,omitempty"`
	// Serial is the system serial number.
	Serial string `json:"serial,omitempty" yaml:"serial,omitempty"`
	// Hostname is the machine's host name.
	Hostname string `json:"hostname,omitempty" yaml:"hostname,omitempty"`
	// IP is a reserved IPv4 address handed out by authoritative DHCP.
	IP string `json:"ip,omitempty" yaml:"ip,omitempty"`
	// Labels are extra labels matched by group selectors.
	Labels map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	// State is the lifecycle state.
	State MachineState `json:"state" yaml:"state"`
	// Group is the group the machine enrolled into, if any.
	Group string `json:"group,omitempty" yaml:"group,omitempty"`
	// ServedGroup and ServedProfile are the group and profile the boot
	// endpoints last answered the machine's request with (a 2xx answer
	// naming them); render and previews leave them alone.
	ServedGroup   string `json:"served_group,omitempty" yaml:"served_group,omitempty"`
	ServedProfile string `json:"served_profile,omitempty" yaml:"served_profile,omitempty"`
	// PXEDisabled stops DHCP from offering a boot file to the machine.
	PXEDisabled bool `json:"pxe_disabled,omitempty" yaml:"pxe_disabled,omitempty"`
	// CreatedAt is when the machine was first seen or declared.
	CreatedAt time.Time `json:"created_at" yaml:"created_at"`
	// UpdatedAt is when the record last changed.
	UpdatedAt time.Time `json:"updated_at" yaml:"updated_at"`
	// Inventory is the machine's last reported hardware, nil before its
	// first report. It is not part of the machine's record on the wire
	// (the API serves it apart, and a summary of it).
	Inventory *hardware.Inventory `json:"-" yaml:"-"`
}

// Event is one entry of a machine's boot timeline.
type Event struct {
	// ID orders events; assigned by the store.
	ID int64 `json:"id"`
	// MachineID is the machine the event belongs to.
	MachineID string `json:"machine_id"`
	// At is when the event happened.
	At time.Time `json:"at"`
	// Type names the event (`dhcp.ack`, `tftp.get`, `http.ipxe`, ...).
	Type string `json:"type"`
	// Detail carries event specific data.
	Detail map[string]any `json:"detail,omitempty"`
}

// Event types recorded by the boot endpoints.
const (
	EventBootScript = "http.boot_ipxe"
	EventIPXE       = "http.ipxe"
	EventGRUB       = "http.grub"
	EventIgnition   = "http.ignition"
	EventGeneric    = "http.generic"
	EventMetadata   = "http.metadata"
	EventAsset      = "http.asset"
)

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidateID checks that id can name a profile, group or machine: 1 to 128
// letters, digits, dots, dashes and underscores, not starting with a symbol.
func ValidateID(kind, id string) error {
	if id == "" {
		return fmt.Errorf("%s id is required", kind)
	}
	if !idPattern.MatchString(id) {
		return fmt.Errorf("%s id %q is invalid: use 1-128 letters, digits, '.', '-' or '_', starting with a letter or digit", kind, id)
	}
	return nil
}

var templateNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$`)

// ValidateTemplateName checks a template name (a file name without folders).
func ValidateTemplateName(name string) error {
	if !templateNamePattern.MatchString(name) {
		return fmt.Errorf("template name %q is invalid: use a file name of letters, digits, '.', '-' or '_'", name)
	}
	return nil
}
