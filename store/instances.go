package store

import "time"

// Instance is a running `matchbox serve` as it announces itself to the
// others sharing its store.
type Instance struct {
	// ID names the instance (host name and a random suffix).
	ID string `json:"id"`
	// Addresses are the listeners' addresses (http, api).
	Addresses []string `json:"addresses"`
	// Version is the instance's matchbox version.
	Version string `json:"version"`
	// DHCPRanges are the address ranges its DHCP server hands out.
	DHCPRanges []string `json:"dhcp_ranges,omitempty"`
	// StartedAt is when it registered.
	StartedAt time.Time `json:"started_at"`
}
