package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"

	"matchbox/store"
)

// testCA issues client certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) client(t *testing.T, serial int64, ou ...string) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "operator", OrganizationalUnit: ou},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestAPIClientCertificates(t *testing.T) {
	st, err := store.Open(context.Background(), store.Config{Path: filepath.Join(t.TempDir(), "m.db"), Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, err := New(Config{Store: st, RequireClientCert: true})
	if err != nil {
		t.Fatal(err)
	}
	r := mux.NewRouter()
	a.Register(r)
	ca := newTestCA(t)
	other := newTestCA(t)
	srv := httptest.NewUnstartedServer(r)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	srv.TLS = &tls.Config{ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven}
	srv.StartTLS()
	defer srv.Close()

	tests := []struct {
		name      string
		cert      *tls.Certificate
		method    string
		status    int
		handshake bool // the TLS handshake itself fails
	}{
		{name: "no certificate", method: "GET", status: 401},
		{name: "admin certificate reads", cert: ptr(ca.client(t, 2)), method: "GET", status: 200},
		{name: "admin certificate writes", cert: ptr(ca.client(t, 3)), method: "POST", status: 201},
		{name: "read certificate reads", cert: ptr(ca.client(t, 4, "read")), method: "GET", status: 200},
		{name: "read certificate may not write", cert: ptr(ca.client(t, 5, "read")), method: "POST", status: 403},
		{name: "certificate of another CA", cert: ptr(other.client(t, 6)), method: "GET", handshake: true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := srv.Client().Transport.(*http.Transport).Clone()
			if tt.cert != nil {
				tr.TLSClientConfig.Certificates = []tls.Certificate{*tt.cert}
			}
			c := &http.Client{Transport: tr}
			var body *strings.Reader
			if tt.method == "POST" {
				body = strings.NewReader(`{"id": "p` + string(rune('a'+i)) + `"}`)
			} else {
				body = strings.NewReader("")
			}
			req, _ := http.NewRequest(tt.method, srv.URL+"/api/v1/profiles", body)
			resp, err := c.Do(req)
			if tt.handshake {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("a certificate of another CA was accepted: %d", resp.StatusCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
