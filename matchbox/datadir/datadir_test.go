package datadir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

func TestReadCompatDirectory(t *testing.T) {
	fsys := fstest.MapFS{
		"profiles/etcd3.json": {Data: []byte(`{
  "id": "etcd3",
  "name": "etcd3",
  "cloud_id": "",
  "boot": {
    "kernel": "/assets/flatcar/current/flatcar_production_pxe.vmlinuz",
    "initrd": ["/assets/flatcar/current/flatcar_production_pxe_image.cpio.gz"],
    "args": ["initrd=flatcar_production_pxe_image.cpio.gz", "flatcar.config.url=http://matchbox.example.com:8080/ignition?uuid=${uuid}&mac=${mac:hexhyp}", "flatcar.first_boot=yes"]
  },
  "ignition_id": "etcd3.yaml"
}`)},
		"profiles/install.yaml": {Data: []byte("boot:\n  kernel: /k\n  args: [a, b]\n")},
		"groups/node1.json":     {Data: []byte(`{"id":"node1","name":"etcd3 node 1","profile":"etcd3","selector":{"mac":"52-54-00-A1-9C-AE","os":"installed"},"metadata":{"domain_name":"node1.example.com","n":1,"nested":{"a":["x"]}}}`)},
		"groups/default.yaml":   {Data: []byte("id: default\nprofile: install\n")},
		"ignition/etcd3.yaml":   {Data: []byte("variant: flatcar\nversion: 1.0.0\n")},
		"generic/notes.txt":     {Data: []byte("{{.x}}")},
		"profiles/README":       {Data: []byte("ignored")},
		"profiles/.hidden.json": {Data: []byte("garbage")},
	}
	c, err := ReadFS(fsys)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Profiles) != 2 || len(c.Groups) != 2 || len(c.Templates) != 2 {
		t.Fatalf("read %d profiles, %d groups, %d templates", len(c.Profiles), len(c.Groups), len(c.Templates))
	}
	if p := c.Profiles[0].Value; p.ID != "etcd3" || len(p.Boot.Args) != 3 || p.IgnitionID != "etcd3.yaml" {
		t.Errorf("profile: %+v", p)
	}
	if p := c.Profiles[1].Value; p.ID != "install" || c.Profiles[1].File != "profiles/install.yaml" {
		t.Errorf("id from file name: %+v", c.Profiles[1])
	}
	g := c.Groups[1].Value
	if g.ID != "node1" || g.Selector["mac"] != "52:54:00:a1:9c:ae" || g.Metadata["n"] != 1.0 {
		t.Errorf("group: %+v", g)
	}
	if !strings.Contains(strings.Join(c.Warnings, "\n"), `profiles/etcd3.json:4: unknown field "cloud_id" ignored`) {
		t.Errorf("warnings: %v", c.Warnings)
	}
}

func TestReadErrorsNameFileAndLine(t *testing.T) {
	cases := []struct {
		name, file, data, want string
	}{
		{"json syntax", "profiles/p.json", "{\n  \"id\": \"p\",\n  \"boot\": {\n    \"kernel\": \"/k\",\n  }\n}", "profiles/p.json:5: invalid JSON"},
		{"json type", "profiles/p.json", "{\n  \"id\": \"p\",\n  \"boot\": {\"args\": \"not-a-list\"}\n}", "profiles/p.json:3: field boot.args: cannot use a JSON string"},
		{"json trailing data", "groups/g.json", "{\"id\":\"g\",\"profile\":\"p\"}\n{}", "groups/g.json:2: unexpected data after the JSON object"},
		{"yaml syntax", "groups/g.yaml", "id: g\nprofile: p\nselector:\n  mac: [\n", "groups/g.yaml:4: invalid YAML"},
		{"yaml type", "groups/g.yaml", "id: g\nprofile: p\npriority: high\n", "groups/g.yaml:3: cannot unmarshal !!str `high` into int"},
		{"yaml not a mapping", "groups/g.yaml", "- a\n- b\n", "groups/g.yaml:1: expected a mapping"},
		{"bad mac", "groups/g.yaml", "id: g\nprofile: p\nselector:\n  mac: nope\n", "groups/g.yaml:3: group \"g\": selector mac: invalid MAC address"},
		{"no profile", "groups/g.yaml", "id: g\nselector: {os: x}\n", "groups/g.yaml:0"},
		{"bad id", "profiles/p.yaml", "id: ../etc\n", "profiles/p.yaml:1: profile id \"../etc\" is invalid"},
		{"empty", "profiles/p.json", "\n\n", "profiles/p.json:1: file is empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadFS(fstest.MapFS{c.file: {Data: []byte(c.data)}})
			if err == nil {
				t.Fatal("bad file accepted")
			}
			if c.name == "no profile" {
				if !strings.Contains(err.Error(), "field profile is required") {
					t.Fatalf("error %q", err)
				}
				return
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
			var fe *FileError
			if !errors.As(err, &fe) || fe.File != c.file {
				t.Fatalf("error %v is not a FileError for %s", err, c.file)
			}
		})
	}
}

