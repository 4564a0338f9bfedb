package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"matchbox/api/wire"
	"matchbox/audit"
	"matchbox/matchbox"
)

// AuditLog is the audit trail as the API reads it. *store.Store implements
// it (store.AuditStore).
type AuditLog interface {
	// Audit returns the records f selects, oldest first.
	Audit(ctx context.Context, f audit.Filter) ([]audit.Record, error)
}

// auditKinds are the kinds an object filter may name.
var auditKinds = []string{
	string(matchbox.KindProfile), string(matchbox.KindGroup), string(matchbox.TemplateIgnition),
	string(matchbox.TemplateGeneric), audit.KindMachine, audit.KindToken,
}

// ParseSince reads a since value: an RFC 3339 time, or a duration (1h,
// 30m) back from now.
func ParseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			d = -d
		}
		return now.Add(-d), nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

// listAudit answers GET /api/v1/audit: the audit trail, oldest first,
// filtered by object (kind or kind/id), actor and since (an RFC 3339 time
// or a duration back from now), paged by limit and after (a record's seq).
func (a *API) listAudit(w http.ResponseWriter, r *http.Request) error {
	if a.cfg.Audit == nil {
		return errorf(http.StatusNotImplemented, CodeNotConfigured, "", "this server keeps no audit trail")
	}
	limit, afterText, err := page(r, 500, 1000)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := audit.Filter{Actor: q.Get("actor"), Limit: limit + 1}
	if afterText != "" {
		if f.After, err = strconv.ParseInt(afterText, 10, 64); err != nil || f.After < 0 {
			return errorf(http.StatusBadRequest, CodeBadRequest, "after", "after %q: want a record's seq", afterText)
		}
	}
	if obj := q.Get("object"); obj != "" {
		kind, id, _ := strings.Cut(obj, "/")
		known := false
		for _, k := range auditKinds {
			known = known || k == kind
		}
		if !known {
			return errorf(http.StatusBadRequest, CodeBadRequest, "object", "object %q: want <kind> or <kind>/<id>, kind one of %s", obj, strings.Join(auditKinds, ", "))
		}
		f.Kind, f.Object = kind, id
	}
	if s := q.Get("since"); s != "" {
		if f.Since, err = ParseSince(s, time.Now()); err != nil {
			return errorf(http.StatusBadRequest, CodeBadRequest, "since", "since %q: want an RFC 3339 time or a duration (1h, 30m)", s)
		}
	}
	recs, err := a.cfg.Audit.Audit(r.Context(), f)
	if err != nil {
		return err
	}
	out := wire.AuditList{Records: recs}
	if len(recs) > limit {
		out.Records = recs[:limit]
		out.Next = recs[limit-1].ID
	}
	if out.Records == nil {
		out.Records = []audit.Record{}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
