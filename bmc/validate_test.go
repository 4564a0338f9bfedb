package bmc

import (
	"errors"
	"testing"
)

// TestValidate: each bad field is named, and every failure is an
// ErrInvalidArgument.
func TestValidate(t *testing.T) {
	ok := Endpoint{Address: "10.0.0.5", Port: 623, Driver: DriverIPMI, CipherSuite: "17", Username: "admin", Password: "pw"}
	cases := []struct {
		name  string
		edit  func(e *Endpoint)
		field string // "" for valid
	}{
		{"valid", func(e *Endpoint) {}, ""},
		{"automatic driver, default port, no credentials", func(e *Endpoint) { *e = Endpoint{Address: "bmc.example"} }, ""},
		{"no address", func(e *Endpoint) { e.Address = "" }, "address"},
		{"blank address", func(e *Endpoint) { e.Address = "  " }, "address"},
		{"negative port", func(e *Endpoint) { e.Port = -1 }, "port"},
		{"port too large", func(e *Endpoint) { e.Port = 65536 }, "port"},
		{"unknown driver", func(e *Endpoint) { e.Driver = "amt" }, "driver"},
		{"cipher suite not a number", func(e *Endpoint) { e.CipherSuite = "x" }, "cipher_suite"},
		{"password without username", func(e *Endpoint) { e.Username = "" }, "username"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := ok
			c.edit(&e)
			err := e.Validate()
			var fe *FieldError
			switch {
			case c.field == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.field == "":
			case !errors.As(err, &fe) || fe.Field != c.field || !errors.Is(err, ErrInvalidArgument):
				t.Fatalf("err = %v, want a FieldError on %s matching ErrInvalidArgument", err, c.field)
			}
		})
	}
}
