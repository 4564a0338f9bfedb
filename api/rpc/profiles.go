package rpc

import (
	"context"

	"matchbox/api/rpc/rpcpb"
	"matchbox/api/rpc/serverpb"
	"matchbox/api/rpc/storagepb"
)

// profiles serves rpcpb.Profiles.
type profiles struct {
	*services
	rpcpb.UnimplementedProfilesServer
}

// ProfilePut creates or replaces a profile. The templates it names may be
// written after it, as the Terraform provider does.
func (s profiles) ProfilePut(ctx context.Context, req *serverpb.ProfilePutRequest) (*serverpb.ProfilePutResponse, error) {
	p, err := profileFromPB(req.GetProfile())
	if err != nil {
		return nil, err
	}
	if err := s.cfg.Catalog.PutProfile(ctx, p); err != nil {
		return nil, callError("put "+describe("profile", p.ID), err)
	}
	return &serverpb.ProfilePutResponse{}, nil
}

// ProfileGet returns a profile by id.
func (s profiles) ProfileGet(ctx context.Context, req *serverpb.ProfileGetRequest) (*serverpb.ProfileGetResponse, error) {
	p, err := s.cfg.Catalog.Profile(ctx, req.GetId())
	if err != nil {
		return nil, callError("get "+describe("profile", req.GetId()), err)
	}
	return &serverpb.ProfileGetResponse{Profile: profileToPB(p)}, nil
}

// ProfileDelete removes a profile.
func (s profiles) ProfileDelete(ctx context.Context, req *serverpb.ProfileDeleteRequest) (*serverpb.ProfileDeleteResponse, error) {
	if err := s.cfg.Catalog.DeleteProfile(ctx, req.GetId()); err != nil {
		return nil, callError("delete "+describe("profile", req.GetId()), err)
	}
	return &serverpb.ProfileDeleteResponse{}, nil
}

// ProfileList returns every profile, ordered by id.
func (s profiles) ProfileList(ctx context.Context, _ *serverpb.ProfileListRequest) (*serverpb.ProfileListResponse, error) {
	all, err := s.cfg.Catalog.Profiles(ctx)
	if err != nil {
		return nil, callError("list profiles", err)
	}
	out := make([]*storagepb.Profile, 0, len(all))
	for _, p := range all {
		out = append(out, profileToPB(p))
	}
	return &serverpb.ProfileListResponse{Profiles: out}, nil
}

var _ rpcpb.ProfilesServer = profiles{}
