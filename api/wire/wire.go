// Package wire holds the JSON documents the matchbox REST API v1 exchanges:
// bundles, plans, lists and errors. The server (package api) and the Go
// client (package api/client) share them.
package wire

import "matchbox/matchbox"

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
	Machine  *matchbox.Machine  `json:"machine,omitempty"`
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

// StateChange is the body of PUT /api/v1/machines/{id}/state.
type StateChange struct {
	State matchbox.MachineState `json:"state"`
}

// Labels is the body of PUT /api/v1/machines/{id}/labels.
type Labels struct {
	Labels map[string]string `json:"labels"`
}
