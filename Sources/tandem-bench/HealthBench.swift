import Dataplane
import Foundation
import Glibc
import Health
import Logging
import Model
import NIOPosix
import TestSupport

/// Health checks of many reals every second: Tandem's checker beside
/// HAProxy's (`check inter 1s`), both against the same targets, one after
/// the other in the same run.
///
/// Targets: `count` addresses of 198.18.0.0/16, one per real, all local to a
/// server namespace (`<netns>-s`, one `local` route on its loopback) that
/// the checker's namespace (`<netns>-c`) reaches over a veth. One nginx
/// process (one worker, no master) answers :80 for all of them; the last
/// `victims` reals use :81, served by a small Python server that the
/// detection row kills.
///
/// Accounting: each checker's figure is its process's user + system time
/// (getrusage for Tandem, /proc/PID/stat for HAProxy) plus its host's
/// receive path: both veth ends run their receive in a NAPI thread of their
/// own (GRO on, `threaded`), so what arrives at the checker's namespace
/// (SYN-ACKs, resets sent back, responses) runs in the client end's thread,
/// counted to the checker, and what arrives at the reals (the kernel's half
/// of their TCP handshake, requests) runs in the server end's thread,
/// counted to the server with nginx, and shown apart. Without that the veth
/// hands each packet to the other namespace in the sender's softirq, and the
/// reals' kernel work would be charged to whichever checker sent it.
///
/// Rounds: the machine's speed drifts over minutes (HAProxy's own figure
/// moved by a fifth between runs here), so HAProxy and Tandem alternate,
/// `rounds` times, and each row is the median of its rounds, all of them
/// listed.
struct HealthBench {
    let count: Int
    let seconds: Int
    let rounds: Int
    let netns: String
    let victims: Int
    let work = "/run/tandem-bench-health"

    var client: String { netns + "-c" }
    var server: String { netns + "-s" }

    init(count: Int, seconds: Int, rounds: Int, netns: String) {
        self.count = count
        self.seconds = seconds
        self.rounds = rounds
        self.netns = netns
        victims = max(1, count / 100)
    }

    struct Usage {
        var user = 0.0, system = 0.0
        var total: Double { user + system }
        static func - (a: Usage, b: Usage) -> Usage { Usage(user: a.user - b.user, system: a.system - b.system) }
    }

    static let intervalNs: UInt64 = 1_000_000_000
    static let timeoutNs: UInt64 = 900_000_000
    static let fall = 3

