import BPF
import Dataplane
import Foundation
import Glibc
import TestSupport

/// New TCP connections per second through Tandem beside HAProxy doing the
/// same job, in the lab (tools/lab up, then tools/lab nginx so that the
/// reals answer :80 with nginx).
///
/// The job: a VIP with :80 and :443 whose source-IP persistence is shared,
/// so a client's :443 goes to its :80 real. Tandem: `tandem serve` with two
/// linked services. HAProxy: two TCP frontends, a stick table on the source
/// address in the :80 backend that the :443 backend sticks on too. Before
/// each measurement four clients fetch :80 then :443 and must reach one real
/// on both. The load: wrk from tdm-client, one new connection per request
/// (`Connection: close`), on :80. The two alternate, `rounds` times each.
///
/// Beside the rate, the load balancer's own CPU per connection: Tandem's is
/// the XDP program's run time (kernel.bpf_stats_enabled), HAProxy's is its
/// process's user + system time. Neither counts the kernel's receive work
/// outside the process, which HAProxy needs far more of (it terminates both
/// TCP connections); the figures understate HAProxy.
struct ConnectionBench {
    let seconds: Int
    let rounds: Int
    let connections: Int
    let tandem: String
    let workDirectory = "/run/tandem-bench"
    let pinDirectory = "/sys/fs/bpf/tandem-bench-serve"
    static let vip = "198.18.0.100"

    struct Load { var connections: Double = 0, seconds: Double = 0, lbCPUns: Double = 0, errors: [String] = [] }

    func measure(into table: inout ResultTable) async throws {
        for tool in ["/usr/sbin/haproxy", "/usr/bin/wrk"] where !FileManager.default.isExecutableFile(atPath: tool) {
            throw DataplaneError(description: "connection rows need \(tool) (tools/bench installs haproxy and wrk)")
        }
        guard FileManager.default.fileExists(atPath: "/run/netns/tdm-lb") else {
            throw DataplaneError(description: "connection rows need the lab: tools/lab up && tools/lab nginx")
        }
        try FileManager.default.createDirectory(atPath: workDirectory, withIntermediateDirectories: true)
        try Self.tandemConfig(socket: workDirectory + "/tandem.sock", pins: pinDirectory)
            .write(toFile: workDirectory + "/tandem.yaml", atomically: true, encoding: .utf8)
        try Self.haproxyConfig(pidFile: workDirectory + "/haproxy.pid")
            .write(toFile: workDirectory + "/haproxy.cfg", atomically: true, encoding: .utf8)
        for namespace in ["tdm-client", "tdm-lb"] {
            try await Command.output(
                "/usr/sbin/ip", ["netns", "exec", namespace, "sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000"]
            )
        }
        let statsWereOn = try BPFProgram.countRunTime(true)
        defer { _ = try? BPFProgram.countRunTime(statsWereOn) }

        var tandemLoad = Load(), haproxyLoad = Load()
        var followed: [String] = []
        for _ in 0..<rounds {
            let t = try await throughTandem()
            followed.append("tandem \(t.followed)")
            tandemLoad.add(t.load)
            let h = try await throughHAProxy()
            followed.append("haproxy \(h.followed)")
            haproxyLoad.add(h.load)
        }
        let tandemRate = tandemLoad.connections / tandemLoad.seconds
        let haproxyRate = haproxyLoad.connections / haproxyLoad.seconds
        let wrk =
            "wrk -t2 -c\(connections) -d\(seconds)s -H 'Connection: close' http://\(Self.vip)/ from tdm-client, \(rounds) x \(seconds) s alternating"
        let checked =
            Set(followed.map { $0.split(separator: " ")[1] }) == ["4/4"]
            ? "both: 4/4 clients same real on :80 and :443"
            : "SAME REAL ON :80 AND :443: \(followed.joined(separator: ", "))"
        let version = await Self.haproxyVersion()
        table.add(
            count: "new TCP connections/s: HAProxy \(version), stick table shared by :80/:443",
            value: haproxyRate, unit: "conn/s", baseline: nil,
            method: wrk + haproxyLoad.errorNote + "; nginx on the reals")
        table.add(
            count: "new TCP connections/s: Tandem", value: tandemRate, unit: "conn/s", baseline: haproxyRate,
            method: wrk + tandemLoad.errorNote + "; baseline HAProxy; " + checked)
        table.add(
            count: "LB CPU per new connection: HAProxy", value: haproxyLoad.lbCPUns / haproxyLoad.connections / 1000,
            unit: "us", baseline: nil,
            method:
                "HAProxy's user + system time (/proc/PID/stat) over connections; kernel receive work outside it not counted"
        )
        table.add(
            count: "LB CPU per new connection: Tandem", value: tandemLoad.lbCPUns / tandemLoad.connections / 1000,
            unit: "us", baseline: haproxyLoad.lbCPUns / haproxyLoad.connections / 1000,
            method:
                "XDP run time (kernel.bpf_stats_enabled) over connections: every client packet of the connection; baseline HAProxy"
        )
    }

