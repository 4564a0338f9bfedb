package compat

import (
	"context"
	"crypto/x509"
	"io"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/poseidon/matchbox/matchbox/client"
	"github.com/poseidon/matchbox/matchbox/server/serverpb"
)

// Templates whose bytes any re-encoding would change.
const (
	rawIgnition = "{ \"ignition\" : {\"version\":\"3.4.0\"},\r\n  \"storage\": {\"files\": [{\"path\": \"/etc/motd\", \"contents\": {\"source\": \"data:,h%C3%A9\"}}]}  }  \n\n"
	butaneTmpl  = "variant: flatcar\nversion: 1.0.0\npassd:\n  users:\n    - name: core\t\n# é {{.mac}}   \n"
	genericTmpl = "mac={{.mac}}\r\nno final newline"
)

func dialV011(t *testing.T, s *server, p *pki, certFile, keyFile string) (*client.Client, error) {
	t.Helper()
	c, err := client.New(&client.Config{Endpoints: []string{s.apiAddr}, DialTimeout: 5 * time.Second, TLS: p.clientTLS(t, certFile, keyFile)})
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// TestV011ClientRefused: without a client certificate every call is
// refused; with a certificate from another CA the handshake is.
func TestV011ClientRefused(t *testing.T) {
	p := newPKI(t, "matchbox")
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

	other := newPKI(t, "other")
	// The other CA's client certificate, trusting the right server CA.
	cfg := p.clientTLS(t, other.clientCert, other.clientKey)
	oc, err := client.New(&client.Config{Endpoints: []string{s.apiAddr}, DialTimeout: 3 * time.Second, TLS: cfg})
	if err == nil {
		defer oc.Close()
		_, err = oc.Profiles.ProfileList(ctx, &serverpb.ProfileListRequest{})
	}
	if err == nil {
		t.Errorf("a client certificate from another CA was accepted")
	}

	// A read-only certificate (OU read) reads but may not write.
	roCert, roKey := p.issue(t, "reader", 9, x509.ExtKeyUsageClientAuth, "read")
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
