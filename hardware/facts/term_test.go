package facts

import (
	"errors"
	"strings"
	"testing"

	"matchbox/hardware"
)

// server is a 2-socket x86 server with mixed disks and NICs.
func server() *hardware.Inventory {
	return &hardware.Inventory{
		System: hardware.System{Vendor: "Dell Inc.", Product: "R640", Serial: "7XK9F53",
			UUID: "4c4c4544-0058-4b10-8039-b7c04f463533", BootMode: "uefi"},
		CPU: hardware.CPU{Model: "Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz", Vendor: "GenuineIntel", Arch: "x86_64",
			Sockets: 2, Cores: 40, Threads: 80, Flags: []string{"avx2", "avx512f", "lm", "sse4_2"}},
		Memory: hardware.Memory{Bytes: 384 << 30},
		Disks: []hardware.Disk{
			{Name: "nvme0n1", SizeBytes: 1920383410176},
			{Name: "sda", SizeBytes: 8001563222016, Rotational: true},
			{Name: "sdb", SizeBytes: 8001563222016, Rotational: true},
		},
		NICs: []hardware.NIC{
			{Name: "eno1", Driver: "tg3", SpeedMbps: 1000, Link: true},
			{Name: "ens2f0", Driver: "mlx5_core", SpeedMbps: 25000, Link: true},
			{Name: "ens2f1", Driver: "mlx5_core"},
		},
	}
}

// small is a 1U machine with one SSD, one NIC, 32 GB memory and BIOS boot.
func small() *hardware.Inventory {
	return &hardware.Inventory{
		System: hardware.System{Vendor: "Supermicro", Product: "SYS-5019C-MR", BootMode: "bios"},
		CPU:    hardware.CPU{Vendor: "GenuineIntel", Arch: "x86_64", Sockets: 1, Cores: 6, Threads: 12, Flags: []string{"avx2", "lm"}},
		Memory: hardware.Memory{Bytes: 32 * 1e9},
		Disks:  []hardware.Disk{{Name: "sda", SizeBytes: 512110190592}},
		NICs:   []hardware.NIC{{Name: "eno1", Driver: "igb", SpeedMbps: 1000, Link: true}},
	}
}

// unknown is an inventory in which the agent could read nothing.
func unknown() *hardware.Inventory { return &hardware.Inventory{} }

