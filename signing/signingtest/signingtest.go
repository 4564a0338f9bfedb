// Package signingtest makes OpenPGP keys with the real gpg for tests and
// verifies signatures with the real gpgv.
package signingtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"matchbox/internal/needs"
)

// Key is a key made by gpg: its secret key ring (as --key-ring-path takes
// it) and its public key ring (as gpgv takes it).
type Key struct {
	SecretRing string
	PublicRing string
}

// Generate makes a key of the given gpg algorithm lines ("Key-Type: RSA\n
// Key-Length: 2048" or "Key-Type: EDDSA\nKey-Curve: ed25519"), protected by
// passphrase when it is not empty, with `gpg --batch` in a home of its own
// under t.TempDir(). It skips the test when gpg is not installed.
func Generate(t *testing.T, keyType, passphrase string) Key {
	t.Helper()
	if _, err := exec.LookPath("gpg"); err != nil {
		needs.Skip(t, "gpg not installed (apt-get install gnupg)")
	}
	dir := t.TempDir()
	home := filepath.Join(dir, "gnupg")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	protection := "%no-protection"
	if passphrase != "" {
		protection = "Passphrase: " + passphrase
	}
	params := keyType + "\nName-Real: matchbox test\nName-Email: test@matchbox.invalid\nExpire-Date: 0\n" + protection + "\n%commit\n"
	gpg := func(stdin string, args ...string) []byte {
		t.Helper()
		cmd := exec.Command("gpg", append([]string{"--homedir", home, "--batch", "--pinentry-mode", "loopback", "--passphrase", passphrase}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return out
	}
	t.Cleanup(func() {
		// gpg started an agent for this home; stop it.
		exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run()
	})
	gpg(params, "--gen-key")
	k := Key{SecretRing: filepath.Join(dir, "secring.gpg"), PublicRing: filepath.Join(dir, "pubring.gpg")}
	if err := os.WriteFile(k.SecretRing, gpg("", "--export-secret-keys"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.PublicRing, gpg("", "--export"), 0o644); err != nil {
		t.Fatal(err)
	}
	return k
}

// Verify checks a detached signature of data with gpgv against the key's
// public ring; it returns gpgv's error and output. It skips the test when
// gpgv is not installed.
func (k Key) Verify(t *testing.T, data, sig []byte) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("gpgv"); err != nil {
		needs.Skip(t, "gpgv not installed (apt-get install gpgv)")
	}
	dir := t.TempDir()
	d, s := filepath.Join(dir, "data"), filepath.Join(dir, "data.sig")
	if err := os.WriteFile(d, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s, sig, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("gpgv", "--homedir", dir, "--keyring", k.PublicRing, s, d).CombinedOutput()
	return string(out), err
}
