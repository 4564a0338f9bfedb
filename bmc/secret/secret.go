// Package secret encrypts BMC credentials at rest with AES-256-GCM.
//
// A sealed value is: one version byte (1), the 12-byte random nonce, then the
// GCM ciphertext and tag. The version byte lets a later key scheme (key ids,
// rotation) coexist with values sealed today. The associated data binds a
// sealed value to its owner (the machine id): a value copied to another
// machine does not open. The store keeps only sealed bytes; the key lives in
// a key file outside the store (LoadKeyFile).
package secret

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
)

// KeySize is the key length in bytes (AES-256).
const KeySize = 32

// version1 marks values sealed with AES-256-GCM and a 12-byte nonce.
const version1 byte = 1

const nonceSize = 12

// Errors matched with errors.Is.
var (
	// ErrDecrypt reports a sealed value that does not open: the key is not
	// the one it was sealed with, the associated data (machine id) differs,
	// or the value was altered.
	ErrDecrypt = errors.New("credentials cannot be decrypted: wrong secret key, another machine's credentials, or corrupted data")
	// ErrMalformed reports bytes that are not a sealed value at all.
	ErrMalformed = errors.New("not a sealed credential")
	// ErrBadKey reports key material of the wrong size or encoding.
	ErrBadKey = errors.New("invalid secret key")
)

// Key seals and opens credentials. It is safe for concurrent use.
type Key struct {
	aead cipher.AEAD
}

// NewKey returns a Key for 32 raw key bytes.
func NewKey(raw []byte) (*Key, error) {
	if len(raw) != KeySize {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrBadKey, len(raw), KeySize)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	return &Key{aead: aead}, nil
}

// ParseKey decodes key material: 32 raw bytes, or 64 hexadecimal digits, or
// standard/URL base64 of 32 bytes, text forms allowed a trailing newline.
func ParseKey(b []byte) ([]byte, error) {
	if len(b) == KeySize {
		return append([]byte(nil), b...), nil
	}
	text := bytes.TrimRight(b, "\r\n")
	text = bytes.TrimSpace(text)
	if len(text) == 2*KeySize {
		if k, err := hex.DecodeString(string(text)); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(string(text)); err == nil && len(k) == KeySize {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w: want 32 raw bytes, 64 hex digits or base64 of 32 bytes; got %d bytes", ErrBadKey, len(b))
}

// LoadKeyFile reads a key file written by an operator
// (e.g. `head -c32 /dev/urandom | base64 > key`).
func LoadKeyFile(path string) (*Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read secret key file: %w", err)
	}
	raw, err := ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("secret key file %s: %w", path, err)
	}
	return NewKey(raw)
}

// Seal encrypts plaintext bound to associatedData (the machine id) with a
// fresh random nonce.
func (k *Key) Seal(plaintext, associatedData []byte) ([]byte, error) {
	out := make([]byte, 1+nonceSize, 1+nonceSize+len(plaintext)+k.aead.Overhead())
	out[0] = version1
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("seal credentials: nonce: %w", err)
	}
	return k.aead.Seal(out, out[1:1+nonceSize], plaintext, associatedData), nil
}

// Open decrypts a value sealed by Seal with the same associatedData. It
// returns ErrDecrypt when the key, the associated data or the bytes differ.
func (k *Key) Open(sealed, associatedData []byte) ([]byte, error) {
	if len(sealed) == 0 {
		return nil, fmt.Errorf("open credentials: %w: empty", ErrMalformed)
	}
	if sealed[0] != version1 {
		return nil, fmt.Errorf("open credentials: %w: unknown version %d", ErrMalformed, sealed[0])
	}
	if len(sealed) < 1+nonceSize+k.aead.Overhead() {
		return nil, fmt.Errorf("open credentials: %w: %d bytes is too short", ErrMalformed, len(sealed))
	}
	pt, err := k.aead.Open(nil, sealed[1:1+nonceSize], sealed[1+nonceSize:], associatedData)
	if err != nil {
		return nil, fmt.Errorf("open credentials: %w", ErrDecrypt)
	}
	return pt, nil
}
