// Package audit is the model of the audit trail: who changed what, when,
// and from which version to which. A change's actor travels in the request
// context (WithActor) from where it is known (the API's authentication, a
// data-directory import, the lifecycle's automatic transitions) down to
// the store, which writes the record in the same transaction as the change.
package audit

import (
	"context"
	"time"

	"matchbox/logclip"
)

// Actors that are not an API client.
const (
	// ActorDataDir is the data-directory import at start.
	ActorDataDir = "data-dir"
	// ActorLifecycle is an automatic transition: a boot request that
	// enrolls a machine, a completion callback, a provisioning deadline.
	ActorLifecycle = "lifecycle"
	// ActorCLI is a loopback API client when no token file is configured,
	// and matchbox's own commands run locally.
	ActorCLI = "cli"
	// ActorConsole is the web console acting for a user it authenticated
	// when it names no other actor.
	ActorConsole = "console"
	// ActorTokenFile is a reload of the API token file.
	ActorTokenFile = "token-file"
	// ActorUnknown is the actor of a change whose context names none.
	ActorUnknown = "unknown"
)

// Actions a record names.
const (
	ActionCreate = "create"
	ActionUpdate = "update"
	ActionDelete = "delete"
	// ActionState is a machine's state change (detail: from -> to).
	ActionState = "state"
	// ActionBMCSet and ActionBMCDelete change a machine's BMC record.
	ActionBMCSet    = "bmc-set"
	ActionBMCDelete = "bmc-delete"
	// ActionTokenAdd, ActionTokenRemove and ActionTokenRole are token
	// file reloads that add a token, remove one or change its role.
	ActionTokenAdd    = "token-add"
	ActionTokenRemove = "token-remove"
	ActionTokenRole   = "token-role"
)

// KindMachine and KindToken are the object kinds of records that are not
// catalog objects (whose kinds are matchbox.Kind values).
const (
	KindMachine = "machine"
	KindToken   = "token"
)

// Record is one change.
type Record struct {
	// ID orders records; it is assigned by the store.
	ID int64 `json:"seq" yaml:"seq"`
	// At is when the change was stored.
	At time.Time `json:"at" yaml:"at"`
	// Actor made the change: an API token's name, a client certificate's
	// subject, or one of the Actor constants.
	Actor string `json:"actor" yaml:"actor"`
	// Action is what was done (one of the Action constants).
	Action string `json:"action" yaml:"action"`
	// Kind and Object name what changed (profile, group, ignition,
	// generic, machine, token; its id).
	Kind   string `json:"kind" yaml:"kind"`
	Object string `json:"id" yaml:"id"`
	// VersionBefore and VersionAfter are the object's versions (0: it did
	// not exist before, or does not exist after).
	VersionBefore int64 `json:"version_before" yaml:"version_before"`
	VersionAfter  int64 `json:"version_after" yaml:"version_after"`
	// Detail says more, in a few words (a state change, a role).
	Detail string `json:"detail,omitempty" yaml:"detail,omitempty"`
}

// Filter selects records. Zero fields select everything.
type Filter struct {
	// Kind and Object select one object's records (Object only with
	// Kind).
	Kind, Object string
	// Actor selects one actor's records.
	Actor string
	// Since selects records at or after a time.
	Since time.Time
	// After selects records whose ID is greater (a page's cursor).
	After int64
	// Limit caps how many records are returned (0: no cap).
	Limit int
}

// Matches reports whether f selects r; stores that filter in memory use it.
func (f Filter) Matches(r Record) bool {
	return (f.Kind == "" || r.Kind == f.Kind) &&
		(f.Object == "" || r.Object == f.Object) &&
		(f.Actor == "" || r.Actor == f.Actor) &&
		(f.Since.IsZero() || !r.At.Before(f.Since)) &&
		r.ID > f.After
}

type actorKey struct{}

// WithActor returns ctx naming actor as the author of the changes made
// with it.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// WithDefaultActor returns ctx naming actor unless ctx names one already.
func WithDefaultActor(ctx context.Context, actor string) context.Context {
	if _, ok := ActorOf(ctx); ok {
		return ctx
	}
	return WithActor(ctx, actor)
}

// ActorOf returns the actor ctx names, and whether it names one.
func ActorOf(ctx context.Context) (string, bool) {
	a, ok := ctx.Value(actorKey{}).(string)
	return a, ok && a != ""
}

// Actor returns the actor ctx names, or ActorUnknown.
func Actor(ctx context.Context) string {
	if a, ok := ActorOf(ctx); ok {
		return a
	}
	return ActorUnknown
}

// LogAttrs are a record's attributes for its log line. The strings a
// client may have chosen (the actor's name, the object's kind and id, the
// detail naming changed values) are each cut by logclip.String, so that a
// 10 KB id costs a log line of bounded size whatever handler writes it.
func (r Record) LogAttrs() []any {
	attrs := []any{"actor", logclip.String(r.Actor), "action", r.Action, "kind", logclip.String(r.Kind), "id", logclip.String(r.Object), "version_before", r.VersionBefore, "version_after", r.VersionAfter}
	if r.Detail != "" {
		attrs = append(attrs, "detail", logclip.String(r.Detail))
	}
	return attrs
}
