package v011

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func env(kv map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
}

func TestResolve(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    map[string]string
		set     map[string]string
		want    []Assignment
		ignored int
		pass    string
		err     []string // substrings of the error, nil for none
	}{
		{name: "nothing"},
		{
			name: "v0.11 unit file",
			env:  map[string]string{"MATCHBOX_ADDRESS": "0.0.0.0:8080"},
			want: []Assignment{{Flag: "http-addr", Value: "0.0.0.0:8080", From: "MATCHBOX_ADDRESS"}},
		},
		{
			name: "every plain alias",
			env: map[string]string{
				"MATCHBOX_ADDRESS": "0.0.0.0:8080", "MATCHBOX_DATA_PATH": "/d", "MATCHBOX_ASSETS_PATH": "/a",
				"MATCHBOX_KEY_RING_PATH": "/k.gpg", "MATCHBOX_PASSPHRASE": "s3cret",
			},
			want: []Assignment{
				{Flag: "http-addr", Value: "0.0.0.0:8080", From: "MATCHBOX_ADDRESS"},
				{Flag: "data-dir", Value: "/d", From: "MATCHBOX_DATA_PATH"},
				{Flag: "assets-dir", Value: "/a", From: "MATCHBOX_ASSETS_PATH"},
				{Flag: "signing-keyring", Value: "/k.gpg", From: "MATCHBOX_KEY_RING_PATH"},
			},
			pass: "s3cret",
		},
		{
			name: "empty assets path disables assets",
			env:  map[string]string{"MATCHBOX_ASSETS_PATH": ""},
			want: []Assignment{{Flag: "assets-dir", Value: "-", From: "MATCHBOX_ASSETS_PATH"}},
		},
		{
			name: "rpc address brings v0.11's default certificate paths",
			env:  map[string]string{"MATCHBOX_RPC_ADDRESS": "0.0.0.0:8081", "MATCHBOX_CA_FILE": "/ca.pem"},
			want: []Assignment{
				{Flag: "api-addr", Value: "0.0.0.0:8081", From: "MATCHBOX_RPC_ADDRESS"},
				{Flag: "tls-cert-file", Value: "/etc/matchbox/server.crt", From: "v0.11 default of -cert-file"},
				{Flag: "tls-key-file", Value: "/etc/matchbox/server.key", From: "v0.11 default of -key-file"},
				{Flag: "tls-client-ca-file", Value: "/ca.pem", From: "MATCHBOX_CA_FILE"},
			},
		},
		{
			name: "default paths never override a new flag",
			env:  map[string]string{"MATCHBOX_RPC_ADDRESS": "0.0.0.0:8081"},
			set:  map[string]string{"tls-cert-file": "/c", "tls-key-file": "/k", "tls-client-ca-file": "/ca"},
			want: []Assignment{{Flag: "api-addr", Value: "0.0.0.0:8081", From: "MATCHBOX_RPC_ADDRESS"}},
		},
		{
			name:    "certificate files without rpc address are ignored, as v0.11 does",
			env:     map[string]string{"MATCHBOX_CERT_FILE": "/c", "MATCHBOX_WEB_CERT_FILE": "/w"},
			ignored: 2,
		},
		{
			name: "certificate files apply with --api-addr",
			env:  map[string]string{"MATCHBOX_CERT_FILE": "/c"},
			set:  map[string]string{"api-addr": ":8081"},
			want: []Assignment{{Flag: "tls-cert-file", Value: "/c", From: "MATCHBOX_CERT_FILE"}},
		},
		{
			name: "web ssl with its files",
			env:  map[string]string{"MATCHBOX_WEB_SSL": "true", "MATCHBOX_WEB_CERT_FILE": "/w.crt"},
			want: []Assignment{
				{Flag: "http-tls-cert-file", Value: "/w.crt", From: "MATCHBOX_WEB_CERT_FILE"},
				{Flag: "http-tls-key-file", Value: "/etc/matchbox/ssl/server.key", From: "v0.11 default of -web-key-file"},
			},
		},
		{
			name:    "web ssl false ignores its files",
			env:     map[string]string{"MATCHBOX_WEB_SSL": "false", "MATCHBOX_WEB_CERT_FILE": "/w.crt"},
			ignored: 1,
		},
		{
			name: "web ssl not a boolean",
			env:  map[string]string{"MATCHBOX_WEB_SSL": "yes please"},
			err:  []string{"MATCHBOX_WEB_SSL", "true or false"},
		},
		{
			name: "command-line flag wins over its variable, as in v0.11",
			env:  map[string]string{"MATCHBOX_ADDRESS": "0.0.0.0:1"},
			args: map[string]string{"address": "0.0.0.0:2"},
			want: []Assignment{{Flag: "http-addr", Value: "0.0.0.0:2", From: "-address"}},
		},
		{
			name: "alias and new flag agreeing",
			env:  map[string]string{"MATCHBOX_DATA_PATH": "/d"},
			set:  map[string]string{"data-dir": "/d"},
		},
		{
			name: "alias and new flag disagreeing",
			env:  map[string]string{"MATCHBOX_DATA_PATH": "/d", "MATCHBOX_ADDRESS": "0.0.0.0:8080"},
			set:  map[string]string{"data-dir": "/other"},
			want: []Assignment{{Flag: "http-addr", Value: "0.0.0.0:8080", From: "MATCHBOX_ADDRESS"}},
			err:  []string{"MATCHBOX_DATA_PATH", "--data-dir", "MATCHBOX_DATA_DIR", "/other"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Resolve(Input{Env: env(tc.env), Args: tc.args, Set: tc.set})
			if diff := cmp.Diff(tc.want, res.Assign, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("assignments (-want +got):\n%s", diff)
			}
			if len(res.Ignored) != tc.ignored {
				t.Errorf("ignored %q, want %d", res.Ignored, tc.ignored)
			}
			if res.Passphrase != tc.pass {
				t.Errorf("passphrase %q, want %q", res.Passphrase, tc.pass)
			}
			if tc.err == nil && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tc.err != nil {
				if err == nil {
					t.Fatalf("no error, want one naming %q", tc.err)
				}
				for _, s := range tc.err {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not name %q", err, s)
					}
				}
			}
		})
	}
}