func TestEval(t *testing.T) {
	tests := []struct {
		expr                  string
		server, small, nofact bool
	}{
		// numbers, every operator
		{"memory.bytes >= 64GiB", true, false, false},
		{"memory.bytes > 384GiB", false, false, false},
		{"memory.bytes >= 384GiB", true, false, false},
		{"memory.bytes <= 384GiB", true, true, false},
		{"memory.bytes < 384GiB", false, true, false},
		{"memory.bytes = 384GiB", true, false, false},
		{"memory.bytes != 384GiB", false, true, false},
		{"memory.bytes = 32GB", false, true, false},
		{"memory.bytes = 32000000000", false, true, false},
		{"memory.bytes = 0.375TiB", true, false, false},
		{"memory.bytes in (32GB, 384GiB)", true, true, false},
		{"memory.bytes in (1, 2, 3)", false, false, false},
		{"cpu.cores >= 16", true, false, false},
		{"cpu.threads = 12", false, true, false},
		{"cpu.sockets in (2, 4)", true, false, false},
		{"cpu.sockets != 2", false, true, false},
		// counts are known even when zero
		{"disk.count >= 2", true, false, false},
		{"disk.count = 0", false, false, true},
		{"disk.count < 2", false, true, true},
		{"disk.hdd.count = 2", true, false, false},
		{"disk.ssd.count = 1", true, true, false},
		{"disk.nvme.count >= 1", true, false, false},
		{"disk.total_bytes > 16TB", true, false, false},
		{"disk.max_bytes >= 8TB", true, false, false},
		{"nic.count >= 2", true, false, false},
		{"nic.up.count = 2", true, false, false},
		{"nic.speed_mbps >= 25Gbps", true, false, false},
		{"nic.speed_mbps = 1000", false, true, false},
		{"nic.speed_mbps < 10Gbps", false, true, false},
		// booleans
		{"disk.rotational = false", false, true, true},
		{"disk.rotational = true", true, false, false},
		{"disk.rotational != true", false, true, true},
		{"disk.rotational = FALSE", false, true, true},
		// strings
		{`system.vendor = "Dell Inc."`, true, false, false},
		{`system.vendor = Dell Inc.`, true, false, false},
		{`system.vendor = dell inc.`, false, false, false},
		{`system.vendor != "Dell Inc."`, false, true, false},
		{`system.product in ("R640", "R650")`, true, false, false},
		{`system.product in (R650, SYS-5019C-MR)`, false, true, false},
		{"system.boot_mode = uefi", true, false, false},
		{"system.serial = 7XK9F53", true, false, false},
		{"cpu.arch = x86_64", true, true, false},
		{"cpu.arch != aarch64", true, true, false},
		{"cpu.vendor = GenuineIntel", true, true, false},
		// sets
		{"cpu.flags = avx512f", true, false, false},
		{"cpu.flags != avx512f", false, true, false},
		{"cpu.flags in (avx512f, sse4_2)", true, false, false},
		{"cpu.flags in (avx2, neon)", true, true, false},
		{"nic.driver = mlx5_core", true, false, false},
		{"nic.driver != mlx5_core", false, true, false},
		// whitespace
		{"  memory.bytes>=64GiB  ", true, false, false},
		{"memory.bytes >= 64 GiB", true, false, false},
		{"\tcpu.cores\t>=\t16", true, false, false},
		{"system.product in(R640,R650)", true, false, false},
		{"system.product in (  R640 ,  R650  )", true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			term, err := Parse(tt.expr)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			for _, c := range []struct {
				name string
				inv  *hardware.Inventory
				want bool
			}{{"server", server(), tt.server}, {"small", small(), tt.small}, {"unknown", unknown(), tt.nofact}, {"nil", nil, false}} {
				if got := term.Eval(c.inv); got != c.want {
					t.Errorf("Eval(%s) = %v, want %v", c.name, got, c.want)
				}
			}
		})
	}
}

func TestString(t *testing.T) {
	tests := []struct{ expr, want string }{
		{"memory.bytes>=64GiB", "memory.bytes >= 64GiB"},
		{"memory.bytes >= 68719476736", "memory.bytes >= 64GiB"},
		{"memory.bytes >= 64gib", "memory.bytes >= 64GiB"},
		{"memory.bytes >= 0.0625TiB", "memory.bytes >= 64GiB"},
		{"memory.bytes >= 64GB", "memory.bytes >= 64GB"},
		{"memory.bytes >= 64000MB", "memory.bytes >= 64GB"},
		{"memory.bytes >= 1.5KB", "memory.bytes >= 1500B"},
		{"memory.bytes >= 1024000", "memory.bytes >= 1000KiB"},
		{"memory.bytes >= 0", "memory.bytes >= 0B"},
		{"nic.speed_mbps >= 25000", "nic.speed_mbps >= 25Gbps"},
		{"nic.speed_mbps >= 2500", "nic.speed_mbps >= 2500Mbps"},
		{"nic.speed_mbps >= 0.1Tbps", "nic.speed_mbps >= 100Gbps"},
		{"disk.rotational = False", "disk.rotational = false"},
		{"system.vendor = Dell Inc.", `system.vendor = "Dell Inc."`},
		{`system.vendor = "Dell Inc."`, `system.vendor = "Dell Inc."`},
		{`system.vendor = "say \"hi\""`, `system.vendor = "say \"hi\""`},
		{`system.vendor = Micro-Star International Co., Ltd.`, `system.vendor = "Micro-Star International Co., Ltd."`},
		{`system.product in ("R650", R640, "R650")`, `system.product in ("R640", "R650")`},
		{"cpu.cores in (32, 8, 16, 8)", "cpu.cores in (8, 16, 32)"},
		{"memory.bytes in (1GiB, 1073741824)", "memory.bytes in (1GiB)"},
		{"cpu.flags = avx512f", `cpu.flags = "avx512f"`},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			term, err := Parse(tt.expr)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := term.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			again, err := Parse(term.String())
			if err != nil {
				t.Fatalf("re-parse of %q: %v", term.String(), err)
			}
			if !again.Equal(term) {
				t.Errorf("re-parsed %q differs: %q", term.String(), again.String())
			}
		})
	}
}

