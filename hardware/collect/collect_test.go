package collect

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"matchbox/hardware"
)

const gib = 1 << 30

func TestCollectFixtures(t *testing.T) {
	intelFlags := func(root string) []string {
		b, err := os.ReadFile(filepath.Join("..", "testdata", root, "proc/cpuinfo"))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
				return sortedFields(v)
			}
		}
		t.Fatalf("no flags in %s", root)
		return nil
	}
	hdd := func(name, serial, wwn string) hardware.Disk {
		return hardware.Disk{Name: name, SizeBytes: 15628053168 * 512, Rotational: true,
			Model: "ST8000NM0055-1RM", Serial: serial, WWN: wwn}
	}
	tests := []struct {
		root string
		want hardware.Inventory
	}{
		{
			root: "dell-r740xd",
			want: hardware.Inventory{
				System: hardware.System{Vendor: "Dell Inc.", Product: "PowerEdge R740xd", Serial: "7XK9F53",
					UUID: "4c4c4544-0058-4b10-8039-b7c04f463533", BootMode: "uefi"},
				CPU: hardware.CPU{Model: "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz", Vendor: "GenuineIntel",
					Arch: "x86_64", Sockets: 2, Cores: 40, Threads: 80, Flags: intelFlags("dell-r740xd")},
				Memory: hardware.Memory{Bytes: 384 * gib},
				Disks: []hardware.Disk{
					{Name: "nvme0n1", SizeBytes: 3750748848 * 512, Model: "Dell Ent NVMe CM6 RI 1.92TB",
						Serial: "Z0L0A04HTB8E", WWN: "eui.00000000000000018ce38e0300a1b2c3"},
					{Name: "nvme1n1", SizeBytes: 3750748848 * 512, Model: "Dell Ent NVMe CM6 RI 1.92TB",
						Serial: "Z0L0A04HTB8F", WWN: "eui.00000000000000018ce38e0300a1b2c4"},
					hdd("sda", "ZA1F0C40", "naa.5000c500b1a2c310"),
					hdd("sdb", "ZA1F0C41", "naa.5000c500b1a2c311"),
					hdd("sdc", "ZA1F0C42", "naa.5000c500b1a2c312"),
					hdd("sdd", "ZA1F0C43", "naa.5000c500b1a2c313"),
					hdd("sde", "ZA1F0C44", "naa.5000c500b1a2c314"),
					hdd("sdf", "ZA1F0C45", "naa.5000c500b1a2c315"),
					hdd("sdg", "ZA1F0C46", "naa.5000c500b1a2c316"),
					hdd("sdh", "ZA1F0C47", "naa.5000c500b1a2c317"),
					{Name: "sdi", SizeBytes: 1875385008 * 512, Model: "MZ7LH960HAJR0D3",
						Serial: "S45NNE0M512345", WWN: "naa.5002538e40a1b2c1"},
					{Name: "sdj", SizeBytes: 1875385008 * 512, Model: "MZ7LH960HAJR0D3",
						Serial: "S45NNE0M512346", WWN: "naa.5002538e40a1b2c2"},
				},
				NICs: []hardware.NIC{
					{Name: "eno1", MAC: "e4:43:4b:1a:2b:3c", Driver: "tg3", SpeedMbps: 1000, Link: true},
					{Name: "eno2", MAC: "e4:43:4b:1a:2b:3d", Driver: "tg3"},
					{Name: "ens2f0np0", MAC: "b8:59:9f:c0:ff:10", Driver: "mlx5_core", SpeedMbps: 25000, Link: true},
					{Name: "ens2f1np1", MAC: "b8:59:9f:c0:ff:11", Driver: "mlx5_core", SpeedMbps: 25000, Link: true},
				},
			},
		},
		{
			root: "supermicro-1u",
			want: hardware.Inventory{
				System: hardware.System{Vendor: "Supermicro", Product: "SYS-5019C-MR", Serial: "S349872X9A12345",
					UUID: "00000000-0000-0000-0000-ac1f6b8e1234", BootMode: "bios"},
				CPU: hardware.CPU{Model: "Intel(R) Xeon(R) E-2236 CPU @ 3.40GHz", Vendor: "GenuineIntel",
					Arch: "x86_64", Sockets: 1, Cores: 6, Threads: 12, Flags: intelFlags("supermicro-1u")},
				Memory: hardware.Memory{Bytes: 32657784 * 1024},
				Disks: []hardware.Disk{
					{Name: "sda", SizeBytes: 1000215216 * 512, Model: "Samsung SSD 860",
						Serial: "S3Z9NB0K123456X", WWN: "naa.5002538e4012ab34"},
					{Name: "sdb", SizeBytes: 7814037168 * 512, Rotational: true, Model: "WDC WD40EFRX-68N",
						Serial: "WD-WCC7K1ABCDEF", WWN: "naa.50014ee2b1234567"},
				},
				NICs: []hardware.NIC{
					{Name: "eno1", MAC: "ac:1f:6b:8e:12:34", Driver: "igb", SpeedMbps: 1000, Link: true},
					{Name: "eno2", MAC: "ac:1f:6b:8e:12:35", Driver: "igb"},
				},
			},
		},
		{
			root: "ampere-altra",
			want: hardware.Inventory{
				System: hardware.System{Vendor: "GIGABYTE", Product: "R152-P31-00", Serial: "GJH3N1012A0001",
					UUID: "2b7a9c10-5e3f-11eb-8001-b42e99a1b2c3", BootMode: "uefi"},
				CPU: hardware.CPU{Model: "Neoverse-N1", Vendor: "ARM", Arch: "aarch64", Sockets: 1, Cores: 32, Threads: 32,
					Flags: []string{"aes", "asimd", "asimddp", "asimdhp", "asimdrdm", "atomics", "cpuid", "crc32",
						"dcpop", "evtstrm", "fp", "fphp", "lrcpc", "pmull", "sha1", "sha2", "ssbs"}},
				Memory: hardware.Memory{Bytes: 128 * gib},
				Disks: []hardware.Disk{
					{Name: "nvme0n1", SizeBytes: 1875385008 * 512, Model: "SAMSUNG MZQL2960HCJR-00A07",
						Serial: "S64FNE0R901234", WWN: "eui.36344630529012340025384500000001"},
				},
				NICs: []hardware.NIC{
					{Name: "enp1s0f0np0", MAC: "0c:42:a1:5e:6f:70", Driver: "mlx5_core", SpeedMbps: 25000, Link: true},
					{Name: "enp1s0f1np1", MAC: "0c:42:a1:5e:6f:71", Driver: "mlx5_core"},
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.root, func(t *testing.T) {
			got, err := Collect(context.Background(), filepath.Join("..", "testdata", tt.root))
			if err != nil {
				t.Fatalf("Collect: %v", err)
			}
			if got.CollectedAt.IsZero() {
				t.Error("CollectedAt is zero")
			}
			got.CollectedAt = tt.want.CollectedAt
			if !reflect.DeepEqual(got, tt.want) {
				g, _ := json.MarshalIndent(got, "", " ")
				w, _ := json.MarshalIndent(tt.want, "", " ")
				t.Errorf("inventory differs\ngot:  %s\nwant: %s", g, w)
			}
		})
	}
}

func TestCollectMissingFacts(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := Collect(context.Background(), root)
	if err != nil {
		t.Fatalf("Collect on an empty proc: %v", err)
	}
	want := hardware.Inventory{
		System:      hardware.System{BootMode: "bios"},
		CPU:         hardware.CPU{Arch: hostArch()},
		Disks:       []hardware.Disk{},
		NICs:        []hardware.NIC{},
		CollectedAt: got.CollectedAt,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestCollectBadRoot(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, root, wantErr string
	}{
		{"empty", "", "empty root"},
		{"missing", filepath.Join(dir, "nope"), "no such file"},
		{"file", file, "not a directory"},
		{"no proc or sys", dir, "neither proc nor sys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Collect(context.Background(), tt.root)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Collect(%q) error = %v, want one containing %q", tt.root, err, tt.wantErr)
			}
		})
	}
}

func TestCollectCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Collect(ctx, filepath.Join("..", "testdata", "supermicro-1u")); err == nil {
		t.Fatal("Collect with a canceled context returned no error")
	}
}

func TestParseCPUInfoFallbacks(t *testing.T) {
	tests := []struct {
		name                    string
		cpuinfo                 string
		sockets, cores, threads int
		arch                    string
	}{
		{"no topology ids", "processor : 0\nvendor_id : GenuineIntel\nflags : fpu lm\n\nprocessor : 1\nvendor_id : GenuineIntel\nflags : fpu lm\n", 1, 2, 2, "x86_64"},
		{"32-bit x86", "processor : 0\nvendor_id : GenuineIntel\nflags : fpu\n", 1, 1, 1, "i686"},
		{"arm64", "processor : 0\nCPU implementer : 0x48\nCPU architecture: 8\nCPU part : 0xd01\n", 1, 1, 1, "aarch64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "proc/cpuinfo"), []byte(tt.cpuinfo), 0o644); err != nil {
				t.Fatal(err)
			}
			got := reader{root: root}.cpu()
			if got.Sockets != tt.sockets || got.Cores != tt.cores || got.Threads != tt.threads || got.Arch != tt.arch {
				t.Errorf("got sockets=%d cores=%d threads=%d arch=%q, want %d %d %d %q",
					got.Sockets, got.Cores, got.Threads, got.Arch, tt.sockets, tt.cores, tt.threads, tt.arch)
			}
		})
	}
}

func TestCleanPlaceholders(t *testing.T) {
	tests := []struct{ in, want string }{
		{"To Be Filled By O.E.M.", ""},
		{"Default string", ""},
		{"System Serial Number", ""},
		{"0123456789", ""},
		{"Not Specified", ""},
		{"Dell Inc.", "Dell Inc."},
		{"7XK9F53", "7XK9F53"},
	}
	for _, tt := range tests {
		if got := clean(tt.in); got != tt.want {
			t.Errorf("clean(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func BenchmarkCollect(b *testing.B) {
	root := filepath.Join("..", "testdata", "dell-r740xd")
	for b.Loop() {
		if _, err := Collect(context.Background(), root); err != nil {
			b.Fatal(err)
		}
	}
}
