package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"matchbox/signing"
	v011 "matchbox/v011"
	"matchbox/version"
)

// v011Annotation marks the hidden v0.11 flags; bindEnv leaves them alone,
// as their variables are resolved by the v011 package.
const v011Annotation = "matchbox/v0.11-alias"

// compatOptions are the flags of the boot listener's TLS and signing, and
// what the v0.11 aliases resolved to.
type compatOptions struct {
	httpCertFile string
	httpKeyFile  string
	keyRing      string
	passphrase   string   // MATCHBOX_PASSPHRASE
	notes        []string // v0.11 settings used or ignored, logged once at start
	logLevelNote string
}

func (c *compatOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&c.httpCertFile, "http-tls-cert-file", "", "TLS certificate of the boot endpoints' listener (--http-addr): HTTPS instead of HTTP (v0.11's -web-ssl with -web-cert-file)")
	f.StringVar(&c.httpKeyFile, "http-tls-key-file", "", "TLS private key of the boot endpoints' listener (v0.11's -web-key-file)")
	f.StringVar(&c.keyRing, "signing-keyring", "", "OpenPGP secret key ring: serve detached signatures of the boot endpoints at <endpoint>.sig and .asc; its passphrase comes from MATCHBOX_PASSPHRASE only (v0.11's -key-ring-path)")
	for _, name := range v011.Flags() {
		if v011.BoolFlag(name) {
			f.Bool(name, false, "v0.11 alias")
		} else {
			f.String(name, "", "v0.11 alias")
		}
		f.Lookup(name).Hidden = true
		f.SetAnnotation(name, v011Annotation, []string{"true"})
	}
}

// resolveV011 applies v0.11's flags and MATCHBOX_* variables to fs (after
// bindEnv has applied this server's own variables).
func (c *compatOptions) resolveV011(fs *pflag.FlagSet) error {
	in := v011.Input{Env: os.LookupEnv, Args: map[string]string{}, Set: map[string]string{}}
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Changed {
			return
		}
		if f.Annotations[v011Annotation] != nil {
			in.Args[f.Name] = f.Value.String()
		} else {
			in.Set[f.Name] = f.Value.String()
		}
	})
	res, err := v011.Resolve(in)
	if err != nil {
		return fmt.Errorf("v0.11 settings: %w", err)
	}
	for _, a := range res.Assign {
		if err := fs.Set(a.Flag, a.Value); err != nil {
			return fmt.Errorf("%s: --%s=%q: %w", a.From, a.Flag, a.Value, err)
		}
	}
	c.notes = append(res.Used, res.Ignored...)
	c.passphrase = res.Passphrase
	return nil
}

// logNotes logs each v0.11 setting in use once.
func (c *compatOptions) logNotes(log *slog.Logger) {
	for _, n := range c.notes {
		log.Info("v0.11 alias", "setting", n)
	}
	if c.logLevelNote != "" {
		log.Info("v0.11 alias", "setting", c.logLevelNote)
	}
}

// loadSigner loads the signing key ring, if one is configured.
func (c *compatOptions) loadSigner() (*signing.Signer, error) {
	if c.keyRing == "" {
		return nil, nil
	}
	s, err := signing.Load(c.keyRing, c.passphrase)
	if err != nil {
		return nil, fmt.Errorf("--signing-keyring: %w", err)
	}
	return s, nil
}

// httpTLS reports whether the boot listener serves HTTPS, checking that
// its certificate and key come together.
func (c *compatOptions) httpTLS() (bool, error) {
	if (c.httpCertFile == "") != (c.httpKeyFile == "") {
		return false, fmt.Errorf("HTTPS on --http-addr needs both --http-tls-cert-file and --http-tls-key-file")
	}
	return c.httpCertFile != "", nil
}

// newVersionCommand returns `matchbox version`.
func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Fprintln(cmd.OutOrStdout(), version.Get())
		},
	}
}

// withServeDefault returns args for root: v0.11's single-dash flags in
// double-dash form and, when args name no subcommand (bare `matchbox`, as
// v0.11's unit runs it, or `matchbox -address ...`), "serve" in front.
// Help and version requests are left to root.
func withServeDefault(root *cobra.Command, args []string) []string {
	args = v011.NormalizeArgs(args)
	names := []string{"help", "completion"}
	for _, c := range root.Commands() {
		names = append(names, c.Name())
		names = append(names, c.Aliases...)
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		if slices.Contains(names, a) || a == "-h" || a == "--help" || a == "--version" || strings.HasPrefix(a, "--help=") {
			return args
		}
	}
	return append([]string{"serve"}, args...)
}

// loadServerTLS loads the boot listener's certificate and key.
func loadServerTLS(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--http-tls-cert-file/--http-tls-key-file: %w", err)
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}
