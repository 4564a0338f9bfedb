#!/usr/bin/env python3
"""Per-boot stage timeline of a lab capture (E2E_PCAP=1's lab.pcap).

    python3 e2e-libvirt/pcap-stages.py OUT/TestBootComparison/lab.pcap [go-test-v.log]

Prints, per VM MAC (52:54:...), every boot's DHCP (client messages with
secs, xid, vendor class; server replies with siaddr, file and option
codes), ARP, ICMPv6, TFTP (RRQ, OACK, errors, blocks sent) and HTTP
(requests, response headers, FINs), in seconds from the boot's first packet;
then a summary line per boot: the side (matchbox answers /ignition?mac=,
the stand-in /ignition/MAC.json), the secs field of the first DISCOVER seen,
pre = power-on asked (from the test log's "power-on asked at") to that
DISCOVER, and when TFTP, iPXE's DHCP, /boot.ipxe, kernel, initrd (request
and end), the OS's DHCP and its config request began. A boot ends at its
done request. Standard library only."""
import struct, sys, collections, time

def read(path):
    f = open(path, 'rb')
    gh = f.read(24)
    magic = struct.unpack('<I', gh[:4])[0]
    e = '<' if magic in (0xa1b2c3d4, 0xa1b23c4d) else '>'
    nano = magic in (0xa1b23c4d, 0x4d3cb2a1)
    while True:
        h = f.read(16)
        if len(h) < 16: return
        s, us, incl, orig = struct.unpack(e + 'IIII', h)
        d = f.read(incl)
        yield s + us / (1e9 if nano else 1e6), d

def mac(b): return ':'.join('%02x' % x for x in b)
DHCPT = {1:'DISCOVER',2:'OFFER',3:'REQUEST',4:'DECLINE',5:'ACK',6:'NAK',7:'RELEASE',8:'INFORM'}

def dhcp_opts(p):
    o = {}; i = 240
    while i < len(p):
        c = p[i]
        if c == 0: i += 1; continue
        if c == 255 or i + 1 >= len(p): break
        l = p[i+1]; o[c] = p[i+2:i+2+l]; i += 2 + l
    return o

events = collections.defaultdict(list)  # mac -> [(t, text)]
ip2mac = {}
tftp = {}  # (client ip, port) -> mac
for t, d in read(sys.argv[1]):
    if len(d) < 14: continue
    dst, src = d[0:6], d[6:12]
    et = struct.unpack('>H', d[12:14])[0]
    p = d[14:]
    if et == 0x0806:
        op = struct.unpack('>H', p[6:8])[0]
        sm = mac(p[8:14]); sip = '.'.join(map(str, p[14:18])); tip = '.'.join(map(str, p[24:28]))
        if op == 1: events[sm].append((t, 'ARP who-has %s (from %s)' % (tip, sip)))
        continue
    if et == 0x86dd:
        nh = p[6]
        if nh == 58 and len(p) > 40:
            ty = p[40]
            nm = {133:'RS',134:'RA',135:'NS',136:'NA'}.get(ty, str(ty))
            if mac(src).startswith('52:54'): events[mac(src)].append((t, 'ICMPv6 %s from client' % nm))
        elif nh == 17 and mac(src).startswith('52:54'):
            sp, dp = struct.unpack('>HH', p[40:44]); events[mac(src)].append((t, 'UDPv6 %d->%d' % (sp, dp)))
        continue
    if et != 0x0800: continue
    ihl = (p[0] & 15) * 4; proto = p[9]
    sip = '.'.join(map(str, p[12:16])); dip = '.'.join(map(str, p[16:20]))
    l4 = p[ihl:]
    if mac(src).startswith('52:54') and sip != '0.0.0.0': ip2mac[sip] = mac(src)
    if proto == 17:
        sp, dp, ln = struct.unpack('>HHH', l4[:6]); u = l4[8:]
        if sp in (67, 68) and dp in (67, 68) and len(u) > 240:
            ch = mac(u[28:34]); o = dhcp_opts(u)
            ty = DHCPT.get(o.get(53, b'\0')[0], '?')
            extra = ''
            if 60 in o: extra += ' vc=' + o[60][:9].decode(errors='replace')
            if 77 in o: extra += ' uc=' + o[77].decode(errors='replace')
            if dp == 68 or sp == 67:
                extra += ' yiaddr=%s siaddr=%s file=%s' % ('.'.join(map(str, u[16:20])), '.'.join(map(str, u[20:24])), u[108:236].split(b'\0')[0].decode(errors='replace'))
                extra += ' opts=' + ','.join(str(k) for k in sorted(o))
            else:
                extra += ' secs=%d xid=%s' % (struct.unpack('>H', u[8:10])[0], u[4:8].hex())
                if 50 in o: extra += ' req=' + '.'.join(map(str, o[50]))
                if 54 in o: extra += ' sid=' + '.'.join(map(str, o[54]))
            events[ch].append((t, 'DHCP %s%s' % (ty, extra)))
        elif dp == 69 and len(u) > 2 and u[1] == 1:
            parts = u[2:].split(b'\0')
            events[mac(src)].append((t, 'TFTP RRQ ' + ' '.join(x.decode(errors='replace') for x in parts if x)))
            tftp[(sip, sp)] = [mac(src), 0, 0, t]
        elif (dip, dp) in tftp and len(u) >= 4:  # server -> client
            st = tftp[(dip, dp)]
            op = u[1]
            if op == 3: st[1] += 1; st[2] += len(u) - 4; st[4:] = [t]
            elif op == 6: events[st[0]].append((t, 'TFTP OACK ' + ' '.join(x.decode(errors='replace') for x in u[2:].split(b'\0') if x)))
            elif op == 5: events[st[0]].append((t, 'TFTP ERROR %s' % u[4:].split(b'\0')[0].decode(errors='replace')))
    elif proto == 6:
        sp, dp = struct.unpack('>HH', l4[:4]); off = (l4[12] >> 4) * 4; flags = l4[13]; pl = l4[off:]
        if flags & 2 and not flags & 16 and mac(src).startswith('52:54'):
            events[mac(src)].append((t, 'TCP SYN :%d->%d' % (sp, dp)))
        if pl[:4] in (b'GET ', b'HEAD', b'POST'):
            events[mac(src)].append((t, 'HTTP ' + pl.split(b'\r\n')[0].decode(errors='replace')[:120] + ' (port %d)' % sp))
        elif pl[:5] == b'HTTP/':
            m = ip2mac.get(dip, dip)
            hdr = pl.split(b'\r\n\r\n')[0].split(b'\r\n')
            cl = [h for h in hdr if h.lower().startswith(b'content-length') or h.lower().startswith(b'connection')]
            events[m].append((t, 'HTTP <- ' + hdr[0].decode(errors='replace') + ' ' + b' '.join(cl).decode(errors='replace') + ' (port %d)' % dp))
        elif flags & 1 and mac(src).startswith('52:54'):
            events[mac(src)].append((t, 'TCP FIN from client :%d' % sp))
