package dhcp

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/iana"
)

func TestConfigValidate(t *testing.T) {
	a := netip.MustParseAddr
	base := func() Config {
		return Config{Mode: ModeAuthoritative, Interface: "eth9", LeaseTime: time.Hour, Ranges: []Range{{Start: a("10.0.0.100"), End: a("10.0.0.200")}}}
	}
	tests := []struct {
		name      string
		edit      func(*Config)
		wantField string // "" for valid
	}{
		{"valid", func(*Config) {}, ""},
		{"proxy without ranges", func(c *Config) { c.Mode, c.Ranges, c.BootURL = ModeProxy, nil, "http://10.0.0.1:8080" }, ""},
		{"proxy without boot URL", func(c *Config) { c.Mode, c.Ranges = ModeProxy, nil }, "BootURL"},
		{"packets only: server address, no interface", func(c *Config) { c.Interface, c.ServerIP = "", a("10.0.0.1") }, ""},
		{"mode off", func(c *Config) { c.Mode = ModeOff }, "Mode"},
		{"unknown mode", func(c *Config) { c.Mode = "on" }, "Mode"},
		{"no interface", func(c *Config) { c.Interface = "" }, "Interface"},
		{"authoritative without ranges", func(c *Config) { c.Ranges = nil }, "Ranges"},
		{"range end before start", func(c *Config) { c.Ranges = append(c.Ranges, Range{Start: a("10.0.1.9"), End: a("10.0.1.1")}) }, "Ranges[1]"},
		{"IPv6 range", func(c *Config) { c.Ranges[0] = Range{Start: a("fd00::1"), End: a("fd00::9")} }, "Ranges[0]"},
		{"IPv6 range router", func(c *Config) { c.Ranges[0].Router = a("fd00::1") }, "Ranges[0]"},
		{"IPv6 subnet", func(c *Config) { c.Subnet = netip.MustParsePrefix("fd00::/64") }, "Subnet"},
		{"IPv6 router", func(c *Config) { c.Router = a("fd00::1") }, "Router"},
		{"IPv6 server address", func(c *Config) { c.ServerIP = a("fd00::1") }, "ServerIP"},
		{"IPv6 name server", func(c *Config) { c.DNS = []netip.Addr{a("10.0.0.53"), a("::1")} }, "DNS[1]"},
		{"short lease", func(c *Config) { c.LeaseTime = 30 * time.Second }, "LeaseTime"},
		{"no lease time", func(c *Config) { c.LeaseTime = 0 }, "LeaseTime"},
		{"boot URL without scheme", func(c *Config) { c.BootURL = "10.0.0.1:8080" }, "BootURL"},
		{"boot file without name", func(c *Config) { c.BootFiles = map[iana.Arch]string{7: ""} }, "BootFiles"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.edit(&cfg)
			err := cfg.Validate()
			var fe *FieldError
			switch {
			case tc.wantField == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantField != "" && !errors.As(err, &fe):
				t.Fatalf("error %v, want a FieldError of %s", err, tc.wantField)
			case tc.wantField != "" && fe.Field != tc.wantField:
				t.Fatalf("error names field %s (%v), want %s", fe.Field, err, tc.wantField)
			}
		})
	}
}
