package collect

import (
	"strings"

	"matchbox/hardware"
)

func (r reader) nics() []hardware.NIC {
	nics := []hardware.NIC{}
	for _, name := range r.dirNames("sys/class/net") {
		base := "sys/class/net/" + name + "/"
		// Virtual interfaces (bridges, bonds, veth, tun, vlan) have no
		// device link.
		if name == "lo" || !r.exists(base+"device") {
			continue
		}
		n := hardware.NIC{
			Name:   name,
			MAC:    strings.ToLower(r.str(base + "address")),
			Driver: r.linkBase(base + "device/driver"),
		}
		// speed is -1 or unreadable (EINVAL) while the link is down.
		if s, ok := r.int(base + "speed"); ok && s > 0 {
			n.SpeedMbps = int(s)
		}
		switch r.str(base + "carrier") {
		case "1":
			n.Link = true
		case "0":
			n.Link = false
		default:
			n.Link = r.str(base+"operstate") == "up"
		}
		nics = append(nics, n)
	}
	return nics
}
