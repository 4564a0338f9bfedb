package rpc

import (
	"context"

	"matchbox/api/rpc/rpcpb"
	"matchbox/api/rpc/serverpb"
	"matchbox/api/rpc/storagepb"
)

// groups serves rpcpb.Groups.
type groups struct {
	*services
	rpcpb.UnimplementedGroupsServer
}

// GroupPut creates or replaces a group.
func (s groups) GroupPut(ctx context.Context, req *serverpb.GroupPutRequest) (*serverpb.GroupPutResponse, error) {
	g, err := groupFromPB(req.GetGroup())
	if err != nil {
		return nil, err
	}
	if err := s.cfg.Catalog.PutGroup(ctx, g); err != nil {
		return nil, callError("put "+describe("group", g.ID), err)
	}
	return &serverpb.GroupPutResponse{}, nil
}

// GroupGet returns a group by id.
func (s groups) GroupGet(ctx context.Context, req *serverpb.GroupGetRequest) (*serverpb.GroupGetResponse, error) {
	what := "get " + describe("group", req.GetId())
	g, err := s.cfg.Catalog.Group(ctx, req.GetId())
	if err != nil {
		return nil, callError(what, err)
	}
	pb, err := groupToPB(g)
	if err != nil {
		return nil, callError(what, err)
	}
	return &serverpb.GroupGetResponse{Group: pb}, nil
}

// GroupDelete removes a group.
func (s groups) GroupDelete(ctx context.Context, req *serverpb.GroupDeleteRequest) (*serverpb.GroupDeleteResponse, error) {
	if err := s.cfg.Catalog.DeleteGroup(ctx, req.GetId()); err != nil {
		return nil, callError("delete "+describe("group", req.GetId()), err)
	}
	return &serverpb.GroupDeleteResponse{}, nil
}

// GroupList returns every group, ordered by id.
func (s groups) GroupList(ctx context.Context, _ *serverpb.GroupListRequest) (*serverpb.GroupListResponse, error) {
	all, err := s.cfg.Catalog.Groups(ctx)
	if err != nil {
		return nil, callError("list groups", err)
	}
	out := make([]*storagepb.Group, 0, len(all))
	for _, g := range all {
		pb, err := groupToPB(g)
		if err != nil {
			return nil, callError("list groups: "+describe("group", g.ID), err)
		}
		out = append(out, pb)
	}
	return &serverpb.GroupListResponse{Groups: out}, nil
}

var _ rpcpb.GroupsServer = groups{}
