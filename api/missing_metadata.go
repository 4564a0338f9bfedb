package api

import (
	"fmt"

	"matchbox/matchbox"
	"matchbox/store"
)

// maxMissingWarnings bounds how many missing-metadata warnings a plan
// spells out; the rest are counted.
const maxMissingWarnings = 200

// planMissingWarnings words what every group of snap lacks of the
// variables its profile's templates read (matchbox.MissingKey), one
// warning per group, template and variable.
func planMissingWarnings(snap *matchbox.Snapshot) []string {
	missing := snap.MissingMetadata(snap.Groups())
	var out []string
	for i, m := range missing {
		if i == maxMissingWarnings {
			out = append(out, fmt.Sprintf("%d more template variables that groups lack are not listed", len(missing)-i))
			break
		}
		out = append(out, m.String())
	}
	return out
}

// writeMissingWarnings words, for a write of obj that snap now holds,
// what the groups it bears on lack of the variables their templates read:
// the group written, the groups of a profile written, the groups whose
// profile names a template written.
func writeMissingWarnings(snap *matchbox.Snapshot, obj *store.Object) []string {
	var groups []*matchbox.Group
	switch obj.Kind {
	case matchbox.KindGroup:
		if g, ok := snap.Group(obj.ID); ok {
			groups = append(groups, g)
		}
	default:
		for _, g := range snap.Groups() {
			if obj.Kind == matchbox.KindProfile {
				if g.Profile == obj.ID {
					groups = append(groups, g)
				}
				continue
			}
			p, ok := snap.Profile(g.Profile)
			if ok && ((obj.Kind == matchbox.TemplateIgnition && p.IgnitionID == obj.ID) || (obj.Kind == matchbox.TemplateGeneric && p.GenericID == obj.ID)) {
				groups = append(groups, g)
			}
		}
	}
	var out []string
	for _, m := range snap.MissingMetadata(groups) {
		if m.Concerns(obj.Kind, obj.ID) {
			out = append(out, m.String())
		}
	}
	return out
}
