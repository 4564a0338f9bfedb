package matchbox

import (
	"fmt"
	"sort"
	"strings"
	"text/template"
)

// FieldRef is a variable a template reads: its path from the data's root
// (["hostname"] for {{.hostname}}, ["net", "gw"] for {{.net.gw}} or for
// {{.gw}} inside {{with .net}}).
type FieldRef struct {
	Path []string
	// Guarded is true when the template reads the variable only under a
	// condition: inside the body of an if, with or range (or their else),
	// which may never run for a machine. The condition's own fields are
	// read unconditionally: with missingkey=error, {{if .x}} fails when x
	// is missing, so it guards nothing but its body.
	Guarded bool
}

// TemplateRefs returns the variables a parsed template reads, each path
// once (unguarded when any of its reads is), sorted by path. Fields of a
// range's element, of a $variable other than $ and of a function's result
// cannot be named and are left out, as are fields read through index
// (which answers the zero value for a missing key, not an error).
func TemplateRefs(t *template.Template) []FieldRef {
	seen := map[string]*FieldRef{}
	var order []string
	add := func(path []string, guarded bool) {
		key := strings.Join(path, ".")
		if r, ok := seen[key]; ok {
			r.Guarded = r.Guarded && guarded
			return
		}
		seen[key] = &FieldRef{Path: append([]string(nil), path...), Guarded: guarded}
		order = append(order, key)
	}
	walkTemplate(t, false, add)
	sort.Strings(order)
	out := make([]FieldRef, len(order))
	for i, k := range order {
		out[i] = *seen[k]
	}
	return out
}

// machineVariable reports whether matchbox sets a variable for every
// machine whatever its group (see Variables): request (the query and raw
// query) and the lifecycle's machine_id, agent_token, matchbox_url and
// provisioned_url. Anything else a template reads comes from the group's
// metadata or its selector (a mac selector gives {{.mac}}).
func machineVariable(key string) bool {
	switch key {
	case "request", "machine_id", "agent_token", "matchbox_url", "provisioned_url":
		return true
	}
	return false
}

// MissingKey is a variable a group's machines would lack: a template its
// profile reaches reads it, and neither the group's metadata, its
// selector nor the variables matchbox sets for every machine provide it.
// Rendering that template for the group's machines fails (missingkey=error)
// unless the key is Optional.
type MissingKey struct {
	Group, Profile string
	// Template says where the reference is: "profile P boot.args[N]" (the
	// /ipxe and /grub scripts), "ignition template NAME" (/ignition) or
	// "generic template NAME" (/generic).
	Template string
	// Key is the variable's path, dotted (hostname, net.gateway): the
	// first level the group lacks.
	Key string
	// Optional is true when the template reads the key only inside an
	// if, with or range body: rendering fails only for the machines
	// whose data makes that body run.
	Optional bool
}

func (m MissingKey) String() string {
	reads := "reads"
	if m.Optional {
		reads = "may read (inside if/with/range)"
	}
	return fmt.Sprintf("group %q (profile %q): %s %s {{.%s}}, which the group's metadata and selector lack and matchbox does not set", m.Group, m.Profile, m.Template, reads, m.Key)
}

// Concerns reports whether a write of the catalog object kind/id bears on
// m: the group, its profile, or the template that reads the key.
func (m MissingKey) Concerns(kind Kind, id string) bool {
	switch kind {
	case KindGroup:
		return m.Group == id
	case KindProfile:
		return m.Profile == id
	}
	return m.Template == string(kind)+" template "+id
}

// MissingMetadata lists, for each of the given groups (of s) whose profile
// exists, the variables its profile's templates read that the group does
// not provide: templated boot arguments, the Butane template of
// ignition_id (raw Ignition JSON is no template), the generic template.
// /metadata renders no template and needs nothing. Missing templates are
// dangling references, reported as such elsewhere. The order is the
// groups', then arguments, Ignition, generic, then keys.
func (s *Snapshot) MissingMetadata(groups []*Group) []MissingKey {
	refs := map[*template.Template][]FieldRef{}
	refsOf := func(t *template.Template) []FieldRef {
		r, ok := refs[t]
		if !ok {
			r = TemplateRefs(t)
			refs[t] = r
		}
		return r
	}
	var out []MissingKey
	for _, g := range groups {
		cp, ok := s.profiles[g.Profile]
		if !ok {
			continue
		}
		type source struct {
			where string
			t     *template.Template
		}
		var srcs []source
		for i, t := range cp.args {
			if t != nil {
				srcs = append(srcs, source{fmt.Sprintf("profile %s boot.args[%d]", cp.profile.ID, i), t})
			}
		}
		if ct, ok := s.templates[TemplateIgnition][cp.profile.IgnitionID]; ok && ct.parsed != nil {
			srcs = append(srcs, source{"ignition template " + cp.profile.IgnitionID, ct.parsed})
		}
		if ct, ok := s.templates[TemplateGeneric][cp.profile.GenericID]; ok && ct.parsed != nil {
			srcs = append(srcs, source{"generic template " + cp.profile.GenericID, ct.parsed})
		}
		for _, src := range srcs {
			for _, ref := range refsOf(src.t) {
				if key, missing := lacks(g, ref.Path); missing {
					out = append(out, MissingKey{Group: g.ID, Profile: cp.profile.ID, Template: src.where, Key: key, Optional: ref.Guarded})
				}
			}
		}
	}
	return dedupeMissing(out)
}

// dedupeMissing keeps the first of the keys that name the same group,
// template and key (.a.b and .a.c both lack a).
func dedupeMissing(in []MissingKey) []MissingKey {
	seen := map[MissingKey]int{}
	var out []MissingKey
	for _, m := range in {
		k := m
		k.Optional = false
		if i, ok := seen[k]; ok {
			out[i].Optional = out[i].Optional && m.Optional
			continue
		}
		seen[k] = len(out)
		out = append(out, m)
	}
	return out
}

// lacks reports whether the variables of g's machines lack path, and the
// dotted path of the first level missing. Values that are not maps (a
// list, a string) under which the path goes on are not judged.
func lacks(g *Group, path []string) (string, bool) {
	if machineVariable(path[0]) {
		return "", false
	}
	for k := range g.Selector {
		if strings.ToLower(k) == path[0] {
			return "", false
		}
	}
	var cur any = g.Metadata
	for i, name := range path {
		var v any
		var ok bool
		switch m := cur.(type) {
		case map[string]any:
			v, ok = m[name]
		case map[string]string:
			v, ok = m[name]
		default:
			return "", false
		}
		if !ok {
			return strings.Join(path[:i+1], "."), true
		}
		cur = v
	}
	return "", false
}
