package api

import (
	"net/http"
	"net/netip"
	"slices"
	"time"

	"matchbox/api/wire"
	"matchbox/dhcp"
	"matchbox/matchbox"
)

// listLeases answers GET /api/v1/leases: the stored DHCP leases (bound,
// released, declined; offers live in memory only), ordered by address,
// filtered by mac, ip and state, paged by limit and after (an address).
func (a *API) listLeases(w http.ResponseWriter, r *http.Request) error {
	if a.cfg.Leases == nil {
		return errorf(http.StatusNotImplemented, CodeNotConfigured, "", "this server keeps no DHCP leases")
	}
	limit, afterText, err := page(r, 500, 1000)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	var after, ip netip.Addr
	if afterText != "" {
		if after, err = netip.ParseAddr(afterText); err != nil {
			return errorf(http.StatusBadRequest, CodeBadRequest, "after", "after %q: want an IPv4 address", afterText)
		}
	}
	if s := q.Get("ip"); s != "" {
		if ip, err = netip.ParseAddr(s); err != nil {
			return errorf(http.StatusBadRequest, CodeBadRequest, "ip", "ip %q: want an IPv4 address", s)
		}
	}
	mac := q.Get("mac")
	if mac != "" {
		if mac, err = matchbox.NormalizeMAC(mac); err != nil {
			return errorf(http.StatusBadRequest, CodeBadRequest, "mac", "mac: %v", err)
		}
	}
	state := dhcp.LeaseState(q.Get("state"))
	switch state {
	case "", dhcp.LeaseBound, dhcp.LeaseReleased, dhcp.LeaseDeclined:
	default:
		return errorf(http.StatusBadRequest, CodeBadRequest, "state", "state %q: want bound, released or declined", state)
	}
	leases, err := a.cfg.Leases.LoadLeases(r.Context())
	if err != nil {
		return err
	}
	slices.SortFunc(leases, func(x, y dhcp.Lease) int { return x.IP.Compare(y.IP) })
	out := wire.List{Items: []wire.Item{}}
	for _, l := range leases {
		if (after.IsValid() && l.IP.Compare(after) <= 0) || (ip.IsValid() && l.IP != ip) ||
			(mac != "" && l.MAC != mac) || (state != "" && l.State != state) {
			continue
		}
		if len(out.Items) == limit {
			out.Next = out.Items[limit-1].ID
			break
		}
		out.Items = append(out.Items, wire.Item{ID: l.IP.String(), Lease: &wire.Lease{
			IP: l.IP.String(), MAC: l.MAC, Hostname: l.Hostname, Expires: l.Expires.UTC().Format(time.RFC3339), State: string(l.State),
		}})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