func TestReadAllErrors(t *testing.T) {
	_, err := ReadFS(fstest.MapFS{
		"profiles/a.json": {Data: []byte("{")},
		"groups/b.yaml":   {Data: []byte("id: [")},
	})
	if err == nil || !strings.Contains(err.Error(), "profiles/a.json") || !strings.Contains(err.Error(), "groups/b.yaml") {
		t.Fatalf("every bad file must be listed: %v", err)
	}
}

func TestReadMissingDirIsEmpty(t *testing.T) {
	c, err := Read(filepath.Join(t.TempDir(), "nothing"))
	if err != nil || len(c.Profiles)+len(c.Groups)+len(c.Templates) != 0 {
		t.Fatalf("%v %+v", err, c)
	}
}

func TestShippedDefaults(t *testing.T) {
	root := filepath.Join("..", "..")
	c, err := Read(root)
	if err != nil {
		t.Fatalf("shipped data directory: %v", err)
	}
	if len(c.Profiles) == 0 || len(c.Groups) == 0 {
		t.Fatalf("shipped data directory has %d profiles and %d groups", len(c.Profiles), len(c.Groups))
	}
	if _, err := os.Stat(filepath.Join(root, "profiles")); err != nil {
		t.Fatal(err)
	}
}

func FuzzDecodeProfile(f *testing.F) {
	f.Add([]byte(`{"id":"p","boot":{"kernel":"/k","initrd":["/i"],"args":["a"]},"ignition_id":"x.yaml"}`))
	f.Add([]byte("id: p\nboot:\n  kernel: /k\n"))
	f.Add([]byte("{"))
	f.Add([]byte("- a"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, _, err := DecodeProfile(data, "profiles/f.json", "f")
		if err == nil && p.ID == "" {
			t.Fatal("decoded a profile without id")
		}
		if err != nil {
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("error without file: %v", err)
			}
		}
	})
}

func FuzzDecodeGroup(f *testing.F) {
	f.Add([]byte(`{"id":"g","profile":"p","selector":{"mac":"52:54:00:00:00:01"},"metadata":{"a":{"b":1}}}`))
	f.Add([]byte("id: g\nprofile: p\nselector: {mac: 52-54-00-00-00-01}\nfacts: ['cpu.cores >= 2']\n"))
	f.Add([]byte("profile: p\npriority: 3\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, _, err := DecodeGroup(data, "groups/f.yaml", "f")
		if err != nil {
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("error without file: %v", err)
			}
			return
		}
		if g.Profile == "" || g.ID == "" {
			t.Fatalf("accepted group without id or profile: %+v", g)
		}
		if mac, ok := g.Selector["mac"]; ok && len(mac) != 17 {
			t.Fatalf("mac selector not normalised: %q", mac)
		}
	})
}

// TestDecodeProfileLifecycle: provisioned_by and provisioning_timeout are
// checked, naming the file and line.
func TestDecodeProfileLifecycle(t *testing.T) {
	cases := []struct {
		name, yaml, wantErr string
	}{
		{"defaults", "id: p\n", ""},
		{"callback and a timeout", "id: p\nprovisioned_by: callback\nprovisioning_timeout: 30m\n", ""},
		{"completion by fetch", "id: p\nprovisioned_by: ignition\n", ""},
		{"unknown endpoint", "id: p\nname: x\nprovisioned_by: disk\n", "p.yaml:3: profile \"p\": provisioned_by \"disk\""},
		{"not a duration", "id: p\nprovisioning_timeout: soon\n", "p.yaml:2: profile \"p\": provisioning_timeout \"soon\""},
		{"negative", "id: p\nprovisioning_timeout: -1m\n", "p.yaml:2: profile \"p\": provisioning_timeout \"-1m\""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := DecodeProfile([]byte(c.yaml), "p.yaml", "p")
			if c.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("err %v, want %q", err, c.wantErr)
			}
		})
	}
}
