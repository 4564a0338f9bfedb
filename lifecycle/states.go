package lifecycle

import (
	"slices"
	"strings"

	"matchbox/matchbox"
)

// Trigger names what moves a machine from one state to another.
type Trigger string

// Triggers of state transitions.
const (
	// TriggerEnroll: the machine's inventory matched a group by its facts.
	TriggerEnroll Trigger = "enroll"
	// TriggerProvision: provisioning was asked for (API, CLI or a group's
	// auto_provision) and the BMC set a one-time PXE boot.
	TriggerProvision Trigger = "provision"
	// TriggerBMCFailed: the BMC could not set the PXE boot or power-cycle.
	TriggerBMCFailed Trigger = "bmc_failed"
	// TriggerCallback: the installed system called its provisioned_url.
	TriggerCallback Trigger = "callback"
	// TriggerConfigFetched: the machine fetched the endpoint its profile
	// names in provisioned_by.
	TriggerConfigFetched Trigger = "config_fetched"
	// TriggerTimeout: the machine stayed provisioning past its profile's
	// provisioning_timeout.
	TriggerTimeout Trigger = "timeout"
	// TriggerOperator: an operator set the state through the API.
	TriggerOperator Trigger = "operator"
)

// Transition is one allowed move between machine states.
type Transition struct {
	From    []matchbox.MachineState
	To      matchbox.MachineState
	Trigger Trigger
	// Note says when it happens, for the documentation.
	Note string
}

// Transitions returns the lifecycle's state machine: every state change
// matchbox makes on its own, and the operator's. docs/lifecycle.md holds
// the same table (TransitionsMarkdown); a test keeps them equal.
func Transitions() []Transition {
	const (
		d  = matchbox.StateDiscovered
		r  = matchbox.StateReady
		pg = matchbox.StateProvisioning
		pd = matchbox.StateProvisioned
		f  = matchbox.StateFailed
	)
	return []Transition{
		{From: []matchbox.MachineState{d}, To: r, Trigger: TriggerEnroll, Note: "the discovery agent's inventory matched a group with selector or fact terms"},
		{From: []matchbox.MachineState{d, r, pg, pd, f}, To: pg, Trigger: TriggerProvision, Note: "provisioning asked for; the BMC sets a one-time PXE boot and power-cycles"},
		{From: []matchbox.MachineState{pg}, To: f, Trigger: TriggerBMCFailed, Note: "the BMC failed to set the PXE boot or to power-cycle"},
		{From: []matchbox.MachineState{pg, f}, To: pd, Trigger: TriggerCallback, Note: "the installed system called its one-time `{{.provisioned_url}}` (profiles' default)"},
		{From: []matchbox.MachineState{pg}, To: pd, Trigger: TriggerConfigFetched, Note: "the machine fetched the endpoint its profile names in `provisioned_by` (opt-in, for systems that cannot call back)"},
		{From: []matchbox.MachineState{pg}, To: f, Trigger: TriggerTimeout, Note: "still provisioning past the profile's `provisioning_timeout`; the reason goes on the timeline and in `matchbox_machine_failures_total`"},
		{From: []matchbox.MachineState{d, r, pg, pd, f}, To: "any", Trigger: TriggerOperator, Note: "`PUT /api/v1/machines/{id}/state`"},
	}
}

// From returns the states trigger moves a machine from, and the state it
// moves it to. It panics on a trigger the table lacks: a programming
// error.
func From(trigger Trigger) ([]matchbox.MachineState, matchbox.MachineState) {
	for _, t := range Transitions() {
		if t.Trigger == trigger {
			return t.From, t.To
		}
	}
	panic("lifecycle: no transition for trigger " + string(trigger))
}

// Allowed reports whether trigger may move a machine in state from.
func Allowed(trigger Trigger, from matchbox.MachineState) bool {
	states, _ := From(trigger)
	return slices.Contains(states, from)
}

// TransitionsMarkdown renders Transitions as a Markdown table.
func TransitionsMarkdown() string {
	var b strings.Builder
	b.WriteString("| from | to | trigger | when |\n| --- | --- | --- | --- |\n")
	for _, t := range Transitions() {
		from := make([]string, len(t.From))
		for i, s := range t.From {
			from[i] = "`" + string(s) + "`"
		}
		b.WriteString("| " + strings.Join(from, ", ") + " | `" + string(t.To) + "` | " + string(t.Trigger) + " | " + t.Note + " |\n")
	}
	return b.String()
}
