// Package e2elibvirt is matchbox's end-to-end harness: virtual machines
// with real firmware (SeaBIOS and OVMF with their iPXE ROMs, or OVMF's own
// PXE) network-boot from a real `matchbox serve` (DHCP, TFTP, HTTP) on an
// isolated L2 segment the test owns: a network namespace with a bridge and a
// tap device per VM. Each VM has a BMC (OpenIPMI's ipmi_sim) whose chassis
// control starts, stops and sets the boot device of that VM.
//
// A lab's segment (bridge, subnet, server address, DHCP range) and a
// server's store are parameters: most scenarios run one lab on the default
// segment with a SQLite database, and TestEtcdTwoInstances runs two labs,
// each with its own segment, VM and `matchbox serve --store etcd://...`,
// sharing a real 3-member etcd cluster in a namespace of its own (a
// backbone bridge that both labs join): both VMs boot at once, then each
// one's timeline and lease must read the same from the other instance
// (and the lease from etcd), and `matchbox get instances` on each must
// list both. It needs etcd and etcdctl (Debian etcd-server, etcd-client).
//
// The tests run as root with the Debian packages listed in apt-packages
// installed (`make e2e`); otherwise they skip with the reason. VMs boot in
// parallel subtests: go test's -parallel (GOMAXPROCS, 2 here) bounds how
// many run at once. Environment:
//
//	E2E_DRIVER     libvirt or qemu (default: libvirt when libvirtd starts, else qemu);
//	               the test flag -driver (make e2e DRIVER=qemu) wins over it
//	E2E_CACHE_DIR  where the test OS and downloaded packages are kept between runs
//	               (default ~/.cache/matchbox-e2e)
//	E2E_OUT_DIR    where serial and server logs of failed runs are kept
//	               (default e2e-libvirt/out)
//	E2E_KEEP       keep the logs of passing runs too (any non-empty value)
//	E2E_PCAP       record each lab bridge's traffic in lab.pcap (tcpdump; any non-empty value)
//	E2E_MATCHBOX   a prebuilt matchbox binary to test instead of building cmd/matchbox
//
// The test OS is built by os-assets/build-testos; its first-boot helper is
// cmd/testos-ignite in this folder.
package e2elibvirt
