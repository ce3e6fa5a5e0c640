import BPF
import Configuration
import Control
import NodeSync
import Dataplane
import Foundation
import Frames
import Logging
import Model
import NIOConcurrencyHelpers
import NIOPosix
import Sync
import TestSupport

/// Record sync between two nodes on loopback, each in its own process as
/// in production: node A (this process) takes new clients (a SYN and a
/// first ACK each through BPF_PROG_TEST_RUN into its program), its record
/// feed reads the writes from the ring buffer and sends them; node B
/// (`tandem-bench --sync-receiver`, a child process) installs them with the
/// receiver's rules into its own dataplane.
///
/// - Latency: B's wall clock when a record is installed minus the write
///   time the record carries (A's program's clock, turned into wall-clock
///   time as the feed does); both processes read one clock.
/// - Cost: CPU time (user + system, getrusage) per new client. The sender's
///   is A's CPU in a phase with sync minus A's CPU in the same phase
///   without it (the baseline: the new connections alone, same pacing);
///   the receiver's is all of B's CPU over its phase.
struct SyncBench {
    let clients: Int
    let pinRoot: String
    static let secret = [UInt8](repeating: 0x5A, count: 32)
    static let yaml = """
        interface: lo
        services:
        \(Configs.followPair(reals: (21...23).map { "198.18.0.\($0)" }))
        """

    /// A node's dataplane, programmed as the controller does.
    static func node(_ pins: String) throws -> (Dataplane, DataplaneModel) {
        let config = try ConfigParser.parseValidated(yaml, file: "sync-bench.yaml")
        var model = try ControlState(config).model(macs: [:])
        for i in model.reals.indices { model.reals[i].mac = MACAddress(bytes: [2, 0, 0, 0, 1, UInt8(i + 1)])! }
        BPFFS.removeTree(pins)
        let dataplane = try Dataplane(pinRoot: pins)
        try dataplane.apply(model)
        return (dataplane, model)
    }

    static func cpuNs() -> UInt64 {
        var r = rusage()
        getrusage(RUSAGE_SELF.rawValue, &r)
        return UInt64(r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1_000_000_000
            + UInt64(r.ru_utime.tv_usec + r.ru_stime.tv_usec) * 1000
    }

    /// What the receiver reports (one JSON line).
    struct Received: Codable {
        var installed: Int
        var rejected: Int
        var received: UInt64
        var cpuNs: UInt64
        /// Write-to-install times in ns, sorted.
        var latencies: [UInt64]
    }

    /// Installs what arrives as the controller does, and times each record.
    final class TimingStore: SyncStore {
        let dataplane: Dataplane
        let view: SyncView
        let seen = NIOLockedValueBox(
            (installed: 0, rejected: 0, latencies: [UInt64](), cpuNs: UInt64(0), last: ContinuousClock.now))

        init(dataplane: Dataplane, model: DataplaneModel) {
            self.dataplane = dataplane
            self.view = SyncView(model: model)
        }

        func apply(_ records: [SyncRecord], from node: String) async -> (installed: Int, rejected: [Rejection: Int]) {
            let (writes, rejected) = NodeSync.plan(
                records, origin: NodeSync.nodeID(node), dataplane: dataplane, view: view)
            guard (try? dataplane.installRecords(writes)) != nil else { return (0, rejected) }
            let now = SyncEngine.wallNs()
            seen.withLockedValue { s in
                s.installed += writes.count
                s.rejected += rejected.values.reduce(0, +)
                for r in records { s.latencies.append(now > r.writtenNs ? now - r.writtenNs : 0) }
                s.cpuNs = SyncBench.cpuNs()
                s.last = .now
            }
            return (writes.count, rejected)
        }

        func forEachRecordBatch(_ body: ([SyncRecord]) throws -> Void) async throws {}
    }

    /// Node B: listens on `port`, takes records from the sender on
    /// `senderPort` until `count` are in (or 60 s pass), prints a
    /// `Received` line and exits.
    static func receive(port: Int, senderPort: Int, count: Int, pinRoot: String) async throws {
        let (dataplane, model) = try node(pinRoot)
        defer { dataplane.removePins() }
        let store = TimingStore(dataplane: dataplane, model: model)
        let engine = SyncEngine(node: "lb2", secret: secret, peers: [Endpoint("127.0.0.1:\(senderPort)")!])
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let transport = SyncTransport(
            engine: engine, listen: Endpoint("127.0.0.1:\(port)")!, store: store, group: group,
            logger: Logger(label: "sync-bench"))
        try await transport.start()
        let receiver = Task { await transport.runReceiver() }
        let start = cpuNs()
        FileHandle.standardOutput.write(Data("ready\n".utf8))
        // Until every record is in, or none came for 2 s after the first
        // (some were lost), or 60 s passed. The CPU time counts up to the
        // last install, not the wait.
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            let (done, last) = store.seen.withLockedValue { ($0.installed + $0.rejected, $0.last) }
            if done >= count || (done > 0 && ContinuousClock.now - last > .seconds(2)) { break }
            try await Task.sleep(for: .milliseconds(5))
        }
        let cpu = store.seen.withLockedValue { $0.cpuNs } - start
        receiver.cancel()
        await transport.stop()
        let seen = store.seen.withLockedValue { $0 }
        let report = Received(
            installed: seen.installed, rejected: seen.rejected, received: engine.reports()[0].recordsReceived,
            cpuNs: cpu, latencies: seen.latencies.sorted())
        FileHandle.standardOutput.write(try JSONEncoder().encode(report) + Data("\n".utf8))
        try await group.shutdownGracefully()
    }

