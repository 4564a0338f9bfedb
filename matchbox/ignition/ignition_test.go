package ignition

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestIsIgnitionName(t *testing.T) {
	for name, want := range map[string]bool{
		"a.ign": true, "a.ignition": true, "a.JSON": true,
		"a.yaml": false, "a.yml": false, "a.bu": false, "a": false,
	} {
		if got := IsIgnitionName(name); got != want {
			t.Errorf("IsIgnitionName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name, in, wantErr string
	}{
		{"v3.3", `{"ignition":{"version":"3.3.0"}}`, ""},
		{"v3.4 with file", `{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/hostname","contents":{"source":"data:,node1"}}]}}`, ""},
		{"not json", `{"ignition":`, "invalid Ignition config"},
		{"unknown version", `{"ignition":{"version":"9.9.9"}}`, "invalid Ignition config"},
		{"no version", `{}`, "invalid Ignition config"},
		{"relative path", `{"ignition":{"version":"3.3.0"},"storage":{"files":[{"path":"etc/x"}]}}`, "absolute"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Validate([]byte(c.in))
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, c.wantErr)
			}
		})
	}
}

func TestTranslateButane(t *testing.T) {
	in := "variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: /etc/hostname\n      contents:\n        inline: node1\n"
	out, err := TranslateButane([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Ignition struct{ Version string }
		Storage  struct{ Files []struct{ Path string } }
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if cfg.Ignition.Version != "3.3.0" || len(cfg.Storage.Files) != 1 || cfg.Storage.Files[0].Path != "/etc/hostname" {
		t.Fatalf("unexpected translation: %s", out)
	}

	_, err = TranslateButane([]byte("variant: flatcar\nversion: 1.0.0\nstorage:\n  files:\n    - path: relative\n"))
	if err == nil || !strings.Contains(err.Error(), "invalid Butane config") {
		t.Fatalf("relative path: error = %v", err)
	}
	_, err = TranslateButane([]byte("variant: nope\nversion: 1.0.0\n"))
	if err == nil {
		t.Fatal("unknown variant accepted")
	}
}
