package rpc

import (
	"encoding/json"
	"maps"
	"slices"

	"matchbox/api/rpc/storagepb"
	"matchbox/matchbox"
)

// groupFromPB converts a v0.11 group: metadata travels as the bytes of a
// JSON object. The group's fields v0.11 has no room for (facts, priority,
// auto_provision) are left empty: a Put replaces the whole group.
func groupFromPB(pb *storagepb.Group) (*matchbox.Group, error) {
	if pb == nil {
		return nil, invalid("field group is required")
	}
	g := &matchbox.Group{
		ID:       pb.GetId(),
		Name:     pb.GetName(),
		Profile:  pb.GetProfile(),
		Selector: maps.Clone(pb.GetSelector()),
	}
	if len(g.Selector) == 0 {
		g.Selector = nil
	}
	if len(pb.GetMetadata()) > 0 {
		if err := json.Unmarshal(pb.GetMetadata(), &g.Metadata); err != nil {
			return nil, invalid("group %q: field metadata: want the bytes of a JSON object: %v", g.ID, err)
		}
	}
	if err := matchbox.NormalizeGroup(g); err != nil {
		return nil, invalid("%v", err)
	}
	return g, nil
}

// groupToPB converts a group for v0.11 clients: metadata as compact JSON
// with sorted keys (as v0.11 answers), none when the group has none.
func groupToPB(g *matchbox.Group) (*storagepb.Group, error) {
	pb := &storagepb.Group{
		Id:       g.ID,
		Name:     g.Name,
		Profile:  g.Profile,
		Selector: maps.Clone(g.Selector),
	}
	if len(g.Metadata) > 0 {
		b, err := json.Marshal(g.Metadata)
		if err != nil {
			return nil, err
		}
		pb.Metadata = b
	}
	return pb, nil
}

// profileFromPB converts a v0.11 profile. Cloud-config is refused: this
// server serves no /cloud endpoint.
func profileFromPB(pb *storagepb.Profile) (*matchbox.Profile, error) {
	if pb == nil {
		return nil, invalid("field profile is required")
	}
	if err := matchbox.ValidateID("profile", pb.GetId()); err != nil {
		return nil, invalid("%v", err)
	}
	if pb.GetCloudId() != "" {
		return nil, invalid("profile %q: field cloud_id %q: cloud-config is not supported: use ignition_id or generic_id", pb.GetId(), pb.GetCloudId())
	}
	p := &matchbox.Profile{
		ID:         pb.GetId(),
		Name:       pb.GetName(),
		IgnitionID: pb.GetIgnitionId(),
		GenericID:  pb.GetGenericId(),
	}
	if b := pb.GetBoot(); b != nil {
		p.Boot = matchbox.Boot{Kernel: b.GetKernel(), Initrd: slices.Clone(b.GetInitrd()), Args: slices.Clone(b.GetArgs())}
	}
	for field, name := range map[string]string{"ignition_id": p.IgnitionID, "generic_id": p.GenericID} {
		if name == "" {
			continue
		}
		if err := matchbox.ValidateTemplateName(name); err != nil {
			return nil, invalid("profile %q: field %s: %v", p.ID, field, err)
		}
	}
	return p, nil
}

// profileToPB converts a profile for v0.11 clients. Boot is always set:
// clients (the Terraform provider among them) read its fields without
// checking it.
func profileToPB(p *matchbox.Profile) *storagepb.Profile {
	return &storagepb.Profile{
		Id:         p.ID,
		Name:       p.Name,
		IgnitionId: p.IgnitionID,
		GenericId:  p.GenericID,
		Boot: &storagepb.NetBoot{
			Kernel: p.Boot.Kernel,
			Initrd: slices.Clone(p.Boot.Initrd),
			Args:   slices.Clone(p.Boot.Args),
		},
	}
}
