package store

import (
	"matchbox/matchbox"
	"matchbox/matchbox/datadir"
)

// ObjectsOf turns what a data directory (or a bundle) holds into catalog
// objects, in reading order: profiles, groups, templates. Each object's
// Source is the file it came from.
func ObjectsOf(c *datadir.Content) []*Object {
	objs := make([]*Object, 0, len(c.Profiles)+len(c.Groups)+len(c.Templates))
	for i := range c.Profiles {
		e := &c.Profiles[i]
		objs = append(objs, &Object{Kind: matchbox.KindProfile, ID: e.Value.ID, Profile: &e.Value, Source: e.File})
	}
	for i := range c.Groups {
		e := &c.Groups[i]
		objs = append(objs, &Object{Kind: matchbox.KindGroup, ID: e.Value.ID, Group: &e.Value, Source: e.File})
	}
	for i := range c.Templates {
		e := &c.Templates[i]
		objs = append(objs, &Object{Kind: e.Value.Kind, ID: e.Value.Name, Template: &e.Value, Source: e.File})
	}
	return objs
}
