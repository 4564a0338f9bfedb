// Package v011 maps the process settings of matchbox v0.11 (its
// command-line flags and the MATCHBOX_* variables derived from them) onto
// this server's flags, so that a v0.11 unit file or environment starts this
// binary unchanged. It holds the alias table and its resolution, nothing
// else; cmd/matchbox applies the result to its flags.
package v011

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
)

// Alias is one v0.11 setting and the flag of this server it stands for.
type Alias struct {
	// Flag is v0.11's command-line flag name (without dashes), "address".
	Flag string
	// To is this server's flag, "http-addr"; empty for the passphrase,
	// which v0.11 takes from the environment only.
	To string
	// Gate, when set, names a v0.11 setting without which v0.11 ignores
	// this one (its TLS files without -rpc-address or -web-ssl).
	Gate string
	// Default is v0.11's default, applied when the gate is on and the
	// setting is given nowhere (its certificate paths).
	Default string
	// Convert turns a v0.11 value into this server's; nil keeps it.
	Convert func(string) (string, error)
}

// Env is the environment variable v0.11 reads for the alias:
// MATCHBOX_ followed by the flag in upper case, dashes as underscores.
func (a Alias) Env() string { return EnvName(a.Flag) }

// EnvName is the MATCHBOX_* variable of a flag name, as both v0.11 and
// this server derive it.
func EnvName(flag string) string {
	return "MATCHBOX_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Passphrase is the variable holding the passphrase of the signing key
// ring; v0.11 reads it from the environment only, and so does this server.
const Passphrase = "MATCHBOX_PASSPHRASE"

// webSSL is v0.11's switch for TLS on the boot endpoints; it has no flag of
// its own here (TLS is on when --http-tls-cert-file is set).
const webSSL = "web-ssl"

// Aliases returns the alias table, in the order v0.11 declares its flags.
func Aliases() []Alias {
	return []Alias{
		{Flag: "address", To: "http-addr"},
		{Flag: "rpc-address", To: "api-addr"},
		{Flag: "data-path", To: "data-dir"},
		{Flag: "assets-path", To: "assets-dir", Convert: assetsPath},
		{Flag: "cert-file", To: "tls-cert-file", Gate: "rpc-address", Default: "/etc/matchbox/server.crt"},
		{Flag: "key-file", To: "tls-key-file", Gate: "rpc-address", Default: "/etc/matchbox/server.key"},
		{Flag: "ca-file", To: "tls-client-ca-file", Gate: "rpc-address", Default: "/etc/matchbox/ca.crt"},
		{Flag: "key-ring-path", To: "signing-keyring"},
		{Flag: "web-cert-file", To: "http-tls-cert-file", Gate: webSSL, Default: "/etc/matchbox/ssl/server.crt"},
		{Flag: "web-key-file", To: "http-tls-key-file", Gate: webSSL, Default: "/etc/matchbox/ssl/server.key"},
	}
}

// Flags returns the names of v0.11's command-line flags that are aliases
// here (including -web-ssl), for registering them as hidden flags.
func Flags() []string {
	var names []string
	for _, a := range Aliases() {
		names = append(names, a.Flag)
	}
	return append(names, webSSL)
}

// BoolFlag reports whether a v0.11 flag is boolean (takes no value).
func BoolFlag(name string) bool { return name == webSSL }

// assetsPath maps v0.11's empty -assets-path (serving no assets) to "-".
func assetsPath(v string) (string, error) {
	if v == "" {
		return "-", nil
	}
	return v, nil
}

// Input is what Resolve reads.
type Input struct {
	// Env looks up an environment variable (os.LookupEnv).
	Env func(string) (string, bool)
	// Args holds the v0.11 flags given on the command line, by name.
	Args map[string]string
	// Set holds this server's flags already set, on the command line or
	// through their own MATCHBOX_* variable, by name.
	Set map[string]string
}

// Assignment sets one of this server's flags from a v0.11 setting.
type Assignment struct {
	Flag  string // this server's flag, "http-addr"
	Value string
	// From names the v0.11 setting: "MATCHBOX_ADDRESS" or "-address",
	// or "v0.11 default of -cert-file".
	From string
}

// Result is the outcome of Resolve.
type Result struct {
	// Assign lists the flags to set, in table order.
	Assign []Assignment
	// Used lists each v0.11 setting that was given, once, as "FROM → --flag".
	Used []string
	// Ignored lists v0.11 settings given but ignored, as v0.11 ignores
	// them (TLS files without the listener they belong to), with why.
	Ignored []string
	// Passphrase is the signing key ring's passphrase, if given.
	Passphrase string
}

// source is where a v0.11 setting was found.
type source struct {
	value, from string
	ok          bool
}

func lookup(in Input, flag string) source {
	if v, ok := in.Args[flag]; ok {
		return source{value: v, from: "-" + flag, ok: true}
	}
	if in.Env != nil {
		if v, ok := in.Env(EnvName(flag)); ok {
			return source{value: v, from: EnvName(flag), ok: true}
		}
	}
	return source{}
}

// Resolve finds the v0.11 settings in in and what they set. A v0.11
// command-line flag wins over its variable, as in v0.11. A v0.11 setting
// and the flag it stands for, both given with different values, are an
// error naming both; equal values are fine.
func Resolve(in Input) (Result, error) {
	var res Result
	var errs []error
	gates := map[string]bool{}

	ssl := lookup(in, webSSL)
	if ssl.ok {
		on, err := strconv.ParseBool(ssl.value)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want true or false", ssl.from, ssl.value))
		}
		gates[webSSL] = on
		res.Used = append(res.Used, fmt.Sprintf("%s → TLS on --http-addr (--http-tls-cert-file, --http-tls-key-file)", ssl.from))
	}
	if _, ok := in.Set["http-tls-cert-file"]; ok {
		gates[webSSL] = true
	}
	rpc := lookup(in, "rpc-address")
	gates["rpc-address"] = (rpc.ok && rpc.value != "") || in.Set["api-addr"] != ""

	for _, a := range Aliases() {
		src := lookup(in, a.Flag)
		if a.Gate != "" && !gates[a.Gate] {
			if src.ok {
				res.Ignored = append(res.Ignored, fmt.Sprintf("%s: v0.11 ignores it without -%s", src.from, a.Gate))
			}
			continue
		}
		if !src.ok {
			// v0.11's default certificate paths, where it would use them
			// and nothing here names a file.
			if a.Default != "" && (a.Gate == webSSL && ssl.ok || a.Gate == "rpc-address" && rpc.ok) {
				if _, set := in.Set[a.To]; !set {
					res.Assign = append(res.Assign, Assignment{Flag: a.To, Value: a.Default, From: "v0.11 default of -" + a.Flag})
					res.Used = append(res.Used, fmt.Sprintf("v0.11 default of -%s (%s) → --%s", a.Flag, a.Default, a.To))
				}
			}
			continue
		}
		v := src.value
		if a.Convert != nil {
			var err error
			if v, err = a.Convert(v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", src.from, src.value, err))
				continue
			}
		}
		res.Used = append(res.Used, fmt.Sprintf("%s → --%s", src.from, a.To))
		if cur, set := in.Set[a.To]; set {
			if cur != v {
				errs = append(errs, fmt.Errorf("%s=%q (v0.11 alias of --%s) conflicts with --%s/%s=%q", src.from, src.value, a.To, a.To, EnvName(a.To), cur))
			}
			continue
		}
		res.Assign = append(res.Assign, Assignment{Flag: a.To, Value: v, From: src.from})
	}
	if in.Env != nil {
		res.Passphrase, _ = in.Env(Passphrase)
	}
	return res, errors.Join(errs...)
}

