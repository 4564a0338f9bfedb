package e2elibvirt

import "testing"

func TestParseLoadAvg(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		err  bool
	}{
		{in: "1.83 2.98 4.51 3/912 4438\n", want: 1.83},
		{in: "12.00 2.98 4.51 3/912 4438", want: 12},
		{in: "", err: true},
		{in: "x 2.98 4.51", err: true},
	} {
		got, err := parseLoadAvg(tc.in)
		if (err != nil) != tc.err {
			t.Errorf("parseLoadAvg(%q) error %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if got != tc.want {
			t.Errorf("parseLoadAvg(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