    /// `count` new clients from `first` on, at `rate` per second (0: as
    /// fast as they go): a SYN and a first ACK each. The CPU time of this
    /// process meanwhile, and the program's own run time.
    static func newClients(
        _ dataplane: Dataplane, first: Int, count: Int, rate: Double
    ) throws -> (
        cpuNs: UInt64, xdpNs: UInt64
    ) {
        let start = ContinuousClock.now
        let cpu = cpuNs()
        var xdp: UInt64 = 0
        for i in 0..<count {
            if rate > 0 {
                let due = start + .nanoseconds(Int64(Double(i) / rate * 1e9))
                let wait = due - ContinuousClock.now
                if wait > .zero {
                    Thread.sleep(
                        forTimeInterval: Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18)
                }
            }
            let n = first + i
            var packet = PacketSpec(
                src: "198.19.\((n >> 8) & 0xFF).\(n & 0xFF)", dst: "198.18.0.100", sport: 40000, dport: 443)
            xdp += UInt64(try dataplane.program.testRun(packet: packet.bytes).durationNs)
            packet.tcpFlags = TCPFlags.ack
            xdp += UInt64(try dataplane.program.testRun(packet: packet.bytes).durationNs)
        }
        return (cpuNs() - cpu, xdp)
    }

    struct Phase {
        var rate: Double
        var baseline: (cpuNs: UInt64, xdpNs: UInt64)
        var synced: (cpuNs: UInt64, xdpNs: UInt64)
        var received: Received
        /// Records A sent, and writes its ring buffer lost.
        var sent: UInt64
        var unsent: UInt64
    }

    /// One phase at `rate`: the baseline (no sync), then the same with B
    /// receiving. Clients from `first` on (2 x clients of them).
    func phase(rate: Double, first: Int, dataplane: Dataplane, model: DataplaneModel) async throws -> Phase {
        let baseline = try Self.newClients(dataplane, first: first, count: clients, rate: rate)
        let ports = Ports.freeUDPAndTCP(2)
        let (portA, portB) = (ports[0], ports[1])
        let log = "/tmp/tandem-bench-sync-\(getpid()).log"
        try? FileManager.default.removeItem(atPath: log)
        let receiver = try await BackgroundProcess.start(
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0],
            [
                "--sync-receiver", "\(portB)", "--sync-sender-port", "\(portA)", "--sync-clients", "\(clients)",
                "--pin-root", pinRoot + "-b"
            ], log: log)
        defer { try? FileManager.default.removeItem(atPath: log) }
        func output() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
        for _ in 0..<200 where !output().contains("ready") { try await Task.sleep(for: .milliseconds(50)) }
        guard output().contains("ready") else {
            throw DataplaneError(description: "the sync receiver did not start: \(output())")
        }

