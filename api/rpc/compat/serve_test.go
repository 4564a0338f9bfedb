package compat

import (
	"path/filepath"
	"sync"
	"testing"

	"matchbox/internal/servetest"
)

// buildMatchbox builds this repository's matchbox binary once per test run.
var buildMatchbox = sync.OnceValues(servetest.Build)

// server is a running `matchbox serve` with the API on TLS.
type server struct {
	*servetest.Process
	httpAddr, apiAddr string
}

// startServe runs `matchbox serve` on an empty data directory with the API
// on its own TLS listener that requires client certificates of p's CA.
func startServe(t *testing.T, p *servetest.PKI) *server {
	t.Helper()
	bin, err := buildMatchbox()
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	args := []string{"serve",
		"--data-dir", data, "--db", filepath.Join(data, "matchbox.db"), "--assets-dir", "-",
		"--http-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0",
		"--tls-cert-file", p.ServerCert, "--tls-key-file", p.ServerKey, "--tls-client-ca-file", p.CAFile}
	proc := servetest.Start(t, bin, args, nil, servetest.HTTPListening, servetest.APIListening)
	return &server{Process: proc, httpAddr: proc.Addrs[0], apiAddr: proc.Addrs[1]}
}
