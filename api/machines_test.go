package api

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"matchbox/api/wire"
	"matchbox/matchbox"
)

func TestMachineLabelsStateAndEvents(t *testing.T) {
	s := newTestServer(t, Config{})
	s.must(t, 201, "POST", "/api/v1/machines", `{"id": "m1", "macs": ["52:54:00:00:00:01"]}`)
	r := s.must(t, 200, "PUT", "/api/v1/machines/m1/labels", `{"labels": {"rack": "r1"}}`)
	if r.header.Get("ETag") != `"2"` {
		t.Fatalf("labels: ETag %q", r.header.Get("ETag"))
	}
	s.must(t, 412, "PUT", "/api/v1/machines/m1/state", `{"state": "ready"}`, `If-Match: "1"`)
	s.must(t, 400, "PUT", "/api/v1/machines/m1/state", `{"state": "gone"}`)
	s.must(t, 200, "PUT", "/api/v1/machines/m1/state", `{"state": "ready"}`, `If-Match: "2"`)
	var l wire.List
	s.must(t, 200, "GET", "/api/v1/machines?state=ready&label=rack=r1", "").decode(t, &l)
	if len(l.Items) != 1 || l.Items[0].Machine.Labels["rack"] != "r1" || l.Items[0].Machine.MACs[0] != "52:54:00:00:00:01" {
		t.Fatalf("filtered list: %+v", l.Items)
	}
	s.must(t, 200, "GET", "/api/v1/machines?label=rack=r2", "").decode(t, &l)
	if len(l.Items) != 0 {
		t.Fatalf("label filter: %+v", l.Items)
	}
	// A MAC of another machine is refused.
	s.must(t, 409, "POST", "/api/v1/machines", `{"id": "m2", "macs": ["52-54-00-00-00-01"]}`)

	t0 := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	var evs []matchbox.BootEvent
	for i, typ := range []string{"dhcp.discover", "dhcp.ack", "tftp.get", "http.ipxe", "dhcp.ack"} {
		evs = append(evs, matchbox.BootEvent{MachineID: "m1", Type: typ, At: t0.Add(time.Duration(i) * time.Minute)})
	}
	if err := s.store.AppendEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{"dhcp.discover", "dhcp.ack", "tftp.get", "http.ipxe", "dhcp.ack"}},
		{"?type=dhcp.", []string{"dhcp.discover", "dhcp.ack", "dhcp.ack"}},
		{"?type=dhcp.ack", []string{"dhcp.ack", "dhcp.ack"}},
		{"?since=2030-01-02T03:06:05Z", []string{"tftp.get", "http.ipxe", "dhcp.ack"}},
	}
	for _, tt := range tests {
		var got []string
		q := tt.query
		for pages := 0; pages < 10; pages++ {
			var el wire.EventList
			sep := "?"
			if q != "" {
				sep = "&"
			}
			s.must(t, http.StatusOK, "GET", "/api/v1/machines/m1/events"+q+sep+"limit=2", "").decode(t, &el)
			for _, ev := range el.Events {
				got = append(got, ev.Type)
			}
			if el.Next == 0 {
				break
			}
			q = tt.query + sep + "after=" + itoa(el.Next)
			if tt.query == "" {
				q = "?after=" + itoa(el.Next)
			}
		}
		if !equalLines(got, tt.want) {
			t.Errorf("events%s: %v, want %v", tt.query, got, tt.want)
		}
	}
	s.must(t, 204, "DELETE", "/api/v1/machines/m1", "")
	s.must(t, 404, "GET", "/api/v1/machines/m1/events", "")
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
