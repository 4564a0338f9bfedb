// Package token issues and verifies the bearer tokens a discovery agent
// presents when it reports a machine's inventory.
//
// The server issues a token for a machine when it renders the discovery
// profile (it goes into the kernel command line as matchbox.token=...) and
// verifies it on POST /api/v1/machines/{id}/inventory. A token is bound to
// one machine ID and to its issue time:
//
//	v1.<issued>.<mac>
//
// where <issued> is the issue time in Unix seconds, base 36, and <mac> is
// the unpadded URL-safe base64 of HMAC-SHA256(key, "matchbox-agent v1" NUL
// machineID NUL issued). Every character is URL- and kernel-command-line
// safe.
//
// Tokens expire: Verify accepts a token for MaxAge after it was issued. A
// token only has to last from the discovery boot's iPXE script to the
// agent's report, minutes; a machine that boots discovery again gets a new
// one, so a leaked token is useless after an hour. VerifyAt takes another
// age for callers that need one.
package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MaxAge is how long after issue Verify accepts a token.
const MaxAge = time.Hour

// MaxSkew is how far in the future an issue time may lie (clocks of
// several servers sharing one key may differ).
const MaxSkew = 5 * time.Minute

// MinKeyLen is the shortest key Verify accepts, in bytes.
const MinKeyLen = 32

// Errors returned by Verify; compare with errors.Is.
var (
	// ErrMalformed is a token that is not of the form v1.<issued>.<mac>.
	ErrMalformed = errors.New("malformed agent token")
	// ErrInvalid is a token whose signature does not match the key and
	// machine ID (a token of another machine, or a forged one).
	ErrInvalid = errors.New("invalid agent token")
	// ErrExpired is a token older than the allowed age, or issued in the
	// future.
	ErrExpired = errors.New("expired agent token")
	// ErrShortKey is a key shorter than MinKeyLen.
	ErrShortKey = errors.New("agent token key shorter than 32 bytes")
)

const version = "v1"

// Granularity is the step of issue times: Issue rounds the current time
// down to it, so that every answer rendered for a machine within one step
// carries the same token. Repeated fetches of a boot endpoint then answer
// the same bytes, and a detached signature fetched apart from its answer
// (/metadata.sig after /metadata) still matches it.
const Granularity = time.Minute

// Issue returns a token for machineID, issued now (rounded down to
// Granularity). key must be at least MinKeyLen random bytes, or Verify
// refuses every token made with it.
func Issue(key []byte, machineID string) string {
	return IssueAt(key, machineID, time.Now().Truncate(Granularity))
}

// IssueAt returns a token for machineID issued at t.
func IssueAt(key []byte, machineID string, t time.Time) string {
	issued := strconv.FormatInt(t.Unix(), 36)
	return version + "." + issued + "." + base64.RawURLEncoding.EncodeToString(mac(key, machineID, issued))
}

// Verify checks that token was issued with key for machineID within the
// last MaxAge. The signature comparison takes constant time.
func Verify(key []byte, machineID, token string) error {
	return VerifyAt(key, machineID, token, time.Now(), MaxAge)
}

// VerifyAt is Verify at time now with a maximum age of maxAge.
func VerifyAt(key []byte, machineID, token string, now time.Time, maxAge time.Duration) error {
	if len(key) < MinKeyLen {
		return ErrShortKey
	}
	v, rest, ok1 := strings.Cut(token, ".")
	issued, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || v != version || issued == "" {
		return ErrMalformed
	}
	secs, err := strconv.ParseInt(issued, 36, 64)
	if err != nil || strconv.FormatInt(secs, 36) != issued {
		return ErrMalformed
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return ErrMalformed
	}
	if !hmac.Equal(got, mac(key, machineID, issued)) {
		return ErrInvalid
	}
	at := time.Unix(secs, 0)
	if age := now.Sub(at); age > maxAge || age < -MaxSkew {
		return fmt.Errorf("%w: issued %s, %s ago, allowed %s", ErrExpired,
			at.UTC().Format(time.RFC3339), age.Truncate(time.Second), maxAge)
	}
	return nil
}

func mac(key []byte, machineID, issued string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("matchbox-agent " + version + "\x00" + machineID + "\x00" + issued))
	return h.Sum(nil)
}
