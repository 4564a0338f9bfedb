package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gorilla/mux"
	"github.com/spf13/pflag"

	"matchbox/api"
	"matchbox/api/rpc"
	"matchbox/audit"
	"matchbox/hardware/facts"
)

// apiOptions are the flags of the REST API, served on the boot endpoints'
// --http-addr or on its own --api-addr listener (required for TLS, as the
// boot endpoints must stay plain HTTP for firmware).
type apiOptions struct {
	tokenFile    string
	addr         string
	certFile     string
	keyFile      string
	clientCAFile string
	maxBody      int64
	maxConns     int
	uiSessionTTL time.Duration
}

func (e *apiOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&e.tokenFile, "api-token-file", "", "file of API bearer tokens, one \"TOKEN ROLE [NAME]\" per line (ROLE read or admin; NAME is the audit trail's actor); reloaded on SIGHUP. Without it the API answers loopback clients only")
	f.DurationVar(&e.uiSessionTTL, "ui-session-ttl", 12*time.Hour, "how long a web console login lasts")
	f.IntVar(&e.maxConns, "api-max-conns", 0, "connections --api-addr holds open at once, the last 1/16 kept for short requests (0: derived from the open-file limit)")
	f.StringVar(&e.addr, "api-addr", "", "serve the API on this address instead of --http-addr (required with TLS; with TLS it also serves v0.11's gRPC API)")
	f.StringVar(&e.certFile, "tls-cert-file", "", "TLS certificate of the API listener (--api-addr)")
	f.StringVar(&e.keyFile, "tls-key-file", "", "TLS private key of the API listener (--api-addr)")
	f.StringVar(&e.clientCAFile, "tls-client-ca-file", "", "CA bundle that signs API client certificates: the API then requires a verified client certificate or a bearer token")
	f.Int64Var(&e.maxBody, "api-max-body", api.DefaultMaxBodyBytes, "largest API request body in bytes")
}

// startAPI builds the API from its flags and serves it: routes on s.router,
// or its own listener as a task of s. The discovery agent's report is
// routed on s.router in either case, authenticated by the machine's agent
// token, not an API token: its route comes before the API's.
func (s *services) startAPI(e *apiOptions) error {
	tlsOn := e.certFile != "" || e.keyFile != "" || e.clientCAFile != ""
	if tlsOn && (e.certFile == "" || e.keyFile == "") {
		return errors.New("API TLS needs both --tls-cert-file and --tls-key-file")
	}
	if tlsOn && e.addr == "" {
		return errors.New("API TLS needs --api-addr: the boot endpoints on --http-addr stay plain HTTP for firmware")
	}
	cfg := api.Config{Store: s.store, Logger: s.log, ParseFact: facts.ParseFact, MaxBodyBytes: e.maxBody, RequireClientCert: e.clientCAFile != "", Lifecycle: s.lifecycle, Leases: s.store, Renderer: s.boot, Instances: s.instances, Audit: s.store}
	if e.tokenFile != "" {
		tokens, err := api.LoadTokens(e.tokenFile)
		if err != nil {
			return fmt.Errorf("--api-token-file: %w", err)
		}
		cfg.Tokens = tokens
		s.tasks = append(s.tasks, func(ctx context.Context) error { return reloadTokensOnHUP(ctx, s, tokens) })
		s.log.Info("API tokens loaded", "file", e.tokenFile, "tokens", tokens.Len())
	}
	a, err := api.New(cfg)
	if err != nil {
		return err
	}
	if err := a.RegisterAgent(s.router, api.AgentConfig{Key: s.agentKey, Inventories: s.lifecycle}); err != nil {
		return err
	}
	if e.addr == "" {
		a.Register(s.router)
		return s.registerUI(s.router, a, e.uiSessionTTL)
	}
	router := mux.NewRouter()
	a.Register(router)
	if err := s.registerUI(router, a, e.uiSessionTTL); err != nil {
		return err
	}
	var handler http.Handler = router
	if tlsOn {
		// v0.11's gRPC API (the Terraform provider's) shares the
		// listener: HTTP/2 requests of Content-Type application/grpc.
		g, err := rpc.New(rpc.Config{
			Catalog:  api.RPCCatalog{Store: s.store},
			MayWrite: func(c *x509.Certificate) bool { return api.CertificateRole(c) == api.RoleAdmin },
			Logger:   s.log,
		})
		if err != nil {
			return err
		}
		handler = rpc.Mux(g, router)
		if e.clientCAFile == "" {
			s.log.Warn("the v0.11 gRPC API on --api-addr refuses every call without --tls-client-ca-file: it requires client certificates")
		}
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		// Bulk provisioning answers once every machine is done.
		WriteTimeout: 10 * time.Minute,
		IdleTimeout:  120 * time.Second,
	}
	if tlsOn {
		cert, err := tls.LoadX509KeyPair(e.certFile, e.keyFile)
		if err != nil {
			return fmt.Errorf("API TLS: %w", err)
		}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
		if e.clientCAFile != "" {
			pem, err := os.ReadFile(e.clientCAFile)
			if err != nil {
				return fmt.Errorf("--tls-client-ca-file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("--tls-client-ca-file %s: no PEM certificate in it", e.clientCAFile)
			}
			srv.TLSConfig.ClientCAs = pool
			// Verified when sent; the API refuses requests without a
			// verified certificate or a bearer token.
			srv.TLSConfig.ClientAuth = tls.VerifyClientCertIfGiven
		}
	}
	ln, err := s.listen("--api-addr", e.addr, "--api-max-conns", e.maxConns)
	if err != nil {
		return err
	}
	s.apiLn = ln
	s.tasks = append(s.tasks, func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() {
			s.log.Info("matchbox API serving", "addr", ln.Addr().String(), "tls", tlsOn, "client_ca", e.clientCAFile != "", "grpc", tlsOn)
			if tlsOn {
				errc <- srv.ServeTLS(ln, "", "")
			} else {
				errc <- srv.Serve(ln)
			}
		}()
		select {
		case err := <-errc:
			return fmt.Errorf("API server: %w", err)
		case <-ctx.Done():
			shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			srv.Shutdown(shut)
			return nil
		}
	})
	return nil
}

// reloadTokensOnHUP reloads the tokens file on every SIGHUP until ctx ends.
func reloadTokensOnHUP(ctx context.Context, s *services, tokens *api.Tokens) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			changes, err := tokens.ReloadChanges()
			if err != nil {
				s.log.Error("API tokens not reloaded, keeping the previous set", "err", err)
				continue
			}
			s.log.Info("API tokens reloaded", "tokens", tokens.Len())
			// Each token added, removed or given another role is a
			// change of who may do what: audited.
			if err := s.store.RecordAudit(audit.WithActor(ctx, audit.ActorTokenFile), changes...); err != nil {
				s.log.Error("API token changes not recorded in the audit trail", "err", err)
			}
		}
	}
}
