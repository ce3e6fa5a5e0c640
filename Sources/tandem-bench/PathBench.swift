import BPF
import Configuration
import Control
import Dataplane
import Foundation
import Frames
import Model
import TestSupport

/// ns per packet for each path of the XDP program, each beside a MAC-swap
/// baseline measured the same way in the same run, all inside the kernel's
/// BPF_PROG_TEST_RUN loop (`repeat`), so no syscall is counted per packet.
///
/// Stateless paths (pass, established) repeat one frame. Paths that change
/// state (new flow, follow, reschedule) use bpf/bench.bpf.c's entry points,
/// which add one to the source address before each run: every repetition is
/// a new client. Their baseline does the same increment before swapping MACs.
final class PathBench {
    let dataplane: Dataplane
    let baselineObject: BPFObject
    let benchObject: BPFObject
    let baseline: BPFProgram
    let baselineNext: BPFProgram
    let nextClient: BPFProgram
    let state: ControlState
    let model: DataplaneModel
    let repeatCount: Int32
    let clients: Int32
    static let vip = "198.18.0.100"
    /// Clients of the stateful rows: 198.18.4.0 counting up (stays in
    /// 198.18.0.0/15 for up to 130,000 repetitions).
    static let firstClient: UInt32 = 0xC612_0400

    init(pinRoot: String, repeat repeatCount: Int32, clients: Int32) throws {
        BPFFS.removeTree(pinRoot)
        dataplane = try Dataplane(pinRoot: pinRoot)
        baselineObject = try BPFObject(bytes: Objects.baseline, name: "baseline", pinRoot: nil)
        try baselineObject.load()
        baseline = try baselineObject.program("baseline_swap")
        benchObject = try dataplane.companion(bytes: Objects.bench, name: "bench")
        nextClient = try benchObject.program("bench_next_client")
        baselineNext = try benchObject.program("bench_baseline_next_client")
        self.repeatCount = repeatCount
        self.clients = clients
        state = Self.state(reals: 4)
        model = Self.model(state)
        try dataplane.apply(model)
    }

    /// :80 and :443 on one VIP, linked, with `count` reals 198.18.0.21 on:
    /// group 1, real ids 1...count in address order.
    static func state(reals count: Int) -> ControlState {
        // Direct server return keeps the port: a real's port is its service's.
        func reals(_ port: Int) -> String {
            (1...count).map { "{ address: 198.18.0.\(20 + $0), port: \(port) }" }.joined(separator: ", ")
        }
        let yaml = """
            interface: bench0
            services:
              - { name: http, vip: \(vip), port: 80, follow: [https], check: { type: none }, reals: [\(reals(80))],
                  persistence: { mode: source-ip, timeout: 30m, netmask: 32 } }
              - { name: https, vip: \(vip), port: 443, follow: [http], check: { type: none }, reals: [\(reals(443))],
                  persistence: { mode: source-ip, timeout: 30m, netmask: 32 } }
            """
        return try! ControlState(ConfigParser.parseValidated(yaml, file: "bench.yaml"))
    }

    /// Real i's MAC is 02:00:00:00:01:i.
    static func model(_ state: ControlState) -> DataplaneModel {
        let macs = Dictionary(
            uniqueKeysWithValues: state.realAddresses.map { address in
                (address, MACAddress(bytes: [2, 0, 0, 0, 1, address.bytes[3] - 20])!)
            })
        return state.model(macs: macs)
    }

    static func model(reals count: Int) -> DataplaneModel { model(state(reals: count)) }

    /// Real `index` (1 = 198.18.0.21) fails its :80 check: what the
    /// controller does on a failed health check (down in the follow group,
    /// its records invalidated).
    static func failing(_ state: ControlState, real index: Int) -> DataplaneModel {
        var s = state
        s.setHealth(service: "http", address: IPAddress("198.18.0.\(20 + index)")!, up: false)
        return model(s)
    }

    static func address(_ hostOrder: UInt32) -> String {
        IPAddress(bytes: withUnsafeBytes(of: hostOrder.bigEndian) { Array($0) })!.description
    }

    func frame(
        _ client: String, port: UInt16, sport: UInt16 = 40000, flags: UInt8 = TCPFlags.syn,
        dst: String = vip
    ) -> [UInt8] {
        PacketSpec(src: client, dst: dst, sport: sport, dport: port, tcpFlags: flags).bytes
    }

    /// Runs `frame` `count` times in the kernel; checks the verdict of the
    /// last run and returns the kernel's mean ns per run.
    func run(_ program: BPFProgram, _ frame: [UInt8], expect: Verdict, count: Int32) throws -> Double {
        let result = try program.testRun(packet: frame, repeat: count)
        guard result.retval == expect.rawValue else {
            throw DataplaneError(description: "\(program.name): verdict \(result.retval), wanted \(expect)")
        }
        return Double(result.durationNs)
    }

