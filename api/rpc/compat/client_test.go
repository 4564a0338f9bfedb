package compat

import (
	"context"
	"crypto/x509"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"matchbox/internal/servetest"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/poseidon/matchbox/matchbox/client"
	"github.com/poseidon/matchbox/matchbox/server/serverpb"
	"github.com/poseidon/matchbox/matchbox/storage/storagepb"
)

// Templates whose bytes any re-encoding would change.
const (
	rawIgnition = "{ \"ignition\" : {\"version\":\"3.4.0\"},\r\n  \"storage\": {\"files\": [{\"path\": \"/etc/motd\", \"contents\": {\"source\": \"data:,h%C3%A9\"}}]}  }  \n\n"
	butaneTmpl  = "variant: flatcar\nversion: 1.0.0\npasswd:\n  users:\n    - name: core\t\n# é {{.mac}}   \n"
	genericTmpl = "mac={{.mac}}\r\nno final newline"
)

func dialV011(t *testing.T, s *server, p *servetest.PKI, certFile, keyFile string) (*client.Client, error) {
	t.Helper()
	c, err := client.New(&client.Config{Endpoints: []string{s.apiAddr}, DialTimeout: 5 * time.Second, TLS: p.ClientTLS(t, certFile, keyFile)})
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// TestV011Client drives `matchbox serve` with matchbox v0.11's own client
// package over mutual TLS, in the Terraform provider's order: a group before
// its profile, a profile before its templates.
func TestV011Client(t *testing.T) {
	p := servetest.NewPKI(t, "matchbox")
	s := startServe(t, p)
	c, err := dialV011(t, s, p, p.ClientCert, p.ClientKey)
	if err != nil {
		t.Fatalf("v0.11 client: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v\nlogs:\n%s", what, err, s.Logs())
		}
	}

	// Empty catalog.
	gl, err := c.Groups.GroupList(ctx, &serverpb.GroupListRequest{})
	must("GroupList", err)
	if len(gl.Groups) != 0 {
		t.Errorf("GroupList on an empty catalog: %v", gl.Groups)
	}
	_, err = c.Select.SelectProfile(ctx, &serverpb.SelectProfileRequest{Labels: map[string]string{"mac": "52:54:00:a1:9c:ae"}})
	if st, _ := status.FromError(err); st.Code() != codes.NotFound || st.Message() != "matchbox: No matching Group" {
		t.Errorf("SelectProfile on an empty catalog: %v, want NotFound %q", err, "matchbox: No matching Group")
	}

	// Dangling references on the way in: the group names a profile not
	// yet written, the profiles name templates not yet written.
	node1 := &storagepb.Group{Id: "node1", Profile: "node", Selector: map[string]string{"mac": "52:54:00:a1:9c:ae"}, Metadata: []byte(`{"pxe":"yes","n":"1"}`)}
	_, err = c.Groups.GroupPut(ctx, &serverpb.GroupPutRequest{Group: node1})
	must("GroupPut before its profile", err)
	_, err = c.Select.SelectProfile(ctx, &serverpb.SelectProfileRequest{Labels: map[string]string{"mac": "52:54:00:a1:9c:ae"}})
	if st, _ := status.FromError(err); st.Code() != codes.NotFound || st.Message() != "matchbox: No matching Profile" {
		t.Errorf("SelectProfile of a group whose profile is missing: %v, want NotFound %q", err, "matchbox: No matching Profile")
	}
	node := &storagepb.Profile{Id: "node", IgnitionId: "node.ign", GenericId: "node", Boot: &storagepb.NetBoot{Kernel: "/assets/vmlinuz", Initrd: []string{"/assets/initrd.img"}, Args: []string{"console=ttyS0"}}}
	_, err = c.Profiles.ProfilePut(ctx, &serverpb.ProfilePutRequest{Profile: node})
	must("ProfilePut before its templates", err)
	worker := &storagepb.Profile{Id: "worker", IgnitionId: "worker.yaml.tmpl", Boot: &storagepb.NetBoot{}}
	_, err = c.Profiles.ProfilePut(ctx, &serverpb.ProfilePutRequest{Profile: worker})
	must("ProfilePut worker", err)
	// A machine of the group is answered 404 with the reason while the
	// template is missing.
	code, body := get(t, "http://"+s.httpAddr+"/ignition?mac=52:54:00:a1:9c:ae")
	if code != http.StatusNotFound || !strings.Contains(body, "node.ign") {
		t.Errorf("/ignition while node.ign is missing: %d %q, want 404 naming node.ign", code, body)
	}
	_, err = c.Ignition.IgnitionPut(ctx, &serverpb.IgnitionPutRequest{Name: "node.ign", Config: []byte(rawIgnition)})
	must("IgnitionPut raw", err)
	_, err = c.Ignition.IgnitionPut(ctx, &serverpb.IgnitionPutRequest{Name: "worker.yaml.tmpl", Config: []byte(butaneTmpl)})
	must("IgnitionPut Butane", err)
	_, err = c.Generic.GenericPut(ctx, &serverpb.GenericPutRequest{Name: "node", Config: []byte(genericTmpl)})
	must("GenericPut", err)
	def := &storagepb.Group{Id: "default", Profile: "worker"}
	_, err = c.Groups.GroupPut(ctx, &serverpb.GroupPutRequest{Group: def})
	must("GroupPut default", err)

	// Reads: byte-identical templates, the profile and group as written.
	for name, want := range map[string]string{"node.ign": rawIgnition, "worker.yaml.tmpl": butaneTmpl} {
		r, err := c.Ignition.IgnitionGet(ctx, &serverpb.IgnitionGetRequest{Name: name})
		must("IgnitionGet "+name, err)
		if string(r.Config) != want {
			t.Errorf("IgnitionGet %s = %q, want the bytes written %q", name, r.Config, want)
		}
	}
	gr, err := c.Generic.GenericGet(ctx, &serverpb.GenericGetRequest{Name: "node"})
	must("GenericGet", err)
	if string(gr.Config) != genericTmpl {
		t.Errorf("GenericGet = %q, want %q", gr.Config, genericTmpl)
	}
	pr, err := c.Profiles.ProfileGet(ctx, &serverpb.ProfileGetRequest{Id: "node"})
	must("ProfileGet", err)
	if diff := cmp.Diff(node, pr.Profile, protocmp.Transform()); diff != "" {
		t.Errorf("ProfileGet node (-put +got):\n%s", diff)
	}
	grp, err := c.Groups.GroupGet(ctx, &serverpb.GroupGetRequest{Id: "node1"})
	must("GroupGet", err)
	wantNode1 := &storagepb.Group{Id: "node1", Profile: "node", Selector: node1.Selector, Metadata: []byte(`{"n":"1","pxe":"yes"}`)}
	if diff := cmp.Diff(wantNode1, grp.Group, protocmp.Transform()); diff != "" {
		t.Errorf("GroupGet node1 (-want +got):\n%s", diff)
	}
	// The group's metadata is what the provider reads back.
	rich, err := grp.Group.ToRichGroup()
	must("ToRichGroup", err)
	if rich.Metadata["pxe"] != "yes" {
		t.Errorf("metadata read back: %v", rich.Metadata)
	}
	pl, err := c.Profiles.ProfileList(ctx, &serverpb.ProfileListRequest{})
	must("ProfileList", err)
	if len(pl.Profiles) != 2 {
		t.Errorf("ProfileList: %d profiles, want 2", len(pl.Profiles))
	}
	gl, err = c.Groups.GroupList(ctx, &serverpb.GroupListRequest{})
	must("GroupList", err)
	if len(gl.Groups) != 2 {
		t.Errorf("GroupList: %d groups, want 2", len(gl.Groups))
	}
	sg, err := c.Select.SelectGroup(ctx, &serverpb.SelectGroupRequest{Labels: map[string]string{"mac": "52:54:00:a1:9c:ae"}})
	must("SelectGroup", err)
	if sg.Group.Id != "node1" {
		t.Errorf("SelectGroup by MAC = %q, want node1", sg.Group.Id)
	}
	sp, err := c.Select.SelectProfile(ctx, &serverpb.SelectProfileRequest{Labels: map[string]string{"mac": "52:54:00:00:00:01"}})
	must("SelectProfile", err)
	if sp.Profile.Id != "worker" {
		t.Errorf("SelectProfile of an unknown MAC = %q, want the default group's worker", sp.Profile.Id)
	}
	code, body = get(t, "http://"+s.httpAddr+"/generic?mac=52:54:00:a1:9c:ae")
	if code != http.StatusOK || body != "mac=52:54:00:a1:9c:ae\r\nno final newline" {
		t.Errorf("/generic = %d %q", code, body)
	}

	// Deletes in the provider's order: profile, then its templates.
	for _, id := range []string{"node1", "default"} {
		_, err = c.Groups.GroupDelete(ctx, &serverpb.GroupDeleteRequest{Id: id})
		must("GroupDelete "+id, err)
	}
	for _, id := range []string{"node", "worker"} {
		_, err = c.Profiles.ProfileDelete(ctx, &serverpb.ProfileDeleteRequest{Id: id})
		must("ProfileDelete "+id, err)
	}
	for _, name := range []string{"node.ign", "worker.yaml.tmpl"} {
		_, err = c.Ignition.IgnitionDelete(ctx, &serverpb.IgnitionDeleteRequest{Name: name})
		must("IgnitionDelete "+name, err)
	}
	_, err = c.Generic.GenericDelete(ctx, &serverpb.GenericDeleteRequest{Name: "node"})
	must("GenericDelete", err)
	_, err = c.Profiles.ProfileGet(ctx, &serverpb.ProfileGetRequest{Id: "node"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("ProfileGet after delete: %v, want NotFound", err)
	}
	pl, err = c.Profiles.ProfileList(ctx, &serverpb.ProfileListRequest{})
	must("ProfileList", err)
	gl, err = c.Groups.GroupList(ctx, &serverpb.GroupListRequest{})
	must("GroupList", err)
	if len(pl.Profiles)+len(gl.Groups) != 0 {
		t.Errorf("after every delete: %d profiles, %d groups left", len(pl.Profiles), len(gl.Groups))
	}
}

// TestV011ClientRefused: without a client certificate every call is
// refused; with a certificate from another CA the handshake is.
func TestV011ClientRefused(t *testing.T) {
	p := servetest.NewPKI(t, "matchbox")
	s := startServe(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	c, err := dialV011(t, s, p, "", "")
	if err != nil {
		t.Fatalf("dial without a client certificate: %v", err)
	}
	_, err = c.Profiles.ProfileList(ctx, &serverpb.ProfileListRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("ProfileList without a client certificate: %v, want Unauthenticated", err)
	}
	_, err = c.Generic.GenericPut(ctx, &serverpb.GenericPutRequest{Name: "x", Config: []byte("x")})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("GenericPut without a client certificate: %v, want Unauthenticated", err)
	}

	other := servetest.NewPKI(t, "other")
	// The other CA's client certificate, trusting the right server CA.
	cfg := p.ClientTLS(t, other.ClientCert, other.ClientKey)
	oc, err := client.New(&client.Config{Endpoints: []string{s.apiAddr}, DialTimeout: 3 * time.Second, TLS: cfg})
	if err == nil {
		defer oc.Close()
		_, err = oc.Profiles.ProfileList(ctx, &serverpb.ProfileListRequest{})
	}
	if err == nil {
		t.Errorf("a client certificate from another CA was accepted")
	}

	// A read-only certificate (OU read) reads but may not write.
	roCert, roKey := p.Issue(t, "reader", 9, x509.ExtKeyUsageClientAuth, "read")
	rc, err := dialV011(t, s, p, roCert, roKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Profiles.ProfileList(ctx, &serverpb.ProfileListRequest{}); err != nil {
		t.Errorf("ProfileList with a read-only certificate: %v", err)
	}
	_, err = rc.Generic.GenericPut(ctx, &serverpb.GenericPutRequest{Name: "x", Config: []byte("x")})
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("GenericPut with a read-only certificate: %v, want PermissionDenied", err)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
