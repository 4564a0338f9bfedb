// Package ignition validates Ignition configs and translates Butane configs
// into Ignition, with coreos/ignition's and coreos/butane's own parsers.
package ignition

import (
	"errors"
	"fmt"
	"path"
	"strings"

	butane "github.com/coreos/butane/config"
	"github.com/coreos/butane/config/common"
	ignconfig "github.com/coreos/ignition/v2/config"
)

// IsIgnitionName reports whether a template name denotes a raw Ignition JSON
// config (served as is) rather than a Butane template (rendered, then
// translated): names ending in .ign, .ignition or .json.
func IsIgnitionName(name string) bool {
	switch strings.ToLower(path.Ext(name)) {
	case ".ign", ".ignition", ".json":
		return true
	}
	return false
}

// Validate parses raw as an Ignition config of any spec version Ignition
// accepts and returns an error that quotes Ignition's report on failure.
func Validate(raw []byte) error {
	_, report, err := ignconfig.Parse(raw)
	if err != nil {
		if msg := strings.TrimSpace(report.String()); msg != "" {
			return fmt.Errorf("invalid Ignition config: %w: %s", err, oneLine(msg))
		}
		return fmt.Errorf("invalid Ignition config: %w", err)
	}
	if report.IsFatal() {
		return fmt.Errorf("invalid Ignition config: %s", oneLine(report.String()))
	}
	return nil
}

// TranslateButane translates a Butane YAML config into Ignition JSON and
// validates the result. Errors quote Butane's report (with line and column).
func TranslateButane(raw []byte) ([]byte, error) {
	out, report, err := butane.TranslateBytes(raw, common.TranslateBytesOptions{Raw: true})
	if err != nil {
		if msg := strings.TrimSpace(report.String()); msg != "" {
			return nil, fmt.Errorf("invalid Butane config: %w: %s", err, oneLine(msg))
		}
		return nil, fmt.Errorf("invalid Butane config: %w", err)
	}
	if report.IsFatal() {
		return nil, errors.New("invalid Butane config: " + oneLine(report.String()))
	}
	if err := Validate(out); err != nil {
		return nil, fmt.Errorf("butane produced an invalid Ignition config: %w", err)
	}
	return out, nil
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}
