package matchbox

import (
	"net/url"
	"strings"
	"testing"
)

func FuzzLabelsFromQuery(f *testing.F) {
	f.Add("mac=52-54-00-00-00-01&uuid=x")
	f.Add("MAC=525400000001&os=installed&os=x")
	f.Add("mac=%zz&a=b")
	f.Add("mac=nope&mac=52:54:00:00:00:01")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		labels, _ := LabelsFromQuery(q)
		fromRaw, _ := LabelsFromRawQuery(raw)
		if len(fromRaw) != len(labels) {
			t.Fatalf("LabelsFromRawQuery(%q) = %v, LabelsFromQuery = %v", raw, fromRaw, labels)
		}
		for k, v := range labels {
			if fromRaw[k] != v {
				t.Fatalf("LabelsFromRawQuery(%q) = %v, LabelsFromQuery = %v", raw, fromRaw, labels)
			}
		}
		for k, v := range labels {
			if k == "mac" || k == "MAC" {
				if again, err := NormalizeMAC(v); err != nil || again != v {
					t.Fatalf("mac label %q is not normalised (%v)", v, err)
				}
			}
			if vals := q[k]; len(vals) == 0 {
				t.Fatalf("label %q not in the query", k)
			}
		}
	})
}

// LabelsFromQuery is the reference LabelsFromRawQuery is checked against:
// labels from parsed query parameters, as the boot endpoints make them: the first value of each key is kept, and a key named mac (any case) is
// normalised, or dropped when it does not parse (the returned error says
// why, for logging).
func LabelsFromQuery(values url.Values) (Labels, error) {
	labels := make(Labels, len(values))
	var bad error
	for key, vals := range values {
		if len(vals) == 0 {
			continue
		}
		v := vals[0]
		if strings.EqualFold(key, "mac") {
			mac, err := NormalizeMAC(v)
			if err != nil {
				bad = err
				continue
			}
			v = mac
		}
		labels[key] = v
	}
	return labels, bad
}
