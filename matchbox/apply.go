package matchbox

import (
	"fmt"
	"maps"
	"slices"
	"sort"
)

// Change is one catalog object written or deleted, for Snapshot.Apply.
// Exactly one of Profile, Group and Template is set for a write, according
// to Kind; none is set for a deletion.
type Change struct {
	Kind Kind
	// ID is the profile or group id, or the template name.
	ID       string
	Profile  *Profile
	Group    *Group
	Template *Template
}

// Apply returns a new snapshot of s's catalog with changes made, validated
// as Build validates a whole catalog (identical selectors refused, ties
// and dangling references reported), or a *ValidationError. s is left as it
// is. Only the changed objects are compiled and only the indexes they touch
// are copied: a write of one object costs little more on a catalog of
// thousands of groups than on an empty one. Later changes of one object
// replace earlier ones. The changes' values are copied.
func (s *Snapshot) Apply(changes []Change, parseFact FactParser) (*Snapshot, error) {
	n := &Snapshot{
		profiles:   s.profiles,
		groupCount: s.groupCount,
		byID:       s.byID,
		anchored:   s.anchored,
		floating:   s.floating,
		templates:  s.templates,
		bySelector: s.bySelector,
		ties:       s.ties,
	}
	var problems []string
	last := make(map[[2]string]int, len(changes))
	for i, c := range changes {
		last[[2]string{string(c.Kind), c.ID}] = i
	}
	var (
		clonedProfiles, clonedGroups bool
		clonedTemplates              = map[Kind]bool{}
		removed                      = map[*compiledGroup]bool{}
		added                        []*compiledGroup
	)
	for i, c := range changes {
		if last[[2]string{string(c.Kind), c.ID}] != i {
			continue
		}
		switch c.Kind {
		case TemplateIgnition, TemplateGeneric:
			if !clonedTemplates[c.Kind] {
				if !clonedTemplates[TemplateIgnition] && !clonedTemplates[TemplateGeneric] {
					n.templates = maps.Clone(s.templates)
				}
				n.templates[c.Kind] = maps.Clone(s.templates[c.Kind])
				clonedTemplates[c.Kind] = true
			}
			if c.Template == nil {
				delete(n.templates[c.Kind], c.ID)
				continue
			}
			t := *c.Template
			ct, err := compileTemplate(&t)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s template %q: %v", t.Kind, t.Name, err))
				continue
			}
			n.templates[c.Kind][t.Name] = ct
		case KindProfile:
			if !clonedProfiles {
				n.profiles = maps.Clone(s.profiles)
				clonedProfiles = true
			}
			if c.Profile == nil {
				delete(n.profiles, c.ID)
				continue
			}
			cp, errs := compileProfile(*c.Profile)
			problems = append(problems, errs...)
			if cp != nil {
				n.profiles[cp.profile.ID] = cp
			}
		case KindGroup:
			if !clonedGroups {
				n.byID = s.byID.derive()
				n.bySelector = s.bySelector.derive()
				clonedGroups = true
			}
			if old, ok := n.byID.get(c.ID); ok {
				removed[old] = true
				n.groupCount--
				n.byID.remove(c.ID)
				if id, _ := n.bySelector.get(old.sortKey); id == c.ID {
					n.bySelector.remove(old.sortKey)
				}
			}
			if c.Group == nil {
				continue
			}
			cg, errs := compileGroup(*c.Group, parseFact)
			problems = append(problems, errs...)
			if cg == nil {
				continue
			}
			added = append(added, cg)
		default:
			problems = append(problems, fmt.Sprintf("unknown kind %q of %q", c.Kind, c.ID))
		}
	}
	// Selectors are claimed once every removal is done, so that groups of
	// one change can trade selectors.
	for _, cg := range added {
		if err := n.claimSelector(cg); err != nil {
			problems = append(problems, err.Error())
			continue
		}
		n.byID.set(cg.group.ID, cg)
		n.groupCount++
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, &ValidationError{Problems: problems}
	}

	if len(removed) > 0 || len(added) > 0 {
		type slot struct{ key, value string }
		touched := map[slot][]*compiledGroup{}
		floatingTouched := false
		var floatAdded []*compiledGroup
		note := func(cg *compiledGroup, isAdded bool) {
			key, ok := anchorKey(cg.group.Selector)
			if !ok {
				floatingTouched = true
				if isAdded {
					floatAdded = append(floatAdded, cg)
				}
				return
			}
			sl := slot{key, cg.group.Selector[key]}
			if isAdded {
				touched[sl] = append(touched[sl], cg)
			} else if _, ok := touched[sl]; !ok {
				touched[sl] = nil
			}
		}
		for cg := range removed {
			note(cg, false)
		}
		for _, cg := range added {
			note(cg, true)
		}
		if floatingTouched {
			n.floating = patchOrdered(s.floating, removed, floatAdded)
		}
		if len(touched) > 0 {
			n.anchored = maps.Clone(s.anchored)
			derived := map[string]bool{}
			for sl, adds := range touched {
				if !derived[sl.key] {
					n.anchored[sl.key] = s.anchored[sl.key].derive()
					derived[sl.key] = true
				}
				old, _ := s.anchored[sl.key].get(sl.value)
				list := patchOrdered(old, removed, adds)
				if len(list) == 0 {
					n.anchored[sl.key].remove(sl.value)
				} else {
					n.anchored[sl.key].set(sl.value, list)
				}
			}
		}
	}
	if len(removed) > 0 || len(added) > 0 {
		n.ties = make(map[tiePair]struct{}, len(s.ties))
		for p := range s.ties {
			if !removed[p.first] && !removed[p.second] {
				n.ties[p] = struct{}{}
			}
		}
		for _, cg := range added {
			n.tiesOf(cg)
		}
	}
	if clonedProfiles || len(clonedTemplates) > 0 {
		n.finish()
	} else {
		n.warnings = tieWarnings(n.ties)
		n.dangling = patchDangling(s.dangling, removed, added, n.profiles)
	}
	return n, nil
}

