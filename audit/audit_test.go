package audit

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"matchbox/logclip"
)

// TestLogAttrsClipsClientStrings: a record whose id, actor, kind and detail
// are each 10 KB logs one line of bounded size through a handler that
// clips nothing itself, each field cut and noting what was cut.
func TestLogAttrsClipsClientStrings(t *testing.T) {
	long := strings.Repeat("x", 10<<10)
	tests := []struct {
		name  string
		rec   Record
		field string
	}{
		{"id", Record{Actor: "ops", Action: ActionCreate, Kind: "group", Object: long}, "id"},
		{"actor", Record{Actor: long, Action: ActionCreate, Kind: "group", Object: "g"}, "actor"},
		{"kind", Record{Actor: "ops", Action: ActionCreate, Kind: long, Object: "g"}, "kind"},
		{"detail", Record{Actor: "ops", Action: ActionUpdate, Kind: KindMachine, Object: "m", Detail: "enrolled: hostname=" + long}, "detail"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			slog.New(slog.NewJSONHandler(&buf, nil)).Info("audit", tc.rec.LogAttrs()...)
			if n := buf.Len(); n > 2*logclip.Max+200 {
				t.Fatalf("log line of %d bytes for a 10 KB %s", n, tc.field)
			}
			var line map[string]any
			if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
				t.Fatalf("log line %q: %v", buf.String(), err)
			}
			v, _ := line[tc.field].(string)
			if !strings.HasSuffix(v, "more bytes)") || len(v) < logclip.Max {
				t.Errorf("%s logged as %q, want it cut with a note of the bytes cut", tc.field, v)
			}
		})
	}
	// Short values are logged as they are.
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("audit", Record{Actor: "ops", Action: ActionDelete, Kind: "profile", Object: "node", Detail: "ready -> provisioning"}.LogAttrs()...)
	for _, want := range []string{`"actor":"ops"`, `"kind":"profile"`, `"id":"node"`, `"detail":"ready -> provisioning"`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log line %q lacks %s", buf.String(), want)
		}
	}
}
