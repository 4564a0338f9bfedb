package rpc

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"matchbox/api/rpc/rpcpb"
	"matchbox/api/rpc/serverpb"
	"matchbox/matchbox"
)

// The answers v0.11 gives when nothing matches, word for word.
var (
	errNoMatchingGroup   = status.Error(codes.NotFound, "matchbox: No matching Group")
	errNoMatchingProfile = status.Error(codes.NotFound, "matchbox: No matching Profile")
)

// selector serves rpcpb.Select from the current snapshot, with the boot
// endpoints' precedence: priority, then the number of terms, then the
// greatest sorted key=value string, which orders groups without priority or
// fact terms as v0.11 does. Groups with fact terms need an inventory and
// never match here.
type selector struct {
	*services
	rpcpb.UnimplementedSelectServer
}

func (s selector) selectGroup(labels map[string]string) (matchbox.Match, error) {
	l := make(matchbox.Labels, len(labels))
	for k, v := range labels {
		if strings.EqualFold(k, "mac") {
			if mac, err := matchbox.NormalizeMAC(v); err == nil {
				v = mac
			}
		}
		l[k] = v
	}
	m, err := s.cfg.Catalog.Snapshot().Select(l, nil)
	switch {
	case errors.Is(err, matchbox.ErrNoMatch):
		return m, errNoMatchingGroup
	case errors.Is(err, matchbox.ErrMissingProfile):
		return m, nil // the group, whose profile is not (yet) written
	case err != nil:
		return m, callError("select", err)
	}
	return m, nil
}

// SelectGroup returns the group the labels select.
func (s selector) SelectGroup(_ context.Context, req *serverpb.SelectGroupRequest) (*serverpb.SelectGroupResponse, error) {
	m, err := s.selectGroup(req.GetLabels())
	if err != nil {
		return nil, err
	}
	g, err := groupToPB(m.Group)
	if err != nil {
		return nil, callError("select", err)
	}
	return &serverpb.SelectGroupResponse{Group: g}, nil
}

// SelectProfile returns the profile of the group the labels select; a
// group whose profile does not exist answers NotFound, as in v0.11.
func (s selector) SelectProfile(_ context.Context, req *serverpb.SelectProfileRequest) (*serverpb.SelectProfileResponse, error) {
	m, err := s.selectGroup(req.GetLabels())
	if err != nil {
		return nil, err
	}
	if m.Profile == nil {
		return nil, errNoMatchingProfile
	}
	return &serverpb.SelectProfileResponse{Profile: profileToPB(m.Profile)}, nil
}
