package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/mux"

	"matchbox/api/wire"
	"matchbox/dhcp"
)

func TestListLeases(t *testing.T) {
	s := newTestServer(t, Config{})
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	var writes []dhcp.LeaseWrite
	for _, l := range []struct{ ip, mac, host, state string }{
		{"10.0.0.10", "52:54:00:00:00:0a", "n10", "bound"},
		{"10.0.0.2", "52:54:00:00:00:02", "", "bound"},
		{"10.0.0.3", "52:54:00:00:00:03", "n3", "released"},
		{"10.0.0.4", "52:54:00:00:00:04", "", "declined"},
	} {
		writes = append(writes, dhcp.LeaseWrite{Lease: dhcp.Lease{IP: netip.MustParseAddr(l.ip), MAC: l.mac, Hostname: l.host, Expires: exp, State: dhcp.LeaseState(l.state)}})
	}
	if err := s.store.CommitLeases(context.Background(), writes); err != nil {
		t.Fatal(err)
	}
	ids := func(path string) ([]string, string) {
		var list wire.List
		s.must(t, http.StatusOK, "GET", path, "").decode(t, &list)
		var out []string
		for _, it := range list.Items {
			if it.Lease == nil || it.Lease.IP != it.ID {
				t.Fatalf("%s: item %+v", path, it)
			}
			out = append(out, it.ID+" "+it.Lease.State)
		}
		return out, list.Next
	}
	tests := []struct {
		path     string
		want     []string
		wantNext string
	}{
		{"/api/v1/leases", []string{"10.0.0.2 bound", "10.0.0.3 released", "10.0.0.4 declined", "10.0.0.10 bound"}, ""},
		{"/api/v1/leases?state=bound", []string{"10.0.0.2 bound", "10.0.0.10 bound"}, ""},
		{"/api/v1/leases?mac=52-54-00-00-00-03", []string{"10.0.0.3 released"}, ""},
		{"/api/v1/leases?ip=10.0.0.10", []string{"10.0.0.10 bound"}, ""},
		{"/api/v1/leases?limit=2", []string{"10.0.0.2 bound", "10.0.0.3 released"}, "10.0.0.3"},
		{"/api/v1/leases?limit=2&after=10.0.0.3", []string{"10.0.0.4 declined", "10.0.0.10 bound"}, ""},
		{"/api/v1/leases?mac=52:54:00:00:00:99", nil, ""},
	}
	for _, tt := range tests {
		got, next := ids(tt.path)
		if diff := cmp.Diff(tt.want, got); diff != "" || next != tt.wantNext {
			t.Errorf("GET %s (-want +got):\n%s next %q, want %q", tt.path, diff, next, tt.wantNext)
		}
	}
	var one wire.List
	s.must(t, http.StatusOK, "GET", "/api/v1/leases?ip=10.0.0.10", "").decode(t, &one)
	want := &wire.Lease{IP: "10.0.0.10", MAC: "52:54:00:00:00:0a", Hostname: "n10", Expires: "2030-01-02T03:04:05Z", State: "bound"}
	if diff := cmp.Diff(want, one.Items[0].Lease); diff != "" {
		t.Errorf("lease (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"?mac=nope", "?ip=ten", "?state=offered", "?after=x", "?limit=0"} {
		if r := s.must(t, http.StatusBadRequest, "GET", "/api/v1/leases"+bad, ""); r.errorCode() != CodeBadRequest {
			t.Errorf("GET leases%s: %s", bad, r.body)
		}
	}
	s.must(t, http.StatusMethodNotAllowed, "POST", "/api/v1/leases", "{}")
}

func TestListLeasesNotConfigured(t *testing.T) {
	st := newTestServer(t, Config{}).store
	a, err := New(Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	r := mux.NewRouter()
	a.Register(r)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/api/v1/leases", nil)
	req.RemoteAddr = "127.0.0.1:1234"
	r.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotImplemented {
		t.Errorf("without leases: %d %s", rec.Code, rec.Body)
	}
}
