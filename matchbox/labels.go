package matchbox

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strings"
)

// NormalizeMAC parses a MAC address written as aa:bb:cc:dd:ee:ff,
// aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff or aabbccddeeff (any case) and returns it
// in the lower-case colon form.
func NormalizeMAC(s string) (string, error) {
	s = strings.TrimSpace(s)
	if isCanonicalMAC(s) {
		return s, nil
	}
	if len(s) == 12 {
		b, err := hex.DecodeString(s)
		if err != nil {
			return "", fmt.Errorf("invalid MAC address %q: %w", s, err)
		}
		return net.HardwareAddr(b).String(), nil
	}
	hw, err := net.ParseMAC(s)
	if err != nil {
		return "", fmt.Errorf("invalid MAC address %q", s)
	}
	if len(hw) != 6 {
		return "", fmt.Errorf("invalid MAC address %q: want 6 bytes, got %d", s, len(hw))
	}
	return hw.String(), nil
}

// Labels are the key/value pairs a request carries (its query parameters) and
// that group selectors match.
type Labels map[string]string

// LabelsFromRawQuery turns a raw query string into labels as the boot
// endpoints do, without building url.Values first (their hot path): the
// first value of each key is kept, and a key named mac (any case) is
// normalised, or dropped when it does not parse (the returned error says
// why, for logging). Pairs that do not unescape are skipped, as
// url.ParseQuery skips them.
func LabelsFromRawQuery(raw string) (Labels, error) {
	labels := make(Labels, strings.Count(raw, "&")+1)
	return labels, labels.AddRawQuery(raw)
}

// AddRawQuery adds the labels of a raw query string to l, which should be
// empty, as LabelsFromRawQuery returns them: a caller can reuse one map
// across requests.
func (l Labels) AddRawQuery(raw string) error {
	var bad error
	var badKey string // a mac key whose first value did not parse
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" || strings.Contains(pair, ";") {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err := unescape(k)
		if err != nil {
			continue
		}
		if _, seen := l[key]; seen || key == badKey && bad != nil {
			continue // the first value wins
		}
		val, err := unescape(v)
		if err != nil {
			continue
		}
		if strings.EqualFold(key, "mac") {
			mac, err := NormalizeMAC(val)
			if err != nil {
				bad, badKey = err, key
				continue
			}
			val = mac
		}
		l[key] = val
	}
	return bad
}

// unescape is url.QueryUnescape without its work for strings that need
// none.
func unescape(s string) (string, error) {
	if !strings.ContainsAny(s, "%+") {
		return s, nil
	}
	return url.QueryUnescape(s)
}

// String is the labels as sorted "key=value" pairs joined by ",": the form
// selectors are compared and shown in.
func (l Labels) String() string { return strings.Join(sortedPairs(l), ",") }

// sortedPairs returns m's entries as sorted "key=value" strings.
func sortedPairs(m map[string]string) []string {
	pairs := make([]string, 0, len(m))
	for k, v := range m {
		pairs = append(pairs, k+"="+v)
	}
	sort.Strings(pairs)
	return pairs
}

// MAC returns the normalised mac label, if any.
func (l Labels) MAC() string {
	if v, ok := l["mac"]; ok {
		return v
	}
	for k, v := range l {
		if strings.EqualFold(k, "mac") {
			return v
		}
	}
	return ""
}

// MachineUUID normalises a system UUID for identifying a machine: lower
// case, and "" for values that identify no one (empty, all zeros, all ones:
// firmware without a UUID, and virtual machines left at the default, report
// those, so many machines would share them).
func MachineUUID(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	hexDigits := strings.ReplaceAll(s, "-", "")
	if hexDigits == "" || strings.Trim(hexDigits, "0") == "" || strings.Trim(hexDigits, "f") == "" {
		return ""
	}
	return s
}

// isCanonicalMAC reports whether s is already in NormalizeMAC's output form
// (six lower-case hex pairs separated by colons), so it can be returned
// without parsing and formatting again.
func isCanonicalMAC(s string) bool {
	if len(s) != 17 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i%3 == 2 {
			if c != ':' {
				return false
			}
			continue
		}
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