func TestKeyAndOp(t *testing.T) {
	term, err := Parse(`system.product in ("R640")`)
	if err != nil {
		t.Fatal(err)
	}
	if term.Key() != "system.product" || term.Op() != OpIn {
		t.Errorf("Key, Op = %q, %q", term.Key(), term.Op())
	}
	var zero Term
	if zero.Eval(server()) || zero.String() != "" || zero.Key() != "" {
		t.Error("the zero Term must match nothing and print empty")
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		expr string
		pos  int
		want string // substring of the error
	}{
		{"", 1, "expected a fact name, got end of input"},
		{"   ", 4, "expected a fact name, got end of input"},
		{">= 4", 1, `expected a fact name, got ">="`},
		{"memory.bytes >= 64XB", 17, `expected a number with an optional unit (B, KB, MB, GB, TB, PB, KiB, MiB, GiB, TiB, PiB), got "64XB"`},
		{"memory.bytes >= ", 17, "got end of input"},
		{"memory.bytes >= -1", 17, `got "-1"`},
		{"memory.bytes >= 1.5B", 17, `expected a whole number of bytes (1.5B is 1.500 bytes; round it, or use a unit that divides it), got "1.5B"`},
		{"memory.bytes >= 1.3TiB", 17, `expected a whole number of bytes (1.3TiB is 1429365116108.800 bytes; round it, or use a unit that divides it), got "1.3TiB"`},
		{"nic.speed_mbps >= 2.5005Gbps", 19, `expected a whole number of Mbps (2.5005Gbps is 2500.500 Mbps`},
		{"memory.bytes >= 1.", 17, `got "1."`},
		{"memory.bytes >= 99999999999999999999", 17, "got"},
		{"memory.bytes >= 20EiB", 17, `got "20EiB"`},
		{`memory.bytes >= "64GiB"`, 17, `got "\"64GiB\""`},
		{"memory.bytes >= true", 17, "expected a number"},
		{"memory.bytes == 64GiB", 14, `expected an operator (=, !=, <, <=, >, >=, in), got "=="`},
		{"memory.bytes ~ 64GiB", 14, "expected an operator"},
		{"memory.bytes", 13, "expected an operator (=, !=, <, <=, >, >=, in), got end of input"},
		{"cpu.cores >= 16.5", 14, `expected a whole number, got "16.5"`},
		{"cpu.cores >= 16k", 14, `expected a whole number, got "16k"`},
		{"nic.speed_mbps >= 25GiB", 19, `expected a number with an optional unit (Mbps, Gbps, Tbps), got "25GiB"`},
		{"disk.rotational = maybe", 19, `expected true or false, got "maybe"`},
		{`disk.rotational = "false"`, 19, "expected true or false"},
		{"disk.rotational < true", 17, `expected = or != for the boolean fact disk.rotational, got "<"`},
		{"disk.rotational in (true)", 17, "expected = or !="},
		{"system.vendor > Dell", 15, `expected =, != or in for the string fact system.vendor, got ">"`},
		{"cpu.flags >= avx", 11, "expected =, != or in for the set fact cpu.flags"},
		{`system.vendor = "Dell`, 17, "expected a closing quote, got end of input"},
		{`system.vendor = "Dell\q"`, 17, "expected a string with valid escapes"},
		{`system.vendor = "Dell" x`, 24, `expected end of input, got "x"`},
		{"system.vendor =", 16, "expected a value (a bare word or a quoted string), got end of input"},
		{"system.product in R640", 19, `expected "(" to open the list, got "R640"`},
		{"system.product in ()", 20, `got ")"`},
		{"system.product in (R640,)", 25, `got ")"`},
		{"system.product in (R640", 24, `expected "," or ")", got end of input`},
		{`system.product in ("R640" "R650")`, 27, `expected "," or ")"`},
		{"system.product in (R640) x", 26, "expected end of input"},
		{"cpu.cores in (8, x)", 18, "expected a whole number"},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			_, err := Parse(tt.expr)
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("Parse error = %v, want a *SyntaxError", err)
			}
			if se.Pos != tt.pos || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q (position %d), want position %d and %q", err, se.Pos, tt.pos, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "position ") {
				t.Errorf("error %q does not start with its position", err)
			}
		})
	}
}

