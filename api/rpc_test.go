package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/mux"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"matchbox/api/rpc"
	"matchbox/api/rpc/rpcpb"
	"matchbox/api/rpc/serverpb"
	"matchbox/api/rpc/storagepb"
	"matchbox/store"
)

// rpcServer is the REST API and v0.11's gRPC API on one TLS listener over a
// real store, as `matchbox serve` mounts them.
type rpcServer struct {
	srv   *httptest.Server
	store *store.Store
	ca    *testCA
}

func newRPCServer(t *testing.T) *rpcServer {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{Path: filepath.Join(t.TempDir(), "matchbox.db"), Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	a, err := New(Config{Store: st, RequireClientCert: true})
	if err != nil {
		t.Fatal(err)
	}
	g, err := rpc.New(rpc.Config{
		Catalog:  RPCCatalog{Store: st},
		MayWrite: func(c *x509.Certificate) bool { return CertificateRole(c) == RoleAdmin },
	})
	if err != nil {
		t.Fatal(err)
	}
	r := mux.NewRouter()
	a.Register(r)
	ca := newTestCA(t)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	srv := httptest.NewUnstartedServer(rpc.Mux(g, r))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &rpcServer{srv: srv, store: st, ca: ca}
}

// rpcClient is a gRPC connection presenting certs.
type rpcClient struct {
	groups   rpcpb.GroupsClient
	profiles rpcpb.ProfilesClient
	ignition rpcpb.IgnitionClient
	generic  rpcpb.GenericClient
	selector rpcpb.SelectClient
}

func (s *rpcServer) dial(t *testing.T, certs ...tls.Certificate) rpcClient {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(s.srv.Certificate())
	creds := credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12})
	conn, err := grpc.NewClient(strings.TrimPrefix(s.srv.URL, "https://"), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return rpcClient{
		groups: rpcpb.NewGroupsClient(conn), profiles: rpcpb.NewProfilesClient(conn),
		ignition: rpcpb.NewIgnitionClient(conn), generic: rpcpb.NewGenericClient(conn),
		selector: rpcpb.NewSelectClient(conn),
	}
}

func rpcContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: code %v (%v), want %v", what, got, err, want)
	}
}

// Templates whose bytes a re-encoding would change: no final newline, CRLF,
// trailing blanks, tabs, non-ASCII, JSON with odd spacing.
const (
	rawIgnition = "{ \"ignition\" : {\"version\":\"3.4.0\"},\r\n  \"storage\": {\"files\": [{\"path\": \"/etc/motd\", \"contents\": {\"source\": \"data:,h%C3%A9\"}}]}  }  \n\n"
	butaneTmpl  = "variant: flatcar\nversion: 1.0.0\npasswd:\n  users:\n    - name: core\t\n# é {{.mac}}   \n"
	genericTmpl = "mac={{.mac}}\r\nno final newline"
)

