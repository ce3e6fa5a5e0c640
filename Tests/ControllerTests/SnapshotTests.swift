import ControlAPI
@testable import Controller
import Foundation
import TestSupport
import Testing

/// Help and human output, compared with files under Snapshots/. After an
/// intended change: TANDEM_UPDATE_SNAPSHOTS=1 swift test --filter SnapshotTests
@Suite("Snapshots of help and output")
struct SnapshotTests {
    static let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let tandem = Built.tandem

    /// Snapshots are read from the test bundle's resources. With
    /// TANDEM_UPDATE_SNAPSHOTS=1 a snapshot that differs is rewritten in the
    /// sources and the test still fails, naming it, so an update is never a
    /// silent pass: review `git diff`, rebuild, and run again without it.
    static func compare(_ actual: String, _ name: String) throws {
        if ProcessInfo.processInfo.environment["TANDEM_UPDATE_SNAPSHOTS"] == "1" {
            let source = here.path + "/Snapshots/" + name
            let before = try? String(contentsOfFile: source, encoding: .utf8)
            guard actual != before else { return }
            try actual.write(toFile: source, atomically: true, encoding: .utf8)
            Issue.record(
                "snapshot \(name) \(before == nil ? "written" : "updated"): review it, then run without TANDEM_UPDATE_SNAPSHOTS"
            )
            return
        }
        let url = try #require(
            Bundle.module.url(forResource: name, withExtension: nil, subdirectory: "Snapshots"),
            "no snapshot \(name) among the test resources")
        let expected = try String(contentsOf: url, encoding: .utf8)
        #expect(actual == expected, "\(name) differs from its snapshot:\n\(actual)")
    }

    /// `tandem` with `args` (split at spaces) in a 100-column terminal.
    static func run(_ args: String) async throws -> CommandResult {
        try #require(
            FileManager.default.isExecutableFile(atPath: tandem),
            "no tandem at \(tandem): build it with the tests (swift build --build-tests)")
        return try await Command.run(
            tandem, args.split(separator: " ").map(String.init), environment: ["COLUMNS": "100"])
    }

    @Test(
        "help of every command",
        arguments: [
            "--help", "serve --help", "check --help", "status --help", "persistence list --help",
            "persistence flush --help", "real drain --help", "node --help", "node drain --help", "reload --help",
            "stats --help", "down --help"
        ])
    func help(_ args: String) async throws {
        try Self.compare(
            await Self.run(args).output,
            "help-"
                + args.replacingOccurrences(of: " --help", with: "")
                .replacingOccurrences(of: "--help", with: "tandem").replacingOccurrences(of: " ", with: "-") + ".txt")
    }

    @Test("a read command with no daemon says so in one line and exits 1")
    func notRunning() async throws {
        let out = try await Self.run("status --socket /tmp/tandem-no-such-socket")
        #expect(
            out.output
                == "tandem: tandem serve is not running: no control socket at /tmp/tandem-no-such-socket (start it with 'tandem serve --config FILE')\n"
        )
        #expect(out.status == 1)
        let drain = try await Self.run("node drain --socket /tmp/tandem-no-such-socket")
        #expect(
            drain.output.hasPrefix("tandem: tandem serve is not running: no control socket at") && drain.status == 1)
    }

    @Test("bad arguments are refused before anything is sent")
    func badArguments() async throws {
        let out = try await Self.run("real drain 198.18.0.300 --socket /tmp/x")
        #expect(out.output.contains("198.18.0.300 is not an IP address") && out.status == 64, "\(out.output)")
        let cidr = try await Self.run("persistence list --client 10.0.0.0/8/1 --socket /tmp/x")
        #expect(
            cidr.output.contains("--client 10.0.0.0/8/1 is not an address or CIDR") && cidr.status == 64,
            "\(cidr.output)")
    }

    static let status = StatusReport(
        interface: "eth0", xdpMode: "native", pinDirectory: "/sys/fs/bpf/tandem", configPath: "/etc/tandem.yaml",
        uptimeSeconds: 754, flows: 12, flowCapacity: 262_144, records: 6, recordCapacity: 1_048_576,
        pressure: pressure,
        services: [
            ServiceReport(
                name: "shop-http", vip: "198.18.0.100", port: 80, proto: "tcp", scheduler: "maglev", group: 1,
                follows: ["shop-https"], persistence: "source-ip 30m /32", check: "http GET /health",
                failover: "group", dropOnFailure: false, sorry: nil,
                counters: .init(), rates: .init(),
                reals: [
                    real("198.18.0.21", 80, "down", "down", records: 0, last: "connect: connection refused"),
                    real("198.18.0.22", 80, "up", "up", records: 6)
                ],
                ringDigest: "3f9a6c2e81d05b47"),
            ServiceReport(
                name: "shop-https", vip: "198.18.0.100", port: 443, proto: "tcp", scheduler: "maglev", group: 1,
                follows: ["shop-http"], persistence: "source-ip 30m /32", check: "tls",
                failover: "group", dropOnFailure: true, sorry: "198.18.0.23:443",
                counters: .init(), rates: .init(),
                reals: [
                    real("198.18.0.21", 443, "group-down", "up", records: 0),
                    // Its own :443 packets, not the group's: :80 had 60.
                    real("198.18.0.22", 443, "up", "up", records: 6, packets: 14)
                ])
        ], node: "lb1", announceTable: 100,
        vips: [
            VIPReport(vip: "198.18.0.100", announced: true, reason: nil, services: ["shop-http", "shop-https"]),
            VIPReport(vip: "2001:db8::100", announced: false, reason: "no usable real", services: ["shop6-http"])
        ])

    /// A SYN flood met: 2 M SYNs given no state, no table ever full.
    static var pressure: TablePressure {
        var p = TablePressure()
        p.synStateless = 2_000_000
        p.flowsWritten = 30
        p.recordsWritten = 6
        return p
    }

    static func real(
        _ address: String, _ port: Int, _ state: String, _ health: String, records: Int,
        last: String? = nil, packets: Int? = nil
    ) -> RealReport {
        var counters = CountersReport()
        counters.packets = UInt64(packets ?? records * 10)
        return RealReport(
            address: address, port: port, weight: 1, state: state, health: health, lastCheck: last,
            records: records, counters: counters)
    }

    @Test("status, stats and persistence list read like ipvsadm -Ln")
    func output() throws {
        try Self.compare(Text.status(Self.status), "status.txt")
        var drained = Self.status
        drained.drained = true
        drained.vips = drained.vips.map {
            VIPReport(vip: $0.vip, announced: false, reason: "draining (tandem node drain)", services: $0.services)
        }
        try Self.compare(Text.status(drained), "status-drained.txt")
        var plain = Self.status
        plain.announceTable = nil
        #expect(Text.status(plain).contains("node: lb1  announce: off (no announce table configured)\nProt"))
        var checked = Self.status
        checked.checks = ChecksReport(
            probes: 18, scheduledPerSecond: 18, donePerSecond: 18, roundSeconds: 1, latenessSeconds: 0.002,
            missed: 0, missedTotal: 0, behind: false, tcpChecks: "IPv4 half-open (SYNs from port 40321)")
        #expect(
            Text.status(checked).contains(
                "checks 18/s done of 18/s scheduled (18 probes), latest round (1s): 2ms late, 0 missed\n"
                    + "tcp checks: IPv4 half-open (SYNs from port 40321)\n"), "\(Text.status(checked))")
        var counters = CountersReport()
        counters.packets = 1200
        counters.bytes = 96_000
        counters.newFlows = 30
        counters.followHits = 12
        var rates = RatesReport()
        rates.packetsPerSecond = 40
        let stats = StatsReport(
            services: [ServiceStats(name: "shop-http", counters: counters, rates: rates)],
            packets: ["pass_not_vip": 17, "drop_fragment": 0], flows: 12, flowCapacity: 262_144,
            records: 6, recordCapacity: 1_048_576, pressure: Self.pressure)
        try Self.compare(Text.stats(stats), "stats.txt")
        let records = [
            RecordReport(
                group: 1, services: ["shop-http", "shop-https"], client: "198.18.10.1",
                real: "198.18.0.22", service: "shop-https", ageSeconds: 75, node: "lb1"),
            RecordReport(
                group: 1, services: ["shop-http", "shop-https"], client: "198.18.10.2",
                real: "198.18.0.22", service: "shop-http", ageSeconds: 3, node: "lb2")
        ]
        try Self.compare(Text.records(records), "persistence-list.txt")
        var synced = Self.status
        synced.sync = [
            PeerStatus(
                endpoint: "198.18.1.12:7946", node: "lb2", up: true, recordsSent: 1200, recordsReceived: 840,
                recordsInstalled: 830, sendErrors: 0, rejected: ["older-than-local": 10], lagMs: 0.42,
                lastHeardSeconds: 0.3),
            PeerStatus(
                endpoint: "198.18.1.13:7946", node: nil, up: false, recordsSent: 1200, recordsReceived: 0,
                recordsInstalled: 0, sendErrors: 3, rejected: ["bad-mac": 4], lagMs: nil, lastHeardSeconds: nil)
        ]
        try Self.compare(Text.status(synced), "status-sync.txt")
        #expect(Text.records([]) == "no records\n")
    }
}
