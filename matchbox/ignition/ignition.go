// Package ignition validates Ignition configs and translates Butane configs
// into Ignition, with coreos/ignition's and coreos/butane's own parsers.
package ignition

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strconv"
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

// Problem is one finding of a strict Butane check, at a line of the
// checked text when known (0 otherwise).
type Problem struct {
	Line, Column int
	Message      string
}

// StrictError lists what a strict Butane check refused.
type StrictError struct {
	Problems []Problem
}

func (e *StrictError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		if p.Line > 0 {
			parts[i] = fmt.Sprintf("line %d col %d: %s", p.Line, p.Column, p.Message)
		} else {
			parts[i] = p.Message
		}
	}
	return "invalid Butane config: " + strings.Join(parts, "; ")
}

// clcKeys are top-level keys of a Container Linux Config (matchbox v0.11's
// .yaml templates for Container Linux) that Butane has no counterpart for
// without a variant.
var clcKeys = []string{"storage:", "systemd:", "passwd:", "networkd:", "etcd:", "flannel:", "update:", "locksmith:", "docker:"}

// CheckButane translates raw in Butane's strict mode, as `butane --strict`
// does: warnings (an unknown key such as `filez:`) are refused as well as
// errors (a local file without a files directory, a missing variant). A
// Container Linux Config, which Butane does not translate, is named as such.
// ignore reports entries at a line that should not count (lines holding
// sample values, say); it may be nil.
func CheckButane(raw []byte, ignore func(line int) bool) error {
	_, report, err := butane.TranslateBytes(raw, common.TranslateBytesOptions{Raw: true})
	var probs []Problem
	for _, e := range report.Entries {
		p := Problem{Message: e.Message}
		if e.Marker.StartP != nil {
			p.Line, p.Column = int(e.Marker.StartP.Line), int(e.Marker.StartP.Column)
		}
		if p.Line > 0 && ignore != nil && ignore(p.Line) {
			continue
		}
		probs = append(probs, p)
	}
	if err != nil && len(report.Entries) == 0 {
		msg := err.Error()
		line := 0
		if lines := yamlErrorLines(msg); len(lines) > 0 {
			// A YAML decoding error (a string where a number goes):
			// counted unless every line it names is to be ignored.
			line = lines[0]
			if ignore != nil && allIgnored(lines, ignore) {
				return nil
			}
		}
		if strings.Contains(msg, "variant") {
			if l := clcLine(raw); l > 0 {
				msg = "a Container Linux Config (matchbox v0.11 Container Linux .yaml), which Butane does not translate: " +
					"rewrite it as Butane (variant: flatcar, version: 1.0.0) or store its Ignition JSON as .ign"
				line = l
			} else {
				msg += " (Butane needs variant: and version: at the top, e.g. variant: fcos, version: 1.5.0)"
				line = 1
			}
		}
		probs = append(probs, Problem{Line: line, Column: 1, Message: msg})
	}
	if len(probs) > 0 {
		return &StrictError{Problems: probs}
	}
	return nil
}

// clcLine returns the line of the first top-level Container Linux Config key
// of a document without a variant, or 0.
func clcLine(raw []byte) int {
	for i, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, "variant:") {
			return 0
		}
		for _, k := range clcKeys {
			if strings.HasPrefix(l, k) {
				return i + 1
			}
		}
	}
	return 0
}

var yamlLineRE = regexp.MustCompile(`line (\d+):`)

// yamlErrorLines returns the lines a YAML decoding error names.
func yamlErrorLines(msg string) []int {
	var out []int
	for _, m := range yamlLineRE.FindAllStringSubmatch(msg, -1) {
		if n, err := strconv.Atoi(m[1]); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func allIgnored(lines []int, ignore func(int) bool) bool {
	for _, l := range lines {
		if !ignore(l) {
			return false
		}
	}
	return true
}
