package rpc

import (
	"context"

	"matchbox/api/rpc/rpcpb"
	"matchbox/api/rpc/serverpb"
	"matchbox/matchbox"
)

// templates serves rpcpb.Ignition, and the template operations of
// rpcpb.Generic, for one kind of template. Content is stored and returned
// byte for byte: a template read back is what was written.
type templates struct {
	rpcpb.UnimplementedIgnitionServer
	s    *services
	kind matchbox.TemplateKind
}

func (t templates) what(verb, name string) string {
	return verb + " " + describe(string(t.kind)+" template", name)
}

func (t templates) put(ctx context.Context, name string, content []byte) error {
	if err := matchbox.ValidateTemplateName(name); err != nil {
		return invalid("%v", err)
	}
	err := t.s.cfg.Catalog.PutTemplate(ctx, &matchbox.Template{Kind: t.kind, Name: name, Content: string(content)})
	return callError(t.what("put", name), err)
}

func (t templates) get(ctx context.Context, name string) ([]byte, error) {
	tmpl, err := t.s.cfg.Catalog.Template(ctx, t.kind, name)
	if err != nil {
		return nil, callError(t.what("get", name), err)
	}
	return []byte(tmpl.Content), nil
}

func (t templates) delete(ctx context.Context, name string) error {
	return callError(t.what("delete", name), t.s.cfg.Catalog.DeleteTemplate(ctx, t.kind, name))
}

// IgnitionPut creates or replaces an Ignition template: names ending in
// .ign or .ignition hold raw Ignition, other names Butane (Container Linux
// Config) templates.
func (t templates) IgnitionPut(ctx context.Context, req *serverpb.IgnitionPutRequest) (*serverpb.IgnitionPutResponse, error) {
	if err := t.put(ctx, req.GetName(), req.GetConfig()); err != nil {
		return nil, err
	}
	return &serverpb.IgnitionPutResponse{}, nil
}

// IgnitionGet returns an Ignition template as it was written.
func (t templates) IgnitionGet(ctx context.Context, req *serverpb.IgnitionGetRequest) (*serverpb.IgnitionGetResponse, error) {
	b, err := t.get(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &serverpb.IgnitionGetResponse{Config: b}, nil
}

// IgnitionDelete removes an Ignition template.
func (t templates) IgnitionDelete(ctx context.Context, req *serverpb.IgnitionDeleteRequest) (*serverpb.IgnitionDeleteResponse, error) {
	if err := t.delete(ctx, req.GetName()); err != nil {
		return nil, err
	}
	return &serverpb.IgnitionDeleteResponse{}, nil
}

// generic serves rpcpb.Generic.
type generic struct {
	rpcpb.UnimplementedGenericServer
	templates
}

// GenericPut creates or replaces a generic template.
func (g generic) GenericPut(ctx context.Context, req *serverpb.GenericPutRequest) (*serverpb.GenericPutResponse, error) {
	if err := g.put(ctx, req.GetName(), req.GetConfig()); err != nil {
		return nil, err
	}
	return &serverpb.GenericPutResponse{}, nil
}

// GenericGet returns a generic template as it was written.
func (g generic) GenericGet(ctx context.Context, req *serverpb.GenericGetRequest) (*serverpb.GenericGetResponse, error) {
	b, err := g.get(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return &serverpb.GenericGetResponse{Config: b}, nil
}

// GenericDelete removes a generic template.
func (g generic) GenericDelete(ctx context.Context, req *serverpb.GenericDeleteRequest) (*serverpb.GenericDeleteResponse, error) {
	if err := g.delete(ctx, req.GetName()); err != nil {
		return nil, err
	}
	return &serverpb.GenericDeleteResponse{}, nil
}

var (
	_ rpcpb.IgnitionServer = templates{}
	_ rpcpb.GenericServer  = generic{}
)