for k, st in tftp.items():
    events[st[0]].append((st[4] if len(st) > 4 else st[3], 'TFTP last DATA: %d blocks %d bytes' % (st[1], st[2])))

for m in sorted(events):
    if not m.startswith('52:54'): continue
    ev = sorted(events[m])
    print('=== ', m)
    t0 = None; done = True
    for t, s in ev:
        if done and (s.startswith('DHCP') or s.startswith('ICMPv6') or s.startswith('ARP')):
            t0 = t; done = False; print('--- boot at %.3f' % t)
        if t0 is None: t0 = t
        if 'step=done' in s or 'GET /done.txt' in s: done = True
        print('%8.3f  %s' % (t - t0, s))

# ---- per-boot stage summary
import re, calendar
POWERON = {}
if len(sys.argv) > 2:
    day = time.strftime('%Y-%m-%d', time.gmtime(min(t for v in events.values() for t, _ in v)))
    for l in open(sys.argv[2]):
        mm = re.search(r'VM (bios-e1000|uefi-virtio-pxe) .*power-on asked at (\d+):(\d+):(\d+\.\d+)', l)
        if mm:
            y, mo, d = map(int, day.split('-'))
            t = calendar.timegm((y, mo, d, int(mm.group(2)), int(mm.group(3)), 0)) + float(mm.group(4))
            POWERON.setdefault('00' if mm.group(1) == 'bios-e1000' else '01', []).append(t)
    for k in POWERON: POWERON[k] = sorted(set(POWERON[k]))
print('\nSUMMARY (s from first DHCP packet seen of the boot)')
for m in sorted(events):
    if not m.startswith('52:54'): continue
    ev = sorted(events[m]); boots = []; done = True
    for t, s in ev:
        if done and (s.startswith('DHCP') or s.startswith('ICMPv6') or s.startswith('ARP')): boots.append([]); done = False
        if not boots: boots.append([])
        boots[-1].append((t, s))
        if 'step=done' in s or 'GET /done.txt' in s: done = True
    for b in boots:
        t0 = b[0][0]; st = {}
        def first(key, pred):
            for t, s in b:
                if pred(s) and key not in st: st[key] = t - t0
        side = 'matchbox' if any('GET /ignition?' in s for t, s in b) else ('stand-in' if any('GET /ignition/' in s for t, s in b) else '?')
        discovers = [s for t, s in b if s.startswith('DHCP DISCOVER')]
        if not discovers:  # a VM's last packets after its done request
            continue
        secs = discovers[0].split('secs=')[1].split()[0]
        first('tftp', lambda s: s.startswith('TFTP RRQ'))
        first('bootipxe', lambda s: 'GET /boot.ipxe' in s)
        first('kernel', lambda s: 'GET /assets/testos/vmlinuz' in s)
        first('initrd', lambda s: 'GET /assets/testos/initramfs' in s)
        first('config', lambda s: 'GET /ignition' in s)
        # OS DHCP: the DISCOVER after initrd
        if 'initrd' in st:
            for t, s in b:
                if t - t0 > st['initrd'] + 1 and s.startswith('DHCP DISCOVER') and 'os_dhcp' not in st: st['os_dhcp'] = t - t0
            # end of initrd: last FIN/packet before os dhcp
            ends = [t - t0 for t, s in b if t - t0 >= st['initrd'] and t - t0 < st.get('os_dhcp', 1e9) and (s.startswith('TCP FIN') or s.startswith('HTTP'))]
            st['initrd_end'] = max(ends)
        ipxe_d = [t - t0 for t, s in b if s.startswith('DHCP DISCOVER') and 'vc=' in s and (t - t0) > st.get('tftp', -1) and (t - t0) < st.get('bootipxe', 1e9)]
        if ipxe_d: st['ipxe_dhcp'] = ipxe_d[0]
        po = [p for p in POWERON.get(m[-2:], []) if p < t0]
        pre = ' pre=%.2f' % (t0 - po[-1]) if po else ''
        print('%s %s %-8s secs=%s%s ' % (m[-2:], time.strftime('%H:%M:%S', time.gmtime(t0)), side, secs, pre) + ' '.join('%s=%.2f' % (k, st[k]) for k in ['tftp', 'ipxe_dhcp', 'bootipxe', 'kernel', 'initrd', 'initrd_end', 'os_dhcp', 'config'] if k in st))