func TestRPCEveryCall(t *testing.T) {
	s := newRPCServer(t)
	c := s.dial(t, s.ca.client(t, 2))
	ctx := rpcContext(t)

	// Empty catalog: empty lists, NotFound, v0.11's selection errors.
	gl, err := c.groups.GroupList(ctx, &serverpb.GroupListRequest{})
	if err != nil || len(gl.GetGroups()) != 0 {
		t.Fatalf("GroupList on an empty catalog: %v, %v", gl, err)
	}
	pl, err := c.profiles.ProfileList(ctx, &serverpb.ProfileListRequest{})
	if err != nil || len(pl.GetProfiles()) != 0 {
		t.Fatalf("ProfileList on an empty catalog: %v, %v", pl, err)
	}
	_, err = c.selector.SelectGroup(ctx, &serverpb.SelectGroupRequest{Labels: map[string]string{"mac": "52:54:00:00:00:01"}})
	wantCode(t, "SelectGroup on an empty catalog", err, codes.NotFound)
	if st, _ := status.FromError(err); st.Message() != "matchbox: No matching Group" {
		t.Errorf("SelectGroup message %q, want v0.11's", st.Message())
	}

	// Writes, templates first.
	mustOK := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	_, err = c.ignition.IgnitionPut(ctx, &serverpb.IgnitionPutRequest{Name: "node.ign", Config: []byte(rawIgnition)})
	mustOK("IgnitionPut raw", err)
	_, err = c.ignition.IgnitionPut(ctx, &serverpb.IgnitionPutRequest{Name: "worker.yaml.tmpl", Config: []byte(butaneTmpl)})
	mustOK("IgnitionPut butane", err)
	_, err = c.generic.GenericPut(ctx, &serverpb.GenericPutRequest{Name: "worker", Config: []byte(genericTmpl)})
	mustOK("GenericPut", err)
	node := &storagepb.Profile{Id: "node", Name: "Node", IgnitionId: "node.ign", Boot: &storagepb.NetBoot{Kernel: "/assets/vmlinuz", Initrd: []string{"/assets/initrd"}, Args: []string{"console=ttyS0", "ignition.config.url=http://m/ignition?mac=${mac:hexhyp}"}}}
	worker := &storagepb.Profile{Id: "worker", IgnitionId: "worker.yaml.tmpl", GenericId: "worker"}
	_, err = c.profiles.ProfilePut(ctx, &serverpb.ProfilePutRequest{Profile: node})
	mustOK("ProfilePut node", err)
	_, err = c.profiles.ProfilePut(ctx, &serverpb.ProfilePutRequest{Profile: worker})
	mustOK("ProfilePut worker", err)
	def := &storagepb.Group{Id: "default", Profile: "worker"}
	byMAC := &storagepb.Group{Id: "node1", Name: "node 1", Profile: "node", Selector: map[string]string{"mac": "52:54:00:A1:9C:AE"}, Metadata: []byte(`{"pxe":"true", "count": 2, "a":{"b":[1,"x"]}}`)}
	installed := &storagepb.Group{Id: "node1-installed", Profile: "worker", Selector: map[string]string{"mac": "52:54:00:a1:9c:ae", "os": "installed"}}
	for _, g := range []*storagepb.Group{def, byMAC, installed} {
		_, err = c.groups.GroupPut(ctx, &serverpb.GroupPutRequest{Group: g})
		mustOK("GroupPut "+g.Id, err)
	}
	// Put again: create-or-replace.
	node.Boot.Args = append(node.Boot.Args, "quiet")
	_, err = c.profiles.ProfilePut(ctx, &serverpb.ProfilePutRequest{Profile: node})
	mustOK("ProfilePut node again", err)

	// Reads: templates byte-identical, groups with normalised MACs and
	// metadata as compact JSON with sorted keys, profiles with a boot.
	for name, want := range map[string]string{"node.ign": rawIgnition, "worker.yaml.tmpl": butaneTmpl} {
		got, err := c.ignition.IgnitionGet(ctx, &serverpb.IgnitionGetRequest{Name: name})
		mustOK("IgnitionGet "+name, err)
		if string(got.GetConfig()) != want {
			t.Errorf("IgnitionGet %s = %q, want the bytes written %q", name, got.GetConfig(), want)
		}
	}
	gg, err := c.generic.GenericGet(ctx, &serverpb.GenericGetRequest{Name: "worker"})
	mustOK("GenericGet", err)
	if string(gg.GetConfig()) != genericTmpl {
		t.Errorf("GenericGet = %q, want %q", gg.GetConfig(), genericTmpl)
	}
	pg, err := c.profiles.ProfileGet(ctx, &serverpb.ProfileGetRequest{Id: "node"})
	mustOK("ProfileGet", err)
	if diff := cmp.Diff(node, pg.GetProfile(), protocmp.Transform()); diff != "" {
		t.Errorf("ProfileGet node (-put +got):\n%s", diff)
	}
	pw, err := c.profiles.ProfileGet(ctx, &serverpb.ProfileGetRequest{Id: "worker"})
	mustOK("ProfileGet worker", err)
	if pw.GetProfile().GetBoot() == nil {
		t.Errorf("ProfileGet worker: no boot; v0.11 clients read boot without checking it")
	}
	g1, err := c.groups.GroupGet(ctx, &serverpb.GroupGetRequest{Id: "node1"})
	mustOK("GroupGet", err)
	wantG1 := &storagepb.Group{Id: "node1", Name: "node 1", Profile: "node", Selector: map[string]string{"mac": "52:54:00:a1:9c:ae"}, Metadata: []byte(`{"a":{"b":[1,"x"]},"count":2,"pxe":"true"}`)}
	if diff := cmp.Diff(wantG1, g1.GetGroup(), protocmp.Transform()); diff != "" {
		t.Errorf("GroupGet node1 (-want +got):\n%s", diff)
	}
	gl, err = c.groups.GroupList(ctx, &serverpb.GroupListRequest{})
	mustOK("GroupList", err)
	var ids []string
	for _, g := range gl.GetGroups() {
		ids = append(ids, g.GetId())
	}
	if diff := cmp.Diff([]string{"default", "node1", "node1-installed"}, ids); diff != "" {
		t.Errorf("GroupList ids (-want +got):\n%s", diff)
	}
	pl, err = c.profiles.ProfileList(ctx, &serverpb.ProfileListRequest{})
	mustOK("ProfileList", err)
	if len(pl.GetProfiles()) != 2 || pl.GetProfiles()[0].GetId() != "node" || pl.GetProfiles()[1].GetId() != "worker" {
		t.Errorf("ProfileList = %v, want node and worker", pl.GetProfiles())
	}

	// Select: the most specific group wins, as in v0.11.
	selects := []struct {
		labels      map[string]string
		group, prof string
	}{
		{map[string]string{"mac": "52:54:00:a1:9c:ae", "os": "installed"}, "node1-installed", "worker"},
		{map[string]string{"mac": "52-54-00-A1-9C-AE"}, "node1", "node"},
		{map[string]string{"mac": "52:54:00:00:00:02"}, "default", "worker"},
		{nil, "default", "worker"},
	}
	for _, sc := range selects {
		sg, err := c.selector.SelectGroup(ctx, &serverpb.SelectGroupRequest{Labels: sc.labels})
		mustOK("SelectGroup", err)
		if sg.GetGroup().GetId() != sc.group {
			t.Errorf("SelectGroup %v = %q, want %q", sc.labels, sg.GetGroup().GetId(), sc.group)
		}
		sp, err := c.selector.SelectProfile(ctx, &serverpb.SelectProfileRequest{Labels: sc.labels})
		mustOK("SelectProfile", err)
		if sp.GetProfile().GetId() != sc.prof {
			t.Errorf("SelectProfile %v = %q, want %q", sc.labels, sp.GetProfile().GetId(), sc.prof)
		}
	}

	// The REST API on the same listener sees what gRPC wrote.
	rest := s.restClient(t, s.ca.client(t, 3))
	resp, err := rest.Get(s.srv.URL + Prefix + "/templates/ignition/node.ign")
	mustOK("REST GET", err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"name": "node.ign"`) {
		t.Errorf("REST GET of a template written over gRPC: %d %s", resp.StatusCode, body)
	}

	// Deletes, then nothing is left.
	for _, id := range []string{"default", "node1", "node1-installed"} {
		_, err = c.groups.GroupDelete(ctx, &serverpb.GroupDeleteRequest{Id: id})
		mustOK("GroupDelete "+id, err)
	}
	for _, id := range []string{"node", "worker"} {
		_, err = c.profiles.ProfileDelete(ctx, &serverpb.ProfileDeleteRequest{Id: id})
		mustOK("ProfileDelete "+id, err)
	}
	for _, name := range []string{"node.ign", "worker.yaml.tmpl"} {
		_, err = c.ignition.IgnitionDelete(ctx, &serverpb.IgnitionDeleteRequest{Name: name})
		mustOK("IgnitionDelete "+name, err)
	}
	_, err = c.generic.GenericDelete(ctx, &serverpb.GenericDeleteRequest{Name: "worker"})
	mustOK("GenericDelete", err)
	_, err = c.groups.GroupGet(ctx, &serverpb.GroupGetRequest{Id: "node1"})
	wantCode(t, "GroupGet after delete", err, codes.NotFound)
	_, err = c.profiles.ProfileGet(ctx, &serverpb.ProfileGetRequest{Id: "node"})
	wantCode(t, "ProfileGet after delete", err, codes.NotFound)
	_, err = c.ignition.IgnitionGet(ctx, &serverpb.IgnitionGetRequest{Name: "node.ign"})
	wantCode(t, "IgnitionGet after delete", err, codes.NotFound)
	_, err = c.generic.GenericGet(ctx, &serverpb.GenericGetRequest{Name: "worker"})
	wantCode(t, "GenericGet after delete", err, codes.NotFound)
	_, err = c.groups.GroupDelete(ctx, &serverpb.GroupDeleteRequest{Id: "node1"})
	wantCode(t, "GroupDelete of a missing group", err, codes.NotFound)
	p, g, tm := s.store.Snapshot().Counts()
	if p+g+tm != 0 {
		t.Errorf("after every delete the snapshot holds %d profiles, %d groups, %d templates", p, g, tm)
	}
}

func (s *rpcServer) restClient(t *testing.T, cert tls.Certificate) *http.Client {
	roots := x509.NewCertPool()
	roots.AddCert(s.srv.Certificate())
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}}}
}

func TestRPCRefusesInvalidWrites(t *testing.T) {
	s := newRPCServer(t)
	c := s.dial(t, s.ca.client(t, 2))
	ctx := rpcContext(t)
	cases := []struct {
		name string
		call func() error
	}{
		{"group without id", func() error {
			_, err := c.groups.GroupPut(ctx, &serverpb.GroupPutRequest{Group: &storagepb.Group{Profile: "p"}})
			return err
		}},
		{"group without profile", func() error {
			_, err := c.groups.GroupPut(ctx, &serverpb.GroupPutRequest{Group: &storagepb.Group{Id: "g"}})
			return err
		}},
		{"no group", func() error {
			_, err := c.groups.GroupPut(ctx, &serverpb.GroupPutRequest{})
			return err
		}},
		{"metadata not JSON", func() error {
			_, err := c.groups.GroupPut(ctx, &serverpb.GroupPutRequest{Group: &storagepb.Group{Id: "g", Profile: "p", Metadata: []byte("pxe: true")}})
			return err
		}},
		{"metadata not an object", func() error {
			_, err := c.groups.GroupPut(ctx, &serverpb.GroupPutRequest{Group: &storagepb.Group{Id: "g", Profile: "p", Metadata: []byte(`[1]`)}})
			return err
		}},
		{"bad MAC selector", func() error {
			_, err := c.groups.GroupPut(ctx, &serverpb.GroupPutRequest{Group: &storagepb.Group{Id: "g", Profile: "p", Selector: map[string]string{"mac": "nope"}}})
			return err
		}},
		{"profile id with a slash", func() error {
			_, err := c.profiles.ProfilePut(ctx, &serverpb.ProfilePutRequest{Profile: &storagepb.Profile{Id: "a/b"}})
			return err
		}},
		{"cloud-config", func() error {
			_, err := c.profiles.ProfilePut(ctx, &serverpb.ProfilePutRequest{Profile: &storagepb.Profile{Id: "p", CloudId: "c.yaml"}})
			return err
		}},
		{"template name with a slash", func() error {
			_, err := c.generic.GenericPut(ctx, &serverpb.GenericPutRequest{Name: "../x", Config: []byte("x")})
			return err
		}},
		{"invalid raw Ignition", func() error {
			_, err := c.ignition.IgnitionPut(ctx, &serverpb.IgnitionPutRequest{Name: "x.ign", Config: []byte("{")})
			return err
		}},
		{"invalid template", func() error {
			_, err := c.generic.GenericPut(ctx, &serverpb.GenericPutRequest{Name: "x", Config: []byte("{{.mac")})
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, tc.name, tc.call(), codes.InvalidArgument)
		})
	}
	if p, g, tm := s.store.Snapshot().Counts(); p+g+tm != 0 {
		t.Errorf("refused writes left %d profiles, %d groups, %d templates", p, g, tm)
	}
}

func TestRPCClientCertificates(t *testing.T) {
	s := newRPCServer(t)
	ctx := rpcContext(t)
	get := func(c rpcClient) error {
		_, err := c.profiles.ProfileList(ctx, &serverpb.ProfileListRequest{})
		return err
	}
	put := func(c rpcClient) error {
		_, err := c.generic.GenericPut(ctx, &serverpb.GenericPutRequest{Name: "x", Config: []byte("x")})
		return err
	}
	other := newTestCA(t)
	cases := []struct {
		name     string
		certs    []tls.Certificate
		get, put codes.Code
	}{
		{"admin certificate", []tls.Certificate{s.ca.client(t, 2)}, codes.OK, codes.OK},
		{"read-only certificate (OU read)", []tls.Certificate{s.ca.client(t, 3, "read")}, codes.OK, codes.PermissionDenied},
		{"no certificate", nil, codes.Unauthenticated, codes.Unauthenticated},
		{"certificate from another CA", []tls.Certificate{other.client(t, 4)}, codes.Unavailable, codes.Unavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := s.dial(t, tc.certs...)
			wantCode(t, "list", get(c), tc.get)
			wantCode(t, "put", put(c), tc.put)
		})
	}
}