func TestUnknownFact(t *testing.T) {
	tests := []struct {
		expr      string
		name      string
		suggested []string // must be among the suggestions, the first one first
	}{
		{"memory.byte >= 1", "memory.byte", []string{"memory.bytes"}},
		{"Memory.Bytes >= 1", "Memory.Bytes", []string{"memory.bytes"}},
		{"cpu.core >= 1", "cpu.core", []string{"cpu.cores"}},
		{"disk.cnt >= 1", "disk.cnt", []string{"disk.count"}},
		{"nic.speed = 1", "nic.speed", []string{"nic.speed_mbps"}},
		{"system.vendr = x", "system.vendor", nil},
		{"  gpu.count >= 1", "gpu.count", nil},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			_, err := Parse(tt.expr)
			var ue *UnknownFactError
			if !errors.As(err, &ue) {
				t.Fatalf("Parse error = %v, want an *UnknownFactError", err)
			}
			if len(tt.suggested) > 0 {
				if len(ue.Suggestions) == 0 || ue.Suggestions[0] != tt.suggested[0] {
					t.Errorf("suggestions = %v, want %v first", ue.Suggestions, tt.suggested[0])
				}
				if !strings.Contains(err.Error(), "did you mean "+tt.suggested[0]) {
					t.Errorf("error %q does not suggest %s", err, tt.suggested[0])
				}
			}
			if tt.name == "gpu.count" {
				if ue.Pos != 3 || len(ue.Suggestions) != 0 || !strings.Contains(err.Error(), "known facts: cpu.arch") {
					t.Errorf("error = %q (position %d), want position 3 and the full fact list", err, ue.Pos)
				}
			}
		})
	}
}

func TestFactsDocumented(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range Facts() {
		if seen[f.Name] {
			t.Errorf("fact %s defined twice", f.Name)
		}
		seen[f.Name] = true
		if f.Doc == "" || f.Type.String() == "unknown" {
			t.Errorf("fact %s lacks a doc or a type", f.Name)
		}
		// Every fact evaluates on a full and an empty inventory without panicking.
		expr := f.Name + " = 1"
		switch f.Type {
		case TypeBool:
			expr = f.Name + " = true"
		case TypeString, TypeSet:
			expr = f.Name + " = x"
		}
		term, err := Parse(expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		term.Eval(server())
		term.Eval(unknown())
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"memory.bytes >= 64GiB", "disk.count >= 2", "disk.rotational = false", "cpu.cores >= 16",
		`system.vendor = "Dell Inc."`, "nic.count >= 2", "cpu.arch = x86_64", `system.product in ("R640", "R650")`,
		"nic.speed_mbps >= 25Gbps", "cpu.flags in (avx512f, sse4_2)", `system.serial = "\xff\u00e9"`,
		"memory.bytes in (1.5TB, 3)", "system.vendor = Foo, Inc.",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		term, err := Parse(expr)
		if err != nil {
			return
		}
		canon := term.String()
		again, err := Parse(canon)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", canon, expr, err)
		}
		if again.String() != canon {
			t.Fatalf("canonical form %q re-parses to %q", canon, again.String())
		}
		if again.Eval(server()) != term.Eval(server()) || again.Eval(small()) != term.Eval(small()) {
			t.Fatalf("%q and its canonical form %q evaluate differently", expr, canon)
		}
	})
}