// ParseLogLevel reads a log level: slog's names (debug, info, warn, error)
// and v0.11's logrus names (trace, debug, info, warning, error, fatal,
// panic), case-insensitively. v0.11 reports whether the name is v0.11's
// alone and was mapped: trace → debug, warning → warn, fatal and panic →
// error.
func ParseLogLevel(name string) (lv slog.Level, v011 bool, err error) {
	switch strings.ToLower(name) {
	case "trace":
		return slog.LevelDebug, true, nil
	case "warning":
		return slog.LevelWarn, true, nil
	case "fatal", "panic":
		return slog.LevelError, true, nil
	}
	if err := lv.UnmarshalText([]byte(name)); err != nil || !slices.Contains([]string{"debug", "info", "warn", "error"}, strings.ToLower(name)) {
		return 0, false, fmt.Errorf("log level %q: want debug, info, warn or error (or v0.11's trace, warning, fatal, panic)", name)
	}
	return lv, false, nil
}

// NormalizeArgs rewrites v0.11's single-dash long flags (-address,
// -web-ssl=true, -log-level, -version, -help) to the double-dash form this
// server's flag parser reads. Other arguments, and everything after "--",
// are left alone.
func NormalizeArgs(args []string) []string {
	known := append(Flags(), "log-level", "version", "help")
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") {
			name, _, _ := strings.Cut(a[1:], "=")
			if slices.Contains(known, name) {
				a = "-" + a
			}
		}
		out = append(out, a)
	}
	return out
}