// tiesOf adds to n.ties every pair that cg forms with a group of n.
// A group anchored by a key (mac, uuid, ...) cannot tie with a group
// anchored by the same key with another value: only the groups of its own
// slot, the floating groups and the groups anchored by other keys are
// compared with it, so that a write to a catalog of thousands of groups
// pinned by MAC compares a handful.
func (n *Snapshot) tiesOf(cg *compiledGroup) {
	if cg.anchorKey == "" {
		all := make([]*compiledGroup, 0, n.groupCount)
		n.byID.each(func(h *compiledGroup) { all = append(all, h) })
		tiesOf(cg, all, n.ties)
		return
	}
	slot, _ := n.anchored[cg.anchorKey].get(cg.anchorValue)
	tiesOf(cg, slot, n.ties)
	tiesOf(cg, n.floating, n.ties)
	for key, byValue := range n.anchored {
		if key != cg.anchorKey {
			byValue.each(func(list []*compiledGroup) { tiesOf(cg, list, n.ties) })
		}
	}
}

// patchDangling returns the dangling references of a snapshot whose
// profiles and templates are those of the one whose references are old,
// and whose groups differ from its by removed and added: old without the
// removed groups' references, with the added groups' ones, sorted.
func patchDangling(old []string, removed map[*compiledGroup]bool, added []*compiledGroup, profiles map[string]*compiledProfile) []string {
	gone := map[string]bool{}
	for cg := range removed {
		if _, ok := profiles[cg.group.Profile]; !ok {
			gone[groupDangling(cg)] = true
		}
	}
	out := make([]string, 0, len(old)+len(added))
	for _, d := range old {
		if !gone[d] {
			out = append(out, d)
		}
	}
	for _, cg := range added {
		if _, ok := profiles[cg.group.Profile]; !ok {
			out = append(out, groupDangling(cg))
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return nil
	}
	return out
}

// patchOrdered returns a new list in precedence order: list (in precedence
// order) without the removed groups, with the added ones inserted. Each is
// found by binary search: precedence is a total order.
func patchOrdered(list []*compiledGroup, removed map[*compiledGroup]bool, added []*compiledGroup) []*compiledGroup {
	out := make([]*compiledGroup, len(list), len(list)+len(added))
	copy(out, list)
	for cg := range removed {
		i := sort.Search(len(out), func(i int) bool { return !precedes(out[i], cg) })
		if i < len(out) && out[i] == cg {
			out = slices.Delete(out, i, i+1)
		}
	}
	for _, cg := range added {
		i := sort.Search(len(out), func(i int) bool { return precedes(cg, out[i]) })
		out = slices.Insert(out, i, cg)
	}
	return out
}