    func measure(into table: inout ResultTable) async throws {
        for tool in ["/usr/sbin/haproxy", "/usr/sbin/nginx"] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw DataplaneError(description: "health rows need \(tool) (tools/bench installs haproxy and nginx-light)")
        }
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        try await setUp()
        try await withCleanup {
            try nginxConfig.write(toFile: work + "/nginx.conf", atomically: true, encoding: .utf8)
            let nginx = try await BackgroundProcess.start(
                "/usr/sbin/ip", ["netns", "exec", server, "/usr/sbin/nginx", "-c", work + "/nginx.conf"],
                log: work + "/nginx.out")
            var spare = try await startVictims()
            try await withCleanup {
                try await Task.sleep(for: .milliseconds(500))
                let version = await ConnectionBench.haproxyVersion()
                for kind in [HealthCheck.Kind.tcp, .http(HTTPOptions(path: "/health"))] {
                    let name = "health: \(kind.name) checks of \(count) reals at 1 s"
                    let variants: [Bool] = kind == .tcp ? [true] : [true, false]
                    var h: [Result] = []
                    var t = [[Result]](repeating: [], count: variants.count)
                    var detection: (value: String, method: String)?
                    // http on kept connections: the bare loop's rounds, the
                    // kernel's share alone (`BareLoop`).
                    var bare: [Result] = []
                    for round in 0..<rounds {
                        let floor = try await idleFloor(servers: [nginx.pid, spare.pid])
                        h.append(try await haproxy(kind, servers: [nginx.pid, spare.pid], floor: floor.machine))
                        for (i, keepAlive) in variants.enumerated() {
                            var k = kind
                            if case .http(var o) = kind {
                                o.keepAlive = keepAlive
                                k = .http(o)
                            }
                            // Failure detection: once, in the first round.
                            let detect = keepAlive && round == 0
                            let r = try await tandem(
                                k, servers: [nginx.pid, spare.pid], floor: floor, victimServer: detect ? spare : nil)
                            if detect { spare = try await startVictims() }
                            if let d = r.detection { detection = d }
                            t[i].append(r)
                            if keepAlive && kind != .tcp {
                                bare.append(try await bareLoop(servers: [nginx.pid, spare.pid], floor: floor))
                            }
                        }
                    }
                    let baseline = Self.median(h)
                    table.add(
                        count: "\(name): HAProxy \(version)", value: baseline.share, unit: "% of a core",
                        baseline: nil, method: Self.rounds(h, median: baseline))
                    for (i, keepAlive) in variants.enumerated() {
                        let label = kind == .tcp ? "Tandem" : "Tandem, keep-alive \(keepAlive ? "on" : "off")"
                        let m = Self.median(t[i])
                        table.add(
                            count: "\(name): \(label)", value: m.share, unit: "% of a core",
                            baseline: baseline.share, method: Self.rounds(t[i], median: m) + "; baseline HAProxy")
                        if keepAlive && !bare.isEmpty {
                            // The same checks with nothing but their system
                            // calls: Tandem's keep-alive row over the kernel's
                            // share of it.
                            let b = Self.median(bare)
                            table.add(
                                count: "\(name): bare loop, keep-alive on (one send and one recv a check)",
                                value: b.share, unit: "% of a core", baseline: nil,
                                method: Self.rounds(bare, median: b))
                            table.add(
                                count: "\(name): Tandem, keep-alive on, beside the bare loop", value: m.share,
                                unit: "% of a core", baseline: b.share,
                                method: "the two rows above, medians of the same rounds; baseline the bare loop")
                        }
                    }
                    if let detection {
                        table.add(
                            "health: \(kind.name): failure detected at \(count) reals", value: detection.value,
                            method: detection.method)
                    }
                }
            } cleanup: {
                await spare.stop(signal: SIGKILL)
                await nginx.stop()
            }
        } cleanup: {
            await tearDown()
        }
    }

    // MARK: Targets

    func target(_ i: Int) -> (address: IPAddress, port: UInt16) {
        (IPAddress(bytes: [198, 18, UInt8(i / 250), UInt8(i % 250 + 1)])!, i >= count - victims ? 81 : 80)
    }

    func ip(_ arguments: [String]) async throws {
        try await Command.output("/usr/sbin/ip", arguments)
    }

    func setUp() async throws {
        await tearDown()
        try await ip(["netns", "add", client])
        try await ip(["netns", "add", server])
        try await ip(["link", "add", "hc0", "netns", client, "type", "veth", "peer", "name", "hc1", "netns", server])
        try await ip(["-n", client, "addr", "add", "198.19.254.1/30", "dev", "hc0"])
        try await ip(["-n", server, "addr", "add", "198.19.254.2/30", "dev", "hc1"])
        for (ns, dev) in [(client, "hc0"), (server, "hc1")] {
            try await ip(["-n", ns, "link", "set", "lo", "up"])
            // Receive in a NAPI thread of the device's own (see the accounting
            // above): the veth uses its NAPI with GRO on, for packets from a
            // peer without TSO (health checks send no large segments).
            try await ip(["netns", "exec", ns, "/usr/sbin/ethtool", "-K", dev, "gro", "on", "tso", "off"])
            try await ip(["-n", ns, "link", "set", dev, "up"])
            try await ip(["netns", "exec", ns, "sh", "-c", "echo 1 > /sys/class/net/\(dev)/threaded"])
            // A queue in front of the veth: when the peer's receive ring
            // (256 packets) is full, the sender waits in it instead of the
            // packet being dropped, as a NIC's queue does. Without it a
            // burst that meets a late NAPI thread loses SYNs and requests,
            // and the checks fail on the wire, not at the reals.
            try await Command.output(
                "/usr/sbin/ip",
                ["netns", "exec", ns, "/usr/sbin/tc", "qdisc", "replace", "dev", dev, "root", "pfifo", "limit", "10000"]
            )
        }
        try await ip(["-n", client, "route", "add", "198.18.0.0/16", "via", "198.19.254.2"])
        // Every address of the /16 is the server's, without 10,000 `ip addr`s.
        try await ip(["-n", server, "route", "add", "local", "198.18.0.0/16", "dev", "lo"])
        for (ns, setting) in [
            (client, "net.ipv4.ip_local_port_range=1024 65000"), (server, "net.core.somaxconn=65535"),
            (server, "net.ipv4.tcp_max_syn_backlog=65535")
        ] {
            try await ip(["netns", "exec", ns, "sysctl", "-qw", setting])
        }
    }

    func tearDown() async {
        for ns in [client, server] where FileManager.default.fileExists(atPath: "/run/netns/\(ns)") {
            _ = try? await Command.output("/usr/sbin/ip", ["netns", "del", ns])
        }
    }

    var nginxConfig: String {
        """
        worker_processes 1;
        master_process off;
        daemon off;
        pid \(work)/nginx.pid;
        error_log \(work)/nginx.log warn;
        worker_rlimit_nofile 19000;
        events { worker_connections 18000; }
        http {
            access_log off;
            keepalive_timeout 300s;
            keepalive_requests 100000000;
            server {
                listen 80 backlog=65535;
                location / { return 200 "ok\\n"; }
            }
        }
        """
    }

    /// The victims' server on :81: answers every request and keeps the
    /// connection unless the request asks to close it (HTTP/1.0 without
    /// keep-alive, or `Connection: close`), as nginx does, so the detection
    /// row sees kept connections die.
    func startVictims() async throws -> BackgroundProcess {
        let process = try await BackgroundProcess.start(
            "/usr/sbin/ip",
            [
                "netns", "exec", server, "/usr/bin/python3", "-c",
                """
                import asyncio
                async def answer(r, w):
                    try:
                        while (head := await r.readuntil(b"\\r\\n\\r\\n")).startswith(b"GET"):
                            h = head.lower()
                            close = b"connection: close" in h or (
                                h.split(b"\\r\\n", 1)[0].endswith(b"http/1.0") and b"connection: keep-alive" not in h)
                            w.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 3\\r\\n"
                                + (b"Connection: close\\r\\n\\r\\nok\\n" if close else b"\\r\\nok\\n"))
                            await w.drain()
                            if close:
                                break
                    except Exception:
                        pass
                    w.close()
                async def main():
                    s = await asyncio.start_server(answer, "0.0.0.0", 81, backlog=4096, reuse_address=True)
                    async with s:
                        await s.serve_forever()
                asyncio.run(main())
                """
            ])
        try await Task.sleep(for: .milliseconds(500))
        return process
    }

    // MARK: Tandem

    struct Result {
        /// The process and its receive thread, % of a core.
        var share: Double
        /// The whole machine beyond the server side, less `floor`: what
        /// checking costs wherever the kernel did it, % of a core.
        var whole: Double
        var method: String
        var detection: (value: String, method: String)?
        /// Checks that failed in the window (Tandem's count; HAProxy's rows
        /// have none) and packets the wire dropped in it.
        var failedChecks: UInt64? = nil
        var drops: Double = 0
    }

    func tandem(
        _ kind: HealthCheck.Kind, servers: [Int32], floor: Floor, victimServer: BackgroundProcess?
    ) async throws -> Result {
        var check = HealthCheck(kind)
        check.timing.intervalNs = Self.intervalNs
        check.timing.timeoutNs = Self.timeoutNs
        check.timing.fall = Self.fall
        let targets = (0..<count).map { i in
            let t = target(i)
            return ProbeTarget(address: t.address, port: t.port, check: check)
        }
        var logger = Logger(label: "bench")
        logger.logLevel = .warning
        // The loop's thread is started here, so it runs in the client namespace.
        let checker = try NetworkNamespace.inside(client) {
            try HealthChecker(group: MultiThreadedEventLoopGroup.singleton, logger: logger)
        }
        defer { checker.stop() }
        let downs = Downs()
        let consumer = Task {
            for await t in checker.transitions where !t.up { downs.add(monotonic()) }
        }
        defer { consumer.cancel() }
        checker.update(Dictionary(uniqueKeysWithValues: targets.map { ($0, true) }))
        try await Task.sleep(for: .seconds(2))  // the first round
        // The bench's own reading (the snapshot, the window's commands) is
        // done before its process's time starts counting.
        let failures0 = checker.snapshot().values.reduce(0) { $0 + $1.failures }
        let window = try await Window(self, servers: servers)
        let before = Self.usage(), stats0 = checker.stats()
        try await Task.sleep(for: .seconds(seconds))
        let used = Self.usage() - before, stats = checker.stats()
        let w = try await window.end()
        let end = checker.snapshot()
        let failedChecks = end.values.reduce(0) { $0 + $1.failures } - failures0
        let failed = end.compactMap { target, status -> (ProbeTarget, String)? in
            switch status.last {
            case .success: return nil
            case .failure(let why): return (target, why)
            case nil: return (target, "not checked yet")
            }
        }
        let failing = failed.count
        let done = Double(stats.checksTotal - stats0.checksTotal) / w.wall
        let halfOpen = Double(stats.halfOpenTotal - stats0.halfOpenTotal) / w.wall
        let whole = w.beyondServers / w.wall * 100 - floor.machine
        var result = Result(
            share: (used.total + w.receive) / w.wall * 100, whole: whole,
            method: String(
                format:
                    "%.0f checks/s done of %.0f scheduled over %.0f s (latest round: %.0f/s, latest check %@ late, %llu missed in all), %llu checks failed, %d reals failing at the end, %.0f packets dropped by the veth pair, %.0f half-open (SYN) checks/s, %.0f connects/s; the process (getrusage, one epoll loop): user %.1f %%, system %.1f %% (user + system with nothing checking: %.2f %%); its receive path (client veth's NAPI thread): %.1f %%; server side, not counted: kernel receive (server veth's NAPI thread) %.1f %%, nginx and the :81 server %.1f %%; softirq on all CPUs %.1f %%; the whole machine busy %.1f %% of a core, beyond the server side %.1f %% less %.1f %% with nothing checking: %.1f %%",
                done, stats.scheduledPerSecond, w.wall, stats.donePerSecond,
                DurationText.format(stats.latenessNs), stats.missedTotal, failedChecks, failing, w.drops, halfOpen,
                w.opens / w.wall,
                used.user / w.wall * 100, used.system / w.wall * 100, floor.bench, w.receive / w.wall * 100,
                w.serverReceive / w.wall * 100, w.servers / w.wall * 100, w.softirq / w.wall * 100,
                w.busy / w.wall * 100, w.beyondServers / w.wall * 100, floor.machine, whole),
            failedChecks: failedChecks, drops: w.drops)
        if !failed.isEmpty {
            // Why, the commonest reason first: a failing real in a bench is a
            // fault of the lab or of the checker, not to be passed over.
            let reasons = Dictionary(grouping: failed, by: \.1).sorted {
                ($0.value.count, $1.key) > ($1.value.count, $0.key)
            }
            let told = reasons.prefix(3).map { why, reals in
                let first = reals.map { "\($0.0.address):\($0.0.port)" }.sorted().first ?? ""
                return "\(reals.count) \"\(why)\" (e.g. \(first))"
            }
            result.method += "; failing at the end: " + told.joined(separator: ", ")
        }
        guard let victimServer else { return result }
        // Detection: the victims' server dies; each victim's down is timed.
        let killed = monotonic()
        await victimServer.stop(signal: SIGKILL)
        let bound = Double(Self.fall) * Double(Self.intervalNs) / 1e9 + 0.1
        for _ in 0..<Int(bound * 10 + 50) where downs.count < victims {
            try await Task.sleep(for: .milliseconds(100))
        }
        let times = downs.times.map { $0 - killed }.sorted()
        let worst = times.last ?? .infinity
        result.detection = (
            String(format: "%.2f s (max)", worst),
            String(
                format:
                    "%d of %d reals' server killed (SIGKILL) while all %d are checked: down after median %.2f s, max %.2f s; bound fall x interval + 100 ms = %.1f s: %@",
                times.count, victims, count, times.isEmpty ? .infinity : times[times.count / 2], worst, bound,
                times.count == victims && worst <= bound ? "met" : "MISSED")
        )
        return result
    }

    /// The kernel's share of an http check on a kept connection
    /// (`BareLoop`), measured as Tandem's checker is: this process's
    /// user + system time and the client end's receive thread.
    func bareLoop(servers: [Int32], floor: Floor) async throws -> Result {
        let loop = try NetworkNamespace.inside(client) {
            BareLoop(targets: (0..<count).map(target), intervalNs: Self.intervalNs)
        }
        defer { loop.stop() }
        try await loop.waitConnected()
        try await Task.sleep(for: .seconds(2))  // the first round
        let failed0 = loop.failed.load(ordering: .relaxed)
        let window = try await Window(self, servers: servers)
        let before = Self.usage(), answered0 = loop.answered.load(ordering: .relaxed)
        try await Task.sleep(for: .seconds(seconds))
        let used = Self.usage() - before, answered = loop.answered.load(ordering: .relaxed) - answered0
        let w = try await window.end()
        let failedChecks = loop.failed.load(ordering: .relaxed) - failed0
        let whole = w.beyondServers / w.wall * 100 - floor.machine
        return Result(
            share: (used.total + w.receive) / w.wall * 100, whole: whole,
            method: String(
                format:
                    "the same %d targets, requests and interval as Tandem's, kept connections, 4 ms turns, one send and one recv a check and nothing else; %.0f answers/s (200) over %.0f s, %llu failed, %.0f packets dropped by the veth pair; the process (getrusage): user %.1f %%, system %.1f %% (user + system with nothing checking: %.2f %%); its receive path (client veth's NAPI thread): %.1f %%; server side, not counted: kernel receive (server veth's NAPI thread) %.1f %%, nginx and the :81 server %.1f %%; softirq on all CPUs %.1f %%; the whole machine busy %.1f %% of a core, beyond the server side %.1f %% less %.1f %% with nothing checking: %.1f %%",
                count, Double(answered) / w.wall, w.wall, failedChecks, w.drops, used.user / w.wall * 100,
                used.system / w.wall * 100, floor.bench, w.receive / w.wall * 100, w.serverReceive / w.wall * 100,
                w.servers / w.wall * 100, w.softirq / w.wall * 100, w.busy / w.wall * 100,
                w.beyondServers / w.wall * 100, floor.machine, whole),
            failedChecks: failedChecks, drops: w.drops)
    }

    /// What runs with nothing checking, % of a core, measured before each
    /// round's checkers.
    struct Floor {
        /// The machine's busy time beyond the server side: this process
        /// waiting, the servers idle, the rest of the system.
        var machine: Double
        /// This process alone (getrusage): what Tandem's figure, which is
        /// this process's, holds beyond its checker.
        var bench: Double
    }

    func idleFloor(servers: [Int32]) async throws -> Floor {
        try await Task.sleep(for: .seconds(1))  // the last checker's sockets closed
        let window = try await Window(self, servers: servers)
        let before = Self.usage()
        try await Task.sleep(for: .seconds(seconds))
        let used = Self.usage() - before
        let w = try await window.end()
        return Floor(machine: w.beyondServers / w.wall * 100, bench: used.total / w.wall * 100)
    }

    /// The round with the median share.
    static func median(_ results: [Result]) -> Result {
        results.sorted { $0.share < $1.share }[results.count / 2]
    }

    /// "median of 3 rounds (9.8, 10.1, 10.6 %, in order; whole machine
    /// beyond the server side: median 11.0 % (10.9, 11.0, 11.8 %); in
    /// order, checks failed 0, 0, 0; packets dropped by the veth pair 0, 0,
    /// 0); that round: ..."
    static func rounds(_ results: [Result], median: Result) -> String {
        guard results.count > 1 else {
            return String(format: "whole machine beyond the server side %.1f %%; ", median.whole) + median.method
        }
        let whole = results.map(\.whole).sorted()[results.count / 2]
        let list = { (values: [Double]) in values.map { String(format: "%.1f", $0) }.joined(separator: ", ") }
        // What every round lost, not only the median one.
        var lost =
            "packets dropped by the veth pair "
            + results.map { String(format: "%.0f", $0.drops) }.joined(separator: ", ")
        let failed = results.compactMap(\.failedChecks)
        if failed.count == results.count {
            lost = "checks failed " + failed.map(String.init).joined(separator: ", ") + "; " + lost
        }
        return String(
            format:
                "median of %d rounds (%@ %%, in order; whole machine beyond the server side: median %.1f %% (%@ %%); in order, %@); that round: ",
            results.count, list(results.map(\.share)), whole, list(results.map(\.whole)), lost) + median.method
    }

    final class Downs: @unchecked Sendable {
        private let lock = NSLock()
        private var list: [Double] = []
        func add(_ t: Double) { lock.withLock { list.append(t) } }
        var count: Int { lock.withLock { list.count } }
        var times: [Double] { lock.withLock { list } }
    }

    // MARK: HAProxy

    func haproxyConfig(_ kind: HealthCheck.Kind) -> String {
        var text = """
            global
                maxconn 4000
                stats socket \(work)/haproxy.sock mode 600 level admin
            defaults
                mode \(kind == .tcp ? "tcp" : "http")
                timeout connect \(Self.timeoutNs / 1_000_000)ms
                timeout check \(Self.timeoutNs / 1_000_000)ms
                timeout client 10s
                timeout server 10s
            frontend unused
                bind 198.19.254.1:9999
                default_backend reals
            backend reals

            """
        if case .http(let options) = kind {
            text += "    option httpchk \(options.method) \(options.path)\n    http-check expect status 200\n"
        }
        text += "    default-server check inter 1s rise 2 fall \(Self.fall)\n"
        for i in 0..<count {
            let t = target(i)
            text += "    server r\(i) \(t.address):\(t.port)\n"
        }
        return text
    }

    func haproxy(_ kind: HealthCheck.Kind, servers: [Int32], floor: Double) async throws -> Result {
        try haproxyConfig(kind).write(toFile: work + "/haproxy.cfg", atomically: true, encoding: .utf8)
        let haproxy = try await BackgroundProcess.start(
            "/usr/sbin/ip", ["netns", "exec", client, "/usr/sbin/haproxy", "-db", "-f", work + "/haproxy.cfg"],
            log: work + "/haproxy.out")
        return try await withCleanup {
            try await Task.sleep(for: .seconds(3))  // its first round, spread over the interval
            guard haproxy.isRunning else {
                let log = (try? String(contentsOfFile: work + "/haproxy.out", encoding: .utf8)) ?? ""
                throw DataplaneError(description: "haproxy did not start: \(log.suffix(500))")
            }
            let window = try await Window(self, servers: servers)
            let before = try Self.usage(pid: haproxy.pid)
            try await Task.sleep(for: .seconds(seconds))
            let used = try Self.usage(pid: haproxy.pid) - before
            let w = try await window.end()
            let down = try await haproxyDown()
            let whole = w.beyondServers / w.wall * 100 - floor
            return Result(
                share: (used.total + w.receive) / w.wall * 100, whole: whole,
                method: String(
                    format:
                        "check inter 1s, same targets; %.0f checks/s done (connects) over %.0f s, %d down, %.0f packets dropped by the veth pair; the process (/proc/PID/stat, %d threads): user %.1f %%, system %.1f %%; its receive path (client veth's NAPI thread): %.1f %%; server side, not counted: kernel receive (server veth's NAPI thread) %.1f %%, nginx and the :81 server %.1f %%; softirq on all CPUs %.1f %%; the whole machine busy %.1f %% of a core, beyond the server side %.1f %% less %.1f %% with nothing checking: %.1f %%",
                    w.opens / w.wall, w.wall, down, w.drops, Self.threads(pid: haproxy.pid), used.user / w.wall * 100,
                    used.system / w.wall * 100, w.receive / w.wall * 100, w.serverReceive / w.wall * 100,
                    w.servers / w.wall * 100, w.softirq / w.wall * 100, w.busy / w.wall * 100,
                    w.beyondServers / w.wall * 100, floor, whole),
                drops: w.drops)
        } cleanup: {
            await haproxy.stop()
        }
    }

    /// Servers HAProxy holds down, from `show stat` on its socket.
    func haproxyDown() async throws -> Int {
        let csv = try await Command.output(
            "/usr/bin/python3",
            [
                "-c",
                """
                import socket, sys
                s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"show stat\\n")
                out = b""
                while True:
                    b = s.recv(65536)
                    if not b: break
                    out += b
                sys.stdout.write(out.decode())
                """, work + "/haproxy.sock"
            ])
        return csv.split(separator: "\n").filter { $0.hasPrefix("reals,r") && $0.contains(",DOWN") }.count
    }

    // MARK: Measures

    /// What one measurement window shares between the two checkers: the
    /// client namespace's connects, both veth ends' NAPI threads, the
    /// servers (nginx and the :81 server), softirq, and the whole machine's
    /// busy time. Figures in seconds.
    struct Window {
        let bench: HealthBench
        let servers: [Int32]
        let start: Double, opens: Double, receive: Double, serverReceive: Double, serverCPU: Double
        let softirq: Double, idle: Double, drops: Double

        init(_ bench: HealthBench, servers: [Int32]) async throws {
            self.bench = bench
            self.servers = servers
            // Commands first: the idle time and the start are read last,
            // together.
            drops = try await bench.wireDrops()
            opens = try await bench.activeOpens()
            receive = try HealthBench.napiSeconds("hc0")
            serverReceive = try HealthBench.napiSeconds("hc1")
            serverCPU = try HealthBench.cpuSeconds(servers)
            softirq = HealthBench.softirq()
            idle = HealthBench.machineIdle()
            start = bench.monotonic()
        }

        struct Used {
            var wall: Double, opens: Double, receive: Double, serverReceive: Double, servers: Double, softirq: Double
            var busy: Double, drops: Double

            /// The machine's busy time less the server side (the reals'
            /// receive thread and their processes), in seconds: the
            /// checker's whole cost plus what runs with no checker at all
            /// (`idleFloor`).
            var beyondServers: Double { busy - serverReceive - servers }
        }

        func end() async throws -> Used {
            let idle = HealthBench.machineIdle() - self.idle
            let wall = bench.monotonic() - start
            return Used(
                wall: wall, opens: try await bench.activeOpens() - opens,
                receive: try HealthBench.napiSeconds("hc0") - receive,
                serverReceive: try HealthBench.napiSeconds("hc1") - serverReceive,
                servers: try HealthBench.cpuSeconds(servers) - serverCPU,
                softirq: HealthBench.softirq() - softirq,
                busy: wall * Double(sysconf(Int32(_SC_NPROCESSORS_ONLN))) - idle,
                drops: try await bench.wireDrops() - drops)
        }
    }

    /// CPU seconds (user + system) of the processes `pids`, all threads.
    static func cpuSeconds(_ pids: [Int32]) throws -> Double {
        try pids.reduce(0) { $0 + Double(try ConnectionBench.cpuNs(pid: $1)) / 1e9 }
    }

    /// CPU seconds (user + system) of the NAPI thread of `device`: its
    /// receive path. Exactly one such thread must exist.
    static func napiSeconds(_ device: String) throws -> Double {
        let prefix = "napi/\(device)-"
        var found: [Int32] = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry),
                let comm = try? String(contentsOfFile: "/proc/\(entry)/comm", encoding: .utf8),
                comm.hasPrefix(prefix)
            else { continue }
            found.append(pid)
        }
        guard found.count == 1 else {
            throw DataplaneError(description: "expected one receive thread \(prefix)*, found \(found.count)")
        }
        return try usage(pid: found[0]).total
    }

    /// Packets lost on the wire between the namespaces, both ways: dropped
    /// by either veth end on sending or by the queue in front of it. A
    /// lossless wire shows 0.
    func wireDrops() async throws -> Double {
        var total = 0.0
        for (ns, dev) in [(client, "hc0"), (server, "hc1")] {
            // A reading that fails stops the bench: a wire shown lossless
            // must have been read.
            let device = try await Command.output(
                "/usr/sbin/ip", ["netns", "exec", ns, "cat", "/sys/class/net/\(dev)/statistics/tx_dropped"])
            guard let dropped = Double(device.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw DataplaneError(description: "\(dev)'s tx_dropped unreadable: \(device.prefix(200))")
            }
            let queues = try await Command.output(
                "/usr/sbin/ip", ["netns", "exec", ns, "/usr/sbin/tc", "-s", "-j", "qdisc", "show", "dev", dev])
            let list = (try? JSONSerialization.jsonObject(with: Data(queues.utf8))) as? [[String: Any]] ?? []
            let queued = list.compactMap { ($0["drops"] as? NSNumber)?.doubleValue }
            guard !list.isEmpty, queued.count == list.count else {
                throw DataplaneError(description: "\(dev)'s queue drops unreadable: \(queues.prefix(200))")
            }
            total += dropped + queued.reduce(0, +)
        }
        return total
    }

    /// Connections the checker's namespace opened (Tcp ActiveOpens: every
    /// connect, including those closed at the SYN-ACK).
    func activeOpens() async throws -> Double {
        let snmp = try await Command.output("/usr/sbin/ip", ["netns", "exec", client, "cat", "/proc/net/snmp"])
        let lines = snmp.split(separator: "\n").filter { $0.hasPrefix("Tcp:") }
        guard lines.count == 2 else { return 0 }
        let names = lines[0].split(separator: " "), values = lines[1].split(separator: " ")
        guard let i = names.firstIndex(of: "ActiveOpens"), i < values.count else { return 0 }
        return Double(values[i]) ?? 0
    }

    /// Seconds of softirq on all CPUs (/proc/stat): packet processing,
    /// charged to whichever task it interrupted.
    static func softirq() -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let cpu = stat.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") })
        else { return 0 }
        let fields = cpu.split(separator: " ")
        return (Double(fields[7]) ?? 0) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Seconds all CPUs were idle (/proc/stat: idle and iowait). The kernel
    /// measures these two exactly (from idle entry to exit), where the other
    /// columns are tick samples that miss work between ticks: a timer's
    /// softirq on a CPU woken from idle for it (delayed ACKs, retransmit
    /// timers) is idle time in none and busy time in no column. The
    /// machine's busy time is therefore the wall time of every CPU less
    /// this, whoever ran.
    static func machineIdle() -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let cpu = stat.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") })
        else { return 0 }
        let fields = cpu.split(separator: " ").dropFirst().prefix(5).map { Double($0) ?? 0 }
        guard fields.count == 5 else { return 0 }
        return (fields[3] + fields[4]) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func usage() -> Usage {
        var r = rusage()
        getrusage(RUSAGE_SELF.rawValue, &r)
        return Usage(
            user: Double(r.ru_utime.tv_sec) + Double(r.ru_utime.tv_usec) / 1e6,
            system: Double(r.ru_stime.tv_sec) + Double(r.ru_stime.tv_usec) / 1e6)
    }

    static func usage(pid: Int32) throws -> Usage {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        let fields = stat[stat.range(of: ")")!.upperBound...].split(separator: " ")
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        return Usage(user: Double(fields[11])! / hz, system: Double(fields[12])! / hz)
    }

    static func threads(pid: Int32) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task").count) ?? 0
    }

    func monotonic() -> Double { Double(TestClock.nowNs()) / 1e9 }
}
