// Package signing serves OpenPGP detached signatures of the boot endpoints'
// answers, as matchbox v0.11 does with -key-ring-path: beside each signed
// endpoint P, P.sig answers the binary signature and P.asc the armored one
// of exactly the bytes P answers for the same request. Like v0.11, the
// signatures are canonical-text signatures (OpenPGP type 0x01) made with the
// first key of the key ring.
package signing

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Signer signs with one decrypted OpenPGP key.
type Signer struct {
	entity *openpgp.Entity
}

// Load reads an OpenPGP key ring (binary or armored, as `gpg
// --export-secret-keys` writes it) and unlocks its first key with
// passphrase. A key ring without a private key, a protected key without a
// passphrase and a wrong passphrase are errors naming the file.
func Load(path, passphrase string) (*Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing key ring: %w", err)
	}
	var ring openpgp.EntityList
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN PGP")) {
		ring, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	} else {
		ring, err = openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	if err != nil {
		return nil, fmt.Errorf("signing key ring %s: %w", path, err)
	}
	if len(ring) == 0 {
		return nil, fmt.Errorf("signing key ring %s: no keys", path)
	}
	e := ring[0]
	if e.PrivateKey == nil {
		return nil, fmt.Errorf("signing key ring %s: its first key has no private part (export it with gpg --export-secret-keys)", path)
	}
	if encrypted(e) {
		if passphrase == "" {
			return nil, fmt.Errorf("signing key ring %s: the key is protected and MATCHBOX_PASSPHRASE is not set", path)
		}
		if err := e.DecryptPrivateKeys([]byte(passphrase)); err != nil {
			return nil, fmt.Errorf("signing key ring %s: wrong passphrase (MATCHBOX_PASSPHRASE): %w", path, err)
		}
	}
	s := &Signer{entity: e}
	// Sign once now: a key that cannot sign fails the start, not requests.
	if err := s.Sign(io.Discard, strings.NewReader("probe"), false); err != nil {
		return nil, fmt.Errorf("signing key ring %s: %w", path, err)
	}
	return s, nil
}

func encrypted(e *openpgp.Entity) bool {
	if e.PrivateKey.Encrypted {
		return true
	}
	for _, sub := range e.Subkeys {
		if sub.PrivateKey != nil && sub.PrivateKey.Encrypted {
			return true
		}
	}
	return false
}

// KeyID returns the signing key's fingerprint, in hex, for logs.
func (s *Signer) KeyID() string {
	return fmt.Sprintf("%X", s.entity.PrimaryKey.Fingerprint)
}

// Sign writes a detached canonical-text signature of message to w, armored
// or binary.
func (s *Signer) Sign(w io.Writer, message io.Reader, armored bool) error {
	cfg := &packet.Config{}
	if armored {
		return openpgp.ArmoredDetachSignText(w, s.entity, message, cfg)
	}
	return openpgp.DetachSignText(w, s.entity, message, cfg)
}

// Suffixes of the signature paths and their content types.
const (
	SuffixBinary  = ".sig"
	SuffixArmored = ".asc"
	contentType   = "application/pgp-signature"
)

// Front returns a handler that answers P.sig and P.asc for each path P in
// paths and passes every other request to next. A signature request is
// answered by asking next for P with the same query and headers; a 200
// answer is signed, any other answer (a 404 for a machine no group
// matches, say) is passed on unchanged and unsigned. HEAD is answered as
// GET without a body.
func (s *Signer) Front(paths []string, next http.Handler) http.Handler {
	signed := make(map[string]bool, 2*len(paths))
	for _, p := range paths {
		signed[p+SuffixBinary] = true
		signed[p+SuffixArmored] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !signed[r.URL.Path] {
			next.ServeHTTP(w, r)
			return
		}
		armored := strings.HasSuffix(r.URL.Path, SuffixArmored)
		inner := r.Clone(r.Context())
		inner.URL.Path = r.URL.Path[:len(r.URL.Path)-len(SuffixBinary)]
		inner.URL.RawPath = ""
		inner.RequestURI = inner.URL.RequestURI()
		if inner.Method == http.MethodHead {
			inner.Method = http.MethodGet
		}
		rec := &recorder{header: http.Header{}}
		next.ServeHTTP(rec, inner)
		if rec.code == 0 {
			rec.code = http.StatusOK
		}
		if rec.code != http.StatusOK {
			for k, v := range rec.header {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.code)
			w.Write(rec.body.Bytes())
			return
		}
		var sig bytes.Buffer
		if err := s.Sign(&sig, bytes.NewReader(rec.body.Bytes()), armored); err != nil {
			http.Error(w, "signing: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Content-Length", fmt.Sprint(sig.Len()))
		if cc := rec.header.Get("Cache-Control"); cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		w.WriteHeader(http.StatusOK)
		w.Write(sig.Bytes())
	})
}

// recorder holds an answer of next in memory.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}
