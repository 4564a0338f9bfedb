package location

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cert, key, ca := file("c.pem", "c"), file("k.pem", "k"), file("ca.pem", "ca")
	pw, emptyPW := file("pw", "s3cret\n"), file("empty", "\n")
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name    string
		f       Flags
		want    Location
		wantErr string // substring; "" for success
	}{
		{"default under the data directory", Flags{DataDir: "/var/lib/matchbox"}, Location{Kind: SQLite, Path: "/var/lib/matchbox/matchbox.db"}, ""},
		{"--db keeps working", Flags{DB: "/tmp/x.db", DataDir: "/d"}, Location{Kind: SQLite, Path: "/tmp/x.db"}, ""},
		{"sqlite absolute", Flags{Store: "sqlite:///var/lib/m.db"}, Location{Kind: SQLite, Path: "/var/lib/m.db"}, ""},
		{"sqlite relative", Flags{Store: "sqlite:state/m.db"}, Location{Kind: SQLite, Path: "state/m.db"}, ""},
		{"sqlite with a host", Flags{Store: "sqlite://host/m.db"}, Location{}, `names host "host"`},
		{"sqlite without a file", Flags{Store: "sqlite:///var/lib/"}, Location{}, "without a file name"},
		{"sqlite with a query", Flags{Store: "sqlite:///m.db?mode=ro"}, Location{}, "query"},
		{"--store and --db", Flags{Store: "sqlite:///a.db", DB: "/b.db"}, Location{}, "--store and --db both given"},
		{"etcd flag with sqlite", Flags{DataDir: "/d", CAFile: ca}, Location{}, "--etcd-ca-file given with an SQLite store"},
		{"nothing at all", Flags{}, Location{}, "no store"},
		{"unknown scheme", Flags{Store: "postgres://h/db"}, Location{}, `unknown scheme "postgres"`},
		{"not a URL", Flags{Store: "/var/lib/m.db"}, Location{}, "want a URL"},
		{
			"etcd three members",
			Flags{Store: "etcd://h1:2379,h2:2379,[::1]:2379/matchbox"},
			Location{Kind: Etcd, Etcd: EtcdConfig{Endpoints: []string{"http://h1:2379", "http://h2:2379", "http://[::1]:2379"}, Prefix: "matchbox"}},
			"",
		},
		{
			"etcd nested prefix, slashes trimmed",
			Flags{Store: "etcd://h1:2379/site-a/matchbox/"},
			Location{Kind: Etcd, Etcd: EtcdConfig{Endpoints: []string{"http://h1:2379"}, Prefix: "site-a/matchbox"}},
			"",
		},
		{
			"etcd with TLS and a password",
			Flags{Store: "etcd://h1:2379/m", CertFile: cert, KeyFile: key, CAFile: ca, Username: "mb", PasswordFile: pw},
			Location{Kind: Etcd, Etcd: EtcdConfig{Endpoints: []string{"https://h1:2379"}, Prefix: "m", TLS: true, CertFile: cert, KeyFile: key, CAFile: ca, Username: "mb", Password: "s3cret"}},
			"",
		},
		{
			"etcd with a CA alone is TLS",
			Flags{Store: "etcd://h1:2379/m", CAFile: ca},
			Location{Kind: Etcd, Etcd: EtcdConfig{Endpoints: []string{"https://h1:2379"}, Prefix: "m", TLS: true, CAFile: ca}},
			"",
		},
		{"etcd without prefix", Flags{Store: "etcd://h1:2379"}, Location{}, "without a key prefix"},
		{"etcd with root prefix", Flags{Store: "etcd://h1:2379/"}, Location{}, "without a key prefix"},
		{"etcd dot-dot prefix", Flags{Store: "etcd://h1:2379/a/../b"}, Location{}, ".. segment"},
		{"etcd without endpoints", Flags{Store: "etcd:///m"}, Location{}, "without endpoints"},
		{"etcd endpoint without port", Flags{Store: "etcd://h1/m"}, Location{}, `endpoint "h1": want host:port`},
		{"etcd endpoint bad port", Flags{Store: "etcd://h1:99999/m"}, Location{}, "not a number from 1 to 65535"},
		{"etcd endpoint without host", Flags{Store: "etcd://:2379/m"}, Location{}, "no host"},
		{"etcd endpoint twice", Flags{Store: "etcd://h1:2379,h1:2379/m"}, Location{}, "given twice"},
		{"etcd credentials in the URL", Flags{Store: "etcd://u:p@h1:2379/m"}, Location{}, "--etcd-username"},
		{"etcd query", Flags{Store: "etcd://h1:2379/m?tls=1"}, Location{}, "query"},
		{"cert without key", Flags{Store: "etcd://h1:2379/m", CertFile: cert}, Location{}, "--etcd-cert-file and --etcd-key-file go together"},
		{"missing CA file", Flags{Store: "etcd://h1:2379/m", CAFile: missing}, Location{}, "--etcd-ca-file: stat"},
		{"username without password", Flags{Store: "etcd://h1:2379/m", Username: "mb"}, Location{}, "--etcd-username and --etcd-password-file go together"},
		{"empty password", Flags{Store: "etcd://h1:2379/m", Username: "mb", PasswordFile: emptyPW}, Location{}, "empty password"},
		{"missing password file", Flags{Store: "etcd://h1:2379/m", Username: "mb", PasswordFile: missing}, Location{}, "--etcd-password-file"},
		{"etcd with --db", Flags{Store: "etcd://h1:2379/m", DB: "/x.db"}, Location{}, "--store and --db both given"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Resolve(tc.f)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestLocationStringHidesPassword(t *testing.T) {
	l := Location{Kind: Etcd, Etcd: EtcdConfig{Endpoints: []string{"https://h1:2379", "https://h2:2379"}, Prefix: "m", Username: "u", Password: "s3cret"}}
	if got, want := l.String(), "etcd://h1:2379,h2:2379/m"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := (Location{Kind: SQLite, Path: "/a/b.db"}).String(), "sqlite:///a/b.db"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}
