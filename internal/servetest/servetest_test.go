package servetest

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

var buildOnce = sync.OnceValues(Build)

// TestStartServesAndStops runs the real binary, reaches it on the address
// its log announced and finds its log kept.
func TestStartServesAndStops(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the matchbox binary: not in -short mode")
	}
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := Start(t, bin, []string{"serve", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--assets-dir", "-"}, nil, HTTPListening)
	resp, err := http.Get("http://" + p.Addrs[0] + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
	if !strings.Contains(p.Logs(), `msg="matchbox serving"`) {
		t.Errorf("logs lack the listening line:\n%s", p.Logs())
	}
}

// TestPKIClientAndServerVerify: a TLS server with the PKI's server
// certificate requiring client certificates of its CA accepts ClientTLS
// with the client certificate and refuses a client without one.
func TestPKIClientAndServerVerify(t *testing.T) {
	p := NewPKI(t, "unit")
	cert, err := tls.LoadX509KeyPair(p.ServerCert, p.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: p.Pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	defer srv.Close()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: p.ClientTLS(t, p.ClientCert, p.ClientKey)}}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatalf("with the client certificate: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "client" {
		t.Errorf("server saw client %q, want client", b)
	}
	reader, readerKey := p.Issue(t, "reader", 9, x509.ExtKeyUsageClientAuth, "read")
	c = &http.Client{Transport: &http.Transport{TLSClientConfig: p.ClientTLS(t, reader, readerKey)}}
	if resp, err := c.Get(srv.URL); err != nil {
		t.Errorf("with an issued certificate: %v", err)
	} else {
		resp.Body.Close()
	}
	c = &http.Client{Transport: &http.Transport{TLSClientConfig: p.ClientTLS(t, "", "")}}
	if resp, err := c.Get(srv.URL); err == nil {
		resp.Body.Close()
		t.Errorf("a client without a certificate was accepted")
	}
}
