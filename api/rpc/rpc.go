// Package rpc serves matchbox v0.11's gRPC API (services rpcpb.Groups,
// rpcpb.Profiles, rpcpb.Ignition, rpcpb.Generic and rpcpb.Select), the API
// poseidon/terraform-provider-matchbox and v0.11's client package speak. The
// .proto files under proto/ are v0.11's, unchanged; `make proto` generates
// rpcpb, serverpb and storagepb from them.
//
// Every call reads or writes through a Catalog, one transaction per call,
// the same write path as the REST API's single-object writes. Put is
// create-or-replace, as in v0.11.
package rpc

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"matchbox/api/rpc/rpcpb"
	"matchbox/audit"
	"matchbox/matchbox"
)

// ErrNotFound marks errors about a missing profile, group or template: the
// errors a Catalog returns for them match it with errors.Is.
var ErrNotFound = errors.New("not found")

// Storage failures a Catalog's errors match with errors.Is: the disk is
// full (answered ResourceExhausted), or the storage refuses writes or
// cannot be reached (answered Unavailable). Nothing was stored.
var (
	ErrStorageFull = errors.New("storage full")
	ErrUnavailable = errors.New("storage unavailable")
)

// Catalog is what the services need of the catalog. Each write is one
// transaction that validates the resulting catalog before it commits; an
// invalid result is refused with a *matchbox.ValidationError.
type Catalog interface {
	// Profile returns a profile by id.
	Profile(ctx context.Context, id string) (*matchbox.Profile, error)
	// Profiles returns every profile, ordered by id.
	Profiles(ctx context.Context) ([]*matchbox.Profile, error)
	// PutProfile creates or replaces a profile.
	PutProfile(ctx context.Context, p *matchbox.Profile) error
	// DeleteProfile removes a profile.
	DeleteProfile(ctx context.Context, id string) error

	// Group returns a group by id.
	Group(ctx context.Context, id string) (*matchbox.Group, error)
	// Groups returns every group, ordered by id.
	Groups(ctx context.Context) ([]*matchbox.Group, error)
	// PutGroup creates or replaces a group.
	PutGroup(ctx context.Context, g *matchbox.Group) error
	// DeleteGroup removes a group.
	DeleteGroup(ctx context.Context, id string) error

	// Template returns a template by kind and name.
	Template(ctx context.Context, kind matchbox.TemplateKind, name string) (*matchbox.Template, error)
	// PutTemplate creates or replaces a template.
	PutTemplate(ctx context.Context, t *matchbox.Template) error
	// DeleteTemplate removes a template.
	DeleteTemplate(ctx context.Context, kind matchbox.TemplateKind, name string) error

	// Snapshot returns the current snapshot, which Select reads.
	Snapshot() *matchbox.Snapshot
}

// Config configures the gRPC services.
type Config struct {
	// Catalog is read and written by every call.
	Catalog Catalog
	// MayWrite tells whether the client presenting a verified certificate
	// may call Put and Delete methods; nil lets every verified client write.
	// Every call needs a verified client certificate.
	MayWrite func(cert *x509.Certificate) bool
	// Logger receives failed calls; nil discards them.
	Logger *slog.Logger
}

// New returns a gRPC server with the five services registered. opts are
// passed to grpc.NewServer (credentials when it serves a listener itself;
// none when it is mounted with ServeHTTP on a TLS http.Server).
func New(cfg Config, opts ...grpc.ServerOption) (*grpc.Server, error) {
	if cfg.Catalog == nil {
		return nil, errors.New("rpc: no catalog")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &services{cfg: cfg}
	opts = append(opts, grpc.ChainUnaryInterceptor(s.authorize))
	srv := grpc.NewServer(opts...)
	rpcpb.RegisterGroupsServer(srv, groups{services: s})
	rpcpb.RegisterProfilesServer(srv, profiles{services: s})
	rpcpb.RegisterIgnitionServer(srv, templates{s: s, kind: matchbox.TemplateIgnition})
	rpcpb.RegisterGenericServer(srv, generic{templates: templates{s: s, kind: matchbox.TemplateGeneric}})
	rpcpb.RegisterSelectServer(srv, selector{services: s})
	return srv, nil
}

// services holds what every service shares.
type services struct {
	cfg Config
}

// writeMethods are the calls that change the catalog.
var writeMethods = map[string]bool{
	rpcpb.Groups_GroupPut_FullMethodName:         true,
	rpcpb.Groups_GroupDelete_FullMethodName:      true,
	rpcpb.Profiles_ProfilePut_FullMethodName:     true,
	rpcpb.Profiles_ProfileDelete_FullMethodName:  true,
	rpcpb.Ignition_IgnitionPut_FullMethodName:    true,
	rpcpb.Ignition_IgnitionDelete_FullMethodName: true,
	rpcpb.Generic_GenericPut_FullMethodName:      true,
	rpcpb.Generic_GenericDelete_FullMethodName:   true,
}

// authorize refuses calls without a verified client certificate, and
// writes by clients MayWrite refuses; it logs failed calls.
func (s *services) authorize(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	cert := clientCertificate(ctx)
	if cert == nil {
		return nil, status.Error(codes.Unauthenticated, "matchbox: a client certificate signed by the API's client CA is required")
	}
	if writeMethods[info.FullMethod] && s.cfg.MayWrite != nil && !s.cfg.MayWrite(cert) {
		return nil, status.Errorf(codes.PermissionDenied, "matchbox: the client certificate %q is read-only and may not call %s", cert.Subject.CommonName, info.FullMethod)
	}
	ctx = audit.WithActor(ctx, cert.Subject.String())
	resp, err := handler(ctx, req)
	if err != nil {
		s.cfg.Logger.InfoContext(ctx, "gRPC call failed", "method", info.FullMethod, "client", cert.Subject.CommonName, "code", status.Code(err).String(), "err", err)
	}
	return resp, err
}

// clientCertificate returns the verified leaf certificate of the call's
// client, or nil.
func clientCertificate(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return info.State.VerifiedChains[0][0]
}

// invalid is a refused request.
func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, "matchbox: "+format, args...)
}

// callError turns a Catalog error into a gRPC status: NotFound for missing
// objects, InvalidArgument for writes the catalog's validation refuses,
// ResourceExhausted and Unavailable for storage failures,
// Canceled and DeadlineExceeded for the call's context, Internal otherwise.
func callError(what string, err error) error {
	var ve *matchbox.ValidationError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrNotFound):
		return status.Errorf(codes.NotFound, "matchbox: %s: %v", what, err)
	case errors.Is(err, ErrStorageFull):
		return status.Errorf(codes.ResourceExhausted, "matchbox: %s: the store's disk is full, nothing was stored: %v", what, err)
	case errors.Is(err, ErrUnavailable):
		return status.Errorf(codes.Unavailable, "matchbox: %s: the store cannot take writes, nothing was stored: %v", what, err)
	case errors.As(err, &ve):
		return status.Errorf(codes.InvalidArgument, "matchbox: %s: %v", what, err)
	case errors.Is(err, context.Canceled):
		return status.Errorf(codes.Canceled, "matchbox: %s: %v", what, err)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Errorf(codes.DeadlineExceeded, "matchbox: %s: %v", what, err)
	}
	return status.Errorf(codes.Internal, "matchbox: %s: %v", what, err)
}

// describe names an object in errors.
func describe(kind, id string) string { return fmt.Sprintf("%s %q", kind, id) }
