package compat

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// buildMatchbox builds this repository's matchbox binary once per test run.
var buildMatchbox = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "matchbox-compat-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "matchbox")
	out, err := exec.Command("go", "build", "-o", bin, "matchbox/cmd/matchbox").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build matchbox/cmd/matchbox: %v\n%s", err, out)
	}
	return bin, nil
})

// pki is a CA with the server and client certificates it signed, written
// as PEM files.
type pki struct {
	dir                   string
	caFile                string
	serverCert, serverKey string
	clientCert, clientKey string
	ca                    *x509.Certificate
	caKey                 *ecdsa.PrivateKey
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name + " CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &pki{dir: dir, ca: ca, caKey: key, caFile: filepath.Join(dir, "ca.crt")}
	writePEM(t, p.caFile, "CERTIFICATE", der)
	p.serverCert, p.serverKey = p.issue(t, "server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = p.issue(t, "client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

// issue signs a certificate for 127.0.0.1 and writes it and its key.
func (p *pki) issue(t *testing.T, name string, serial int64, usage x509.ExtKeyUsage, ou ...string) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name, OrganizationalUnit: ou},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, name+".crt"), filepath.Join(p.dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t *testing.T, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// clientTLS is the TLS configuration of a client trusting p's CA and
// presenting certFile (none when empty).
func (p *pki) clientTLS(t *testing.T, certFile, keyFile string) *tls.Config {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(p.ca)
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg
}

// server is a running `matchbox serve` with the API on TLS.
type server struct {
	httpAddr, apiAddr string
	mu                sync.Mutex
	logs              strings.Builder
}

func (s *server) Logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs.String()
}

var (
	httpListenRE = regexp.MustCompile(`msg="matchbox serving" http=(\S+)`)
	apiListenRE  = regexp.MustCompile(`msg="matchbox API serving" addr=(\S+)`)
)

// startServe runs `matchbox serve` on an empty data directory with the API
// on its own TLS listener that requires client certificates of p's CA.
func startServe(t *testing.T, p *pki) *server {
	t.Helper()
	bin, err := buildMatchbox()
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	cmd := exec.Command(bin, "serve",
		"--data-dir", data, "--db", filepath.Join(data, "matchbox.db"), "--assets-dir", "-",
		"--http-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0",
		"--tls-cert-file", p.serverCert, "--tls-key-file", p.serverKey, "--tls-client-ca-file", p.caFile)
	cmd.Env = os.Environ()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{}
	addrs := make(chan [2]string, 2)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.logs.WriteString(line + "\n")
			s.mu.Unlock()
			if m := httpListenRE.FindStringSubmatch(line); m != nil {
				addrs <- [2]string{"http", m[1]}
			}
			if m := apiListenRE.FindStringSubmatch(line); m != nil {
				addrs <- [2]string{"api", m[1]}
			}
		}
		close(addrs)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Errorf("matchbox serve did not stop on SIGTERM; logs:\n%s", s.Logs())
		}
	})
	deadline := time.After(60 * time.Second)
	for s.httpAddr == "" || s.apiAddr == "" {
		select {
		case a, ok := <-addrs:
			if !ok {
				cmd.Wait()
				t.Fatalf("matchbox serve exited before listening; logs:\n%s", s.Logs())
			}
			if a[0] == "http" {
				s.httpAddr = a[1]
			} else {
				s.apiAddr = a[1]
			}
		case <-deadline:
			t.Fatalf("matchbox serve did not start; logs:\n%s", s.Logs())
		}
	}
	return s
}