    /// Median of `trials` runs of each (name, program, frame, verdict),
    /// taken in turn so that drift in the machine hits all alike.
    func medians(_ subjects: [(String, BPFProgram, [UInt8], Verdict)], count: Int32, trials: Int) throws -> [Double] {
        var samples = [[Double]](repeating: [], count: subjects.count)
        for _ in 0..<trials {
            for (i, s) in subjects.enumerated() { samples[i].append(try run(s.1, s.2, expect: s.3, count: count)) }
        }
        return samples.map { $0.sorted()[$0.count / 2] }
    }

    func measure(into table: inout ResultTable) throws {
        let trials = 5
        let method = "repeat \(repeatCount), median of \(trials) alternating"
        let r = repeatCount, c = clients
        let first = Self.address(Self.firstClient)
        let syn = frame(first, port: 80)

        _ = try dataplane.program.testRun(packet: syn)  // the established row's flow
        let stateless = try medians(
            [
                ("baseline: swap MACs, XDP_TX", baseline, syn, .tx),
                (
                    "non-VIP pass, port no service uses", dataplane.program,
                    frame(first, port: 22, dst: "198.18.0.200"), .pass
                ),
                (
                    "non-VIP pass, port 80 of another address", dataplane.program,
                    frame(first, port: 80, dst: "198.18.0.200"), .pass
                ),
                ("established flow", dataplane.program, frame(first, port: 80, flags: TCPFlags.ack), .tx)
            ], count: r, trials: trials)
        let base = stateless[0]
        table.add("baseline: swap MACs, XDP_TX", ns: base, baseline: nil, method: method)
        table.add("non-VIP pass, port no service uses", ns: stateless[1], baseline: base, method: method)
        table.add("non-VIP pass, port 80 of another address", ns: stateless[2], baseline: base, method: method)
        table.add("established flow", ns: stateless[3], baseline: base, method: method)
        try dataplane.clearFlows()

        // Every repetition a new client from here on.
        let stateful = "repeat \(clients), +1 source address per run"
        let baseNext = try medians([("baseline: +1 source", baselineNext, syn, .tx)], count: c, trials: trials)[0]
        table.add(
            "baseline: +1 source, swap MACs, XDP_TX", ns: baseNext, baseline: nil,
            method: stateful + ", median of \(trials)")
        try dataplane.clearFlows()
        table.add(
            "new flow (schedule + record + flow)", ns: try run(nextClient, syn, expect: .tx, count: c),
            baseline: baseNext, method: stateful)
        try dataplane.clearFlows()
        table.add(
            "persistence hit (:80 again, new port)",
            ns: try run(
                nextClient, frame(first, port: 80, sport: 41000),
                expect: .tx, count: c), baseline: baseNext, method: stateful + ", record from :80")
        try dataplane.clearFlows()
        table.add(
            "follow hit (:443 after :80)",
            ns: try run(
                nextClient, frame(first, port: 443, sport: 42000),
                expect: .tx, count: c), baseline: baseNext, method: stateful + ", record from :80")
        try dataplane.clearFlows()

        // Every record of these clients points at real 1, which then fails.
        let failedFirst = Self.firstClient + UInt32(clients) + 1024
        _ = try dataplane.fillRecords(count: Int(clients), group: 1, real: 1, firstClient: failedFirst)
        try dataplane.apply(Self.failing(state, real: 1))
        table.add(
            "rescheduled after failure",
            ns: try run(
                nextClient, frame(Self.address(failedFirst), port: 443),
                expect: .tx, count: c), baseline: baseNext, method: stateful + ", record of a failed real")
        try dataplane.apply(model)
    }
}

/// Time to invalidate every record of a failed real with `records` present.
struct InvalidationBench {
    let pinRoot: String
    let records: Int

    func measure(into table: inout ResultTable) throws {
        BPFFS.removeTree(pinRoot)
        let dataplane = try Dataplane(pinRoot: pinRoot)
        defer { dataplane.removePins() }
        let state = PathBench.state(reals: 64)
        try dataplane.apply(PathBench.model(state))
        let firstClient: UInt32 = 0xC612_0000
        let present = try dataplane.fillRecords(count: records, group: 1, real: 2, firstClient: firstClient)
        let failed = PathBench.failing(state, real: 2)
        let elapsed = try TestClock.measure { try dataplane.apply(failed) } * 1000
        // The very next packet of one of real 2's clients must go elsewhere.
        let client = PathBench.address(firstClient + UInt32(records / 2))
        let probe = try dataplane.program.testRun(
            packet: PacketSpec(src: client, dst: PathBench.vip, dport: 443).bytes)
        let moved = probe.retval == Verdict.tx.rawValue && Array(probe.output.prefix(6)) != [2, 0, 0, 0, 1, 2]
        table.add(
            "invalidate a failed real's records, \(present) present",
            value: String(format: "%.3f ms", elapsed),
            method:
                "apply(): 1 generation write + 2 ring rebuilds (64 reals); next packet moved: \(moved ? "yes" : "NO")")
    }
}
