package hardware

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// TestJSONFieldNames pins the wire names: the server stores and the agent
// sends these, so renaming one breaks deployed agents.
func TestJSONFieldNames(t *testing.T) {
	inv := Inventory{
		System:      System{Vendor: "v", Product: "p", Serial: "s", UUID: "u", BootMode: BootModeUEFI},
		CPU:         CPU{Model: "m", Vendor: "v", Arch: "x86_64", Sockets: 1, Cores: 2, Threads: 4, Flags: []string{"lm"}},
		Memory:      Memory{Bytes: 1 << 30},
		Disks:       []Disk{{Name: "sda", SizeBytes: 1, Rotational: true, Model: "m", Serial: "s", WWN: "w"}},
		NICs:        []NIC{{Name: "eth0", MAC: "52:54:00:00:00:01", Driver: "e1000", SpeedMbps: 1000, Link: true}},
		CollectedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	b, err := json.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"system":{"vendor":"v","product":"p","serial":"s","uuid":"u","boot_mode":"uefi"},` +
		`"cpu":{"model":"m","vendor":"v","arch":"x86_64","sockets":1,"cores":2,"threads":4,"flags":["lm"]},` +
		`"memory":{"bytes":1073741824},` +
		`"disks":[{"name":"sda","size_bytes":1,"rotational":true,"model":"m","serial":"s","wwn":"w"}],` +
		`"nics":[{"name":"eth0","mac":"52:54:00:00:00:01","driver":"e1000","speed_mbps":1000,"link":true}],` +
		`"collected_at":"2026-01-02T03:04:05Z"}`
	if string(b) != want {
		t.Errorf("JSON =\n%s\nwant\n%s", b, want)
	}
	var back Inventory
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, inv) {
		t.Errorf("round trip = %+v, want %+v", back, inv)
	}
}