// Every v0.11 setting given is reported once as used or ignored.
func TestResolveReportsEachAliasOnce(t *testing.T) {
	all := map[string]string{}
	for _, f := range Flags() {
		all[EnvName(f)] = "x"
	}
	all["MATCHBOX_WEB_SSL"] = "true"
	all["MATCHBOX_RPC_ADDRESS"] = "127.0.0.1:1"
	res, err := Resolve(Input{Env: env(all)})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(res.Used)+len(res.Ignored), len(Flags()); got != want {
		t.Errorf("%d settings reported, want %d: %q %q", got, want, res.Used, res.Ignored)
	}
}

func TestEnvNames(t *testing.T) {
	var got []string
	for _, f := range Flags() {
		got = append(got, EnvName(f))
	}
	// The variables v0.11 reads (flagutil.SetFlagsFromEnv with prefix
	// MATCHBOX), less MATCHBOX_LOG_LEVEL, which is this server's too.
	want := []string{"MATCHBOX_ADDRESS", "MATCHBOX_RPC_ADDRESS", "MATCHBOX_DATA_PATH", "MATCHBOX_ASSETS_PATH",
		"MATCHBOX_CERT_FILE", "MATCHBOX_KEY_FILE", "MATCHBOX_CA_FILE", "MATCHBOX_KEY_RING_PATH",
		"MATCHBOX_WEB_CERT_FILE", "MATCHBOX_WEB_KEY_FILE", "MATCHBOX_WEB_SSL"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestParseLogLevel(t *testing.T) {
	tests := []struct {
		in   string
		want slog.Level
		v011 bool
		err  bool
	}{
		{"debug", slog.LevelDebug, false, false},
		{"info", slog.LevelInfo, false, false},
		{"warn", slog.LevelWarn, false, false},
		{"error", slog.LevelError, false, false},
		{"INFO", slog.LevelInfo, false, false},
		{"trace", slog.LevelDebug, true, false},
		{"warning", slog.LevelWarn, true, false},
		{"fatal", slog.LevelError, true, false},
		{"panic", slog.LevelError, true, false},
		{"info+2", 0, false, true},
		{"loud", 0, false, true},
		{"", 0, false, true},
	}
	for _, tc := range tests {
		got, v011, err := ParseLogLevel(tc.in)
		if (err != nil) != tc.err || got != tc.want || v011 != tc.v011 {
			t.Errorf("ParseLogLevel(%q) = %v, %v, %v; want %v, %v, error %v", tc.in, got, v011, err, tc.want, tc.v011, tc.err)
		}
	}
}

func TestNormalizeArgs(t *testing.T) {
	tests := []struct{ in, want []string }{
		{[]string{"-address", "0.0.0.0:8080", "-web-ssl", "-log-level=debug"}, []string{"--address", "0.0.0.0:8080", "--web-ssl", "--log-level=debug"}},
		{[]string{"-version"}, []string{"--version"}},
		{[]string{"serve", "--http-addr", "-x"}, []string{"serve", "--http-addr", "-x"}},
		{[]string{"-h", "-v"}, []string{"-h", "-v"}},
		{[]string{"--", "-address"}, []string{"--", "-address"}},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, NormalizeArgs(tc.in)); diff != "" {
			t.Errorf("NormalizeArgs(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}