    // MARK: Tandem

    func throughTandem() async throws -> (load: Load, followed: String) {
        _ = FileManager.default.createFile(atPath: workDirectory + "/tandem.log", contents: nil)
        let serve = try await BackgroundProcess.start(
            "/usr/bin/nsenter",
            ["--net=/run/netns/tdm-lb", tandem, "serve", "--config", workDirectory + "/tandem.yaml"],
            log: workDirectory + "/tandem.log")
        return try await withCleanup {
            let program = try await waitForXDP()
            // Reals start up; wait until the VIP answers through the program.
            try await waitForVIP(what: "tandem serve (log: \(workDirectory)/tandem.log)")
            let followed = try await follows()
            let before = try program.runStats()
            var load = try await wrk()
            let after = try program.runStats()
            load.lbCPUns = Double(after.ns - before.ns)
            return (load, followed)
        } cleanup: {
            await serve.stop()
            _ = try? await Command.output(tandem, ["down", "--pin-directory", pinDirectory])
        }
    }

    /// The program `tandem serve` attached to tdm-lb's eth0.
    func waitForXDP() async throws -> BPFProgram {
        for _ in 0..<100 {
            let attached = try NetworkNamespace.inside("tdm-lb") {
                try NetlinkXDP.attachedID(interface: "eth0", mode: .native).map(BPFProgram.byID)
            }
            if let attached { return attached }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        throw DataplaneError(
            description:
                "tandem serve attached no XDP program to tdm-lb's eth0 in 10 s (log: \(workDirectory)/tandem.log)")
    }

    // MARK: HAProxy

    func throughHAProxy() async throws -> (load: Load, followed: String) {
        let haproxy = try await BackgroundProcess.start(
            "/usr/sbin/ip",
            [
                "netns", "exec", "tdm-lb", "/usr/sbin/haproxy", "-db",
                "-f", workDirectory + "/haproxy.cfg"
            ])
        return try await withCleanup {
            try await waitForVIP(what: "haproxy")
            let followed = try await follows()
            let pid = haproxy.pid  // `ip netns exec` execs haproxy itself
            let before = try Self.cpuNs(pid: pid)
            var load = try await wrk()
            load.lbCPUns = Double(try Self.cpuNs(pid: pid) - before)
            return (load, followed)
        } cleanup: {
            await haproxy.stop()
        }
    }

    /// User + system time of a process, all threads.
    static func cpuNs(pid: Int32) throws -> UInt64 {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
        let fields = stat[stat.range(of: ")")!.upperBound...].split(separator: " ")
        let ticks = UInt64(fields[11])! + UInt64(fields[12])!
        return ticks * 1_000_000_000 / UInt64(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func haproxyVersion() async -> String {
        let text = (try? await Command.output("/usr/sbin/haproxy", ["-v"])) ?? ""
        return text.split(separator: " ").dropFirst(2).first.map { String($0.split(separator: "-")[0]) } ?? "?"
    }

    // MARK: Load and checks

    func waitForVIP(what: String) async throws {
        for _ in 0..<100 {
            if let body = try? await curl("http://\(Self.vip)/", source: "198.18.10.1"), body.hasPrefix("r") { return }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        throw DataplaneError(description: "\(what): the VIP did not answer on :80 within 10 s")
    }

    /// Four clients fetch :80 then :443: how many reached one real on both.
    func follows() async throws -> String {
        var same = 0
        for client in 11...14 {
            let http = try await curl("http://\(Self.vip)/", source: "198.18.10.\(client)")
            let https = try await curl("https://\(Self.vip)/", source: "198.18.10.\(client)")
            if http == https { same += 1 }
        }
        return "\(same)/4"
    }

    func curl(_ url: String, source: String) async throws -> String {
        try await Command.output(
            "/usr/sbin/ip",
            [
                "netns", "exec", "tdm-client", "curl", "-sk", "-m", "2",
                "--interface", source, url
            ]
        )
        .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func wrk() async throws -> Load {
        let out = try await Command.output(
            "/usr/sbin/ip",
            [
                "netns", "exec", "tdm-client", "wrk", "-t2", "-c\(connections)",
                "-d\(seconds)s", "-H", "Connection: close", "http://\(Self.vip)/"
            ])
        // "  86641 requests in 5.04s, 11.98MB read"
        guard let line = out.split(separator: "\n").first(where: { $0.contains(" requests in ") }) else {
            throw DataplaneError(description: "wrk printed no totals: \(out)")
        }
        let words = line.split(separator: " ")
        guard let requests = Double(words[0]), let elapsed = Double(words[3].dropLast(2)) else {
            throw DataplaneError(description: "wrk totals unreadable: \(line)")
        }
        let errors = out.split(separator: "\n").filter { $0.contains("Socket errors") || $0.contains("Non-2xx") }
            .map { $0.trimmingCharacters(in: .whitespaces) }
        return Load(connections: requests, seconds: elapsed, errors: errors)
    }

    // MARK: Configurations

    static func tandemConfig(socket: String, pins: String) -> String {
        """
        interface: eth0
        pin-directory: \(pins)
        socket: \(socket)
        defaults:
          check: { interval: 1s, timeout: 500ms, rise: 2, fall: 3 }
        services:
          - name: web
            vip: \(vip)
            port: 80
            protocol: tcp
            persistence: { mode: source-ip, timeout: 30m, netmask: 32 }
            follow: [web-tls]
            check: { type: http, path: /health }
            reals:
              - { address: 198.18.0.21, port: 80 }
              - { address: 198.18.0.22, port: 80 }
              - { address: 198.18.0.23, port: 80 }
          - name: web-tls
            vip: \(vip)
            port: 443
            protocol: tcp
            persistence: { mode: source-ip, timeout: 30m, netmask: 32 }
            follow: [web]
            check: { type: tcp }
            reals:
              - { address: 198.18.0.21, port: 443 }
              - { address: 198.18.0.22, port: 443 }
              - { address: 198.18.0.23, port: 443 }

        """
    }

    static func haproxyConfig(pidFile: String) -> String {
        """
        global
            maxconn 8000
            nbthread 2
            pidfile \(pidFile)
        defaults
            mode tcp
            timeout connect 2s
            timeout client 30s
            timeout server 30s
        frontend web
            bind \(vip):80
            default_backend web
        frontend web-tls
            bind \(vip):443
            default_backend web-tls
        backend web
            balance roundrobin
            stick-table type ip size 1m expire 30m
            stick on src
            server r1 198.18.0.21:80 check inter 1s
            server r2 198.18.0.22:80 check inter 1s
            server r3 198.18.0.23:80 check inter 1s
        backend web-tls
            balance roundrobin
            stick on src table web
            server r1 198.18.0.21:443 check inter 1s
            server r2 198.18.0.22:443 check inter 1s
            server r3 198.18.0.23:443 check inter 1s

        """
    }
}

extension ConnectionBench.Load {
    mutating func add(_ other: Self) {
        connections += other.connections
        seconds += other.seconds
        lbCPUns += other.lbCPUns
        errors += other.errors
    }

    var errorNote: String { errors.isEmpty ? "" : " (wrk: " + errors.joined(separator: "; ") + ")" }
}
