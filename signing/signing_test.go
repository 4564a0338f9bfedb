package signing

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"matchbox/signing/signingtest"
)

// endpoints answers like boot endpoints: text, CRLF and binary bytes that
// depend on the query, and 404 for ?missing.
func endpoints() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("missing") {
			http.Error(w, "no group matches", http.StatusNotFound)
			return
		}
		switch r.URL.Path {
		case "/ipxe":
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "#!ipxe\nkernel /k mac=%s\r\nboot \n\n", r.URL.Query().Get("mac"))
		case "/metadata":
			w.Write([]byte{0, 1, 2, '\r', '\n', 0xff, ' ', '\n'})
		default:
			http.NotFound(w, r)
		}
	})
}

func get(t *testing.T, url string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func TestSignaturesVerifyWithGpgv(t *testing.T) {
	keys := []struct{ name, keyType, pass string }{
		{"rsa protected", "Key-Type: RSA\nKey-Length: 2048", "correct horse"},
		{"ed25519 gpg default", "Key-Type: EDDSA\nKey-Curve: ed25519", "s3cret"},
		{"ed25519 unprotected", "Key-Type: EDDSA\nKey-Curve: ed25519", ""},
	}
	for _, kc := range keys {
		t.Run(kc.name, func(t *testing.T) {
			key := signingtest.Generate(t, kc.keyType, kc.pass)
			s, err := Load(key.SecretRing, kc.pass)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(s.Front([]string{"/ipxe", "/metadata"}, endpoints()))
			defer srv.Close()
			for _, p := range []string{"/ipxe?mac=52:54:00:00:00:01", "/metadata?mac=x"} {
				path, query, _ := strings.Cut(p, "?")
				code, _, body := get(t, srv.URL+p)
				if code != http.StatusOK {
					t.Fatalf("%s: %d", p, code)
				}
				for _, suffix := range []string{".sig", ".asc"} {
					code, h, sig := get(t, srv.URL+path+suffix+"?"+query)
					if code != http.StatusOK {
						t.Fatalf("%s%s: %d %s", path, suffix, code, sig)
					}
					if ct := h.Get("Content-Type"); ct != "application/pgp-signature" {
						t.Errorf("%s%s: Content-Type %q", path, suffix, ct)
					}
					if armored := bytes.HasPrefix(sig, []byte("-----BEGIN PGP SIGNATURE-----")); armored != (suffix == ".asc") {
						t.Errorf("%s%s: armored %v", path, suffix, armored)
					}
					if out, err := key.Verify(t, body, sig); err != nil {
						t.Errorf("gpgv rejects %s%s: %v\n%s", path, suffix, err, out)
					}
					// The signature covers these bytes and no others.
					other := append(bytes.Clone(body), 'x')
					if _, err := key.Verify(t, other, sig); err == nil {
						t.Errorf("gpgv accepts %s%s for other bytes", path, suffix)
					}
				}
			}
		})
	}
}

func TestFront(t *testing.T) {
	key := signingtest.Generate(t, "Key-Type: EDDSA\nKey-Curve: ed25519", "")
	s, err := Load(key.SecretRing, "")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Front([]string{"/ipxe"}, endpoints()))
	defer srv.Close()
	tests := []struct {
		path string
		code int
		body string
	}{
		{"/ipxe.sig?missing", http.StatusNotFound, "no group matches\n"}, // passed on unsigned
		{"/metadata.sig", http.StatusNotFound, "404 page not found\n"},   // not a signed path
		{"/ipxe", http.StatusOK, "#!ipxe\nkernel /k mac=\r\nboot \n\n"},  // untouched
	}
	for _, tc := range tests {
		code, _, body := get(t, srv.URL+tc.path)
		if code != tc.code || string(body) != tc.body {
			t.Errorf("%s: %d %q, want %d %q", tc.path, code, body, tc.code, tc.body)
		}
	}
	resp, err := http.Head(srv.URL + "/ipxe.asc")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength <= 0 {
		t.Errorf("HEAD /ipxe.asc: %d, length %d", resp.StatusCode, resp.ContentLength)
	}
}

func TestLoadErrors(t *testing.T) {
	key := signingtest.Generate(t, "Key-Type: EDDSA\nKey-Curve: ed25519", "right")
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.gpg")
	os.WriteFile(garbage, []byte("not a key ring"), 0o600)
	tests := []struct{ name, path, pass, want string }{
		{"wrong passphrase", key.SecretRing, "wrong", "wrong passphrase"},
		{"no passphrase", key.SecretRing, "", "MATCHBOX_PASSPHRASE is not set"},
		{"public ring only", key.PublicRing, "", "no private part"},
		{"missing file", filepath.Join(dir, "none.gpg"), "", "no such file"},
		{"garbage", garbage, "", "garbage.gpg"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.path, tc.pass)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v, want an error with %q", err, tc.want)
			}
		})
	}
	if _, err := Load(key.SecretRing, "right"); err != nil {
		t.Fatal(err)
	}
}
