#!/usr/bin/python3
"""Helpers of tools/lab-nodes (the multi-node lab).

  lab-nodes.py mirror            in the router's namespace: keeps, for every
                                 route BIRD writes into table 200 (one next hop
                                 per node announcing it), a resilient nexthop
                                 group and a route to the VIP in the main table
                                 through it
  lab-nodes.py routes            in the router's namespace: VIP -> nodes, as the
                                 main table forwards it (JSON with --json)
  lab-nodes.py survey [A-B]      each client's :80 and :443 (one new connection
                                 each): the real that answered and the node whose
                                 flow table holds the connection (JSON)
  lab-nodes.py flows             every node's flows from the clients (JSON)
  lab-nodes.py capture-sync NODE [SECONDS]
                                 in NODE's namespace: the first record sync
                                 datagram with records that a peer sends it, as
                                 {"from": NODE, "hex": PAYLOAD} (exit 1: none)
  lab-nodes.py send-sync FROM TO HEX
                                 in FROM's namespace: one UDP datagram with that
                                 payload to TO's sync port (replays, forgeries)

Why the mirror: BIRD 2.0 writes a multipath route with its next hops inline;
Linux hashes such a route modulo the number of next hops, so when one node
goes about a quarter of the flows of the surviving nodes move too (to a
node that never saw them). A resilient group keeps its hash buckets: when a
member goes, only its buckets are handed out, and a member that comes back
gets buckets only once they have been idle (idle_timer).
"""
import json
import os
import select
import subprocess
import sys
import time

STATE = "/run/tandem-lab-nodes"
NODES = {"198.18.0.11": "lb1", "198.18.0.12": "lb2", "198.18.0.13": "lb3",
         "2001:db8::11": "lb1", "2001:db8::12": "lb2", "2001:db8::13": "lb3"}
LEARNED = "200"
BUCKETS = "64"
IDLE_TIMER = "30"
GROUP_BASE = 1000
# TANDEM_LAB_PLAIN_ECMP=1: plain multipath routes instead (to compare)
PLAIN = os.environ.get("TANDEM_LAB_PLAIN_ECMP") == "1"


def ip(*args, check=True):
    result = subprocess.run(["ip"] + list(args), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(args), result.stderr.strip()))
    return result.stdout


def routes_of(family, *table):
    # (a table BIRD has not written yet does not exist: no routes)
    text = ip("-j", family, "route", "show", *table, check=False)
    try:
        return json.loads(text or "[]")
    except ValueError:
        return []


def learned():
    """prefix -> (family, sorted gateways) from BIRD's table."""
    out = {}
    for family in ("-4", "-6"):
        for route in routes_of(family, "table", LEARNED):
            hops = route.get("nexthops") or [route]
            gateways = sorted({(h["gateway"], h["dev"]) for h in hops if "gateway" in h})
            if gateways:
                prefix = route["dst"] if "/" in route["dst"] else route["dst"] + ("/32" if family == "-4" else "/128")
                out[prefix] = (family, gateways)
    return out


class Mirror:
    def __init__(self):
        self.hops = {}    # (gateway, dev) -> nexthop id
        self.groups = {}  # prefix -> (group id, gateways)
        ip("nexthop", "flush", check=False)

    def hop(self, gateway, dev):
        key = (gateway, dev)
        if key not in self.hops:
            self.hops[key] = len(self.hops) + 1
            ip("nexthop", "replace", "id", str(self.hops[key]), "via", gateway, "dev", dev)
        return self.hops[key]

    def sync(self):
        wanted = learned()
        for prefix, (family, gateways) in wanted.items():
            group, had = self.groups.get(prefix, (None, None))
            if had == gateways:
                continue
            if group is None:
                group = GROUP_BASE + len(self.groups) + 1
                while any(g == group for g, _ in self.groups.values()):
                    group += 1
            if PLAIN:
                # for comparison: the next hops inline, as BIRD writes them
                hops = [w for g, d in gateways for w in ("nexthop", "via", g, "dev", d)]
                ip(family, "route", "replace", prefix, *hops)
                self.groups[prefix] = (group, gateways)
                log("%s via %s" % (prefix, " ".join(NODES.get(g, g) for g, _ in gateways)))
                continue
            members = "/".join(str(self.hop(g, d)) for g, d in gateways)
            # replace keeps the buckets of members that stay
            ip("nexthop", "replace", "id", str(group), "group", members, "type", "resilient",
               "buckets", BUCKETS, "idle_timer", IDLE_TIMER)
            if had is None:
                ip(family, "route", "replace", prefix, "nhid", str(group))
            self.groups[prefix] = (group, gateways)
            log("%s via %s" % (prefix, " ".join(NODES.get(g, g) for g, _ in gateways)))
        for prefix in [p for p in self.groups if p not in wanted]:
            group, _ = self.groups.pop(prefix)
            ip("route", "del", prefix, check=False)
            ip("nexthop", "del", "id", str(group), check=False)
            log("%s withdrawn by every node" % prefix)


def log(text):
    print("%.3f %s" % (time.time(), text), flush=True)


def mirror():
    # Descriptors inherited from whoever started the lab (the lab's lock, a
    # test runner's pipe) would stay held for as long as the mirror runs.
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    state = Mirror()
    monitor = subprocess.Popen(["ip", "monitor", "route"], stdout=subprocess.PIPE, text=True, bufsize=1)
    state.sync()
    while True:
        ready, _, _ = select.select([monitor.stdout], [], [], 1.0)
        if ready:
            if not monitor.stdout.readline():
                raise SystemExit("ip monitor ended")
            # a change comes as a burst of lines: take them all, then sync once
            while select.select([monitor.stdout], [], [], 0.005)[0]:
                if not monitor.stdout.readline():
                    break
        state.sync()