        let engine = SyncEngine(node: "lb1", secret: Self.secret, peers: [Endpoint("127.0.0.1:\(portB)")!])
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let store = TimingStore(dataplane: dataplane, model: model)
        let transport = SyncTransport(
            engine: engine, listen: Endpoint("127.0.0.1:\(portA)")!, store: store, group: group,
            logger: Logger(label: "sync-bench"))
        try await transport.start()
        let feed = try RecordFeed(dataplane: dataplane, rules: SyncRules(model: model)) { transport.publish($0) }
        feed.start(logger: Logger(label: "sync-bench"))
        let lostBefore = dataplane.recordEventsLostCount()
        let synced = try Self.newClients(dataplane, first: first + clients, count: clients, rate: rate)
        _ = await receiver.wait()
        let unsent = dataplane.recordEventsLostCount() - lostBefore
        let sent = engine.reports()[0].recordsSent
        await feed.stop()
        await transport.stop()
        try await group.shutdownGracefully()
        guard let line = output().split(separator: "\n").last(where: { $0.hasPrefix("{") }) else {
            throw DataplaneError(description: "the sync receiver reported nothing: \(output())")
        }
        let received = try JSONDecoder().decode(Received.self, from: Data(line.utf8))
        return Phase(
            rate: rate, baseline: baseline, synced: synced, received: received, sent: sent, unsent: unsent)
    }

    func measure(into table: inout ResultTable) async throws {
        let (dataplane, model) = try Self.node(pinRoot + "-a")
        defer { dataplane.removePins() }
        let phases = [
            try await phase(rate: 1000, first: 0, dataplane: dataplane, model: model),
            try await phase(rate: 0, first: 2 * clients, dataplane: dataplane, model: model)
        ]
        for p in phases {
            let n = Double(clients)
            let lat = p.received.latencies
            func at(_ q: Double) -> Double {
                lat.isEmpty ? .nan : Double(lat[min(lat.count - 1, Int(q * Double(lat.count)))]) / 1000
            }
            let pace = p.rate > 0 ? String(format: "%.0f new clients/s", p.rate) : "new clients as fast as they go"
            let sender = (Double(p.synced.cpuNs) - Double(p.baseline.cpuNs)) / n / 1000
            let baseline = Double(p.baseline.cpuNs) / n / 1000
            let receiver = Double(p.received.cpuNs) / n / 1000
            let common = String(
                format:
                    "%d clients (SYN + first ACK each, BPF_PROG_TEST_RUN) on node A, %@; node B a second process on loopback; A sent %llu records (%llu writes lost in its ring buffer), B received %llu, installed %d of %d, refused %d; %.0f ns of XDP per new client",
                clients, pace, p.sent, p.unsent, p.received.received, p.received.installed, clients,
                p.received.rejected,
                Double(p.synced.xdpNs) / n)
            table.add(
                count: "sync: latency, written on A to installed on B (median), \(pace)", value: at(0.5), unit: "µs",
                baseline: nil,
                method: common
                    + String(format: "; p90 %.0f µs, max %.0f µs", at(0.9), lat.last.map { Double($0) / 1000 } ?? .nan))
            table.add(
                count: "sync: latency (p99), \(pace)", value: at(0.99), unit: "µs", baseline: nil, method: common)
            table.add(
                count: "sync: sender's CPU per new client, \(pace)", value: sender, unit: "µs", baseline: baseline,
                method:
                    "getrusage of node A: with sync minus without (baseline: the same new clients without sync, \(String(format: "%.2f", baseline)) µs of CPU each, the test-run syscalls included)"
            )
            table.add(
                count: "sync: receiver's CPU per new client, \(pace)", value: receiver, unit: "µs", baseline: baseline,
                method:
                    "getrusage of node B over the phase: UDP receive, HMAC, rules, map writes; baseline: node A's new connection without sync"
            )
        }
    }
}