def routes():
    """VIP -> nodes of the main table's route (its nexthop group's members)."""
    groups = {n["id"]: n for n in json.loads(ip("-j", "nexthop", "show") or "[]")}
    out = {}
    for family in ("-4", "-6"):
        for route in routes_of(family):
            if "nexthops" in route or "gateway" in route:
                out[route["dst"]] = sorted(NODES.get(h.get("gateway"), "?") for h in route.get("nexthops", [route]))
            if "nhid" not in route:
                continue
            members = groups.get(route["nhid"], {}).get("group", [{"id": route["nhid"]}])
            out[route["dst"]] = sorted(NODES.get(groups.get(m["id"], {}).get("gateway"), "?") for m in members)
    return out


def flows():
    """Every node's flow-table entries: [{node, client, sport, dport}]."""
    out = []
    for node in ("lb1", "lb2", "lb3"):
        pin = "/sys/fs/bpf/tdm-n-%s/flows" % node
        if not os.path.exists(pin):
            continue
        result = subprocess.run(["bpftool", "-j", "map", "dump", "pinned", pin], capture_output=True, text=True)
        if result.returncode != 0:
            continue
        for entry in json.loads(result.stdout or "[]"):
            key = entry.get("formatted", entry).get("key")
            if not isinstance(key, dict):
                continue
            out.append({"node": node, "client": address(key["src"], key["af"]),
                        "sport": key["sport"], "dport": key["dport"]})
    return out


def address(raw, af):
    data = bytes(int(b, 16) if isinstance(b, str) else b for b in raw)
    if af == 4 or af == 2:
        return ".".join(str(b) for b in data[:4])
    import ipaddress
    return str(ipaddress.IPv6Address(data))


def next_ports(count):
    """Source ports never used before in this lab: a connection's 5-tuple
    names one flow-table entry, not an older one of the same client."""
    path = os.path.join(STATE, "next-port")
    try:
        first = int(open(path).read())
    except (OSError, ValueError):
        first = 20000
    if first + count > 60000:
        first = 20000
    with open(path, "w") as f:
        f.write(str(first + count))
    return list(range(first, first + count))


def curl(url, source, port):
    result = subprocess.run(
        ["nsenter", "--net=/run/netns/tdm-n-c", "curl", "-sk", "-m", "3", "--interface", source,
         "--local-port", str(port), url], capture_output=True, text=True)
    text = result.stdout.strip()
    return text if text in ("r1", "r2", "r3") else None


def survey(first, last):
    ports = iter(next_ports(2 * (last - first + 1)))
    asked = []
    for i in range(first, last + 1):
        source = "198.18.10.%d" % i
        p80, p443 = next(ports), next(ports)
        asked.append((i, source, p80, curl("http://198.18.0.100/", source, p80),
                      p443, curl("https://198.18.0.100/", source, p443)))
    where = {(f["client"], f["sport"]): f["node"] for f in flows()}
    return [{"client": i, "address": source,
             "http": {"real": a, "node": where.get((source, p80)), "port": p80},
             "https": {"real": b, "node": where.get((source, p443)), "port": p443}}
            for i, source, p80, a, p443, b in asked]


SYNC_PORT = 7946


def capture_sync(node, seconds):
    """What a peer sent `node`, read off the wire (AF_PACKET, after XDP)."""
    import socket
    import struct
    own = next(a for a, n in NODES.items() if n == node and "." in a)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
    sock.bind(("eth0", 0x0800))
    deadline = time.time() + seconds
    while time.time() < deadline:
        sock.settimeout(max(deadline - time.time(), 0.01))
        try:
            packet, where = sock.recvfrom(65535)
        except socket.timeout:
            break
        if where[2] == socket.PACKET_OUTGOING or len(packet) < 28 or packet[9] != 17:
            continue
        source = socket.inet_ntoa(packet[12:16])
        if socket.inet_ntoa(packet[16:20]) != own or source not in NODES:
            continue
        header = (packet[0] & 0x0F) * 4
        if struct.unpack("!H", packet[header + 2:header + 4])[0] != SYNC_PORT:
            continue
        payload = packet[header + 8:]
        # "TDSY", version 1, kind 1 (records), a record count above 0
        if payload[:4] == b"TDSY" and payload[5] == 1 and struct.unpack("!H", payload[36:38])[0] > 0:
            return {"from": NODES[source], "hex": payload.hex()}
    return None


def send_sync(to, payload):
    import socket
    target = next(a for a, n in NODES.items() if n == to and "." in a)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.sendto(payload, (target, SYNC_PORT))


def main():
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "mirror":
        mirror()
    elif command == "routes":
        table = routes()
        if "--json" in sys.argv:
            print(json.dumps(table))
        else:
            for vip, nodes in sorted(table.items()):
                print("%s via %s" % (vip, " ".join(nodes)))
            if not table:
                print("no VIP is routed (no node announces one)")
    elif command == "survey":
        span = sys.argv[2] if len(sys.argv) > 2 else "1-40"
        first, _, last = span.partition("-")
        print(json.dumps(survey(int(first), int(last or first))))
    elif command == "flows":
        print(json.dumps(flows()))
    elif command == "capture-sync":
        found = capture_sync(sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 5)
        if not found:
            sys.exit(1)
        print(json.dumps(found))
    elif command == "send-sync":
        send_sync(sys.argv[3], bytes.fromhex(sys.argv[4]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
