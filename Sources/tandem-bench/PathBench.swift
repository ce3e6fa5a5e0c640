import BPF
import Configuration
import Control
import Dataplane
import Foundation
import Frames
import Model
import TestSupport

/// ns per packet for each path of the XDP program on FULL tables (the
/// flow table and the record table filled first, so every insert evicts),
/// beside a MAC-swap floor and a plain XDP_PASS measured the same way in
/// the same run, all inside the kernel's BPF_PROG_TEST_RUN loop (`repeat`),
/// so no syscall is counted per packet.
///
/// Stateless paths (pass, established hot) repeat one frame. The other
/// paths use bpf/bench.bpf.c's entry points, which add one to the source
/// address (or port) before each run: every repetition is a new client
/// (or flow). Each row is the median of `trials` runs taken in turn with
/// the others, each trial with clients of its own where the row writes
/// state. When tools/bench gives the previous dataplane (bench.bpf.c built
/// against the lib/ of the commit before SYNs stopped writing state), its
/// rows are measured the same way on the same maps, alternating.
final class PathBench {
    let dataplane: Dataplane
    let baselineObject: BPFObject
    let benchObject: BPFObject
    let floor: BPFProgram
    let pass: BPFProgram
    let baselineNext: BPFProgram
    let baselineNextFlow: BPFProgram
    let current: Subject
    let previous: Subject?
    let state: ControlState
    let model: DataplaneModel
    let repeatCount: Int32
    let clients: Int32
    let trials = 5
    static let vip = "198.18.0.100"
    /// One build of the pipeline: its entry points.
    struct Subject {
        let label: String
        let object: BPFObject
        let pipeline: BPFProgram
        let nextClient: BPFProgram
        let nextFlow: BPFProgram
        init(label: String, object: BPFObject) throws {
            self.label = label
            self.object = object
            pipeline = try object.program("bench_pipeline")
            nextClient = try object.program("bench_next_client")
            nextFlow = try object.program("bench_next_flow")
        }
    }
    /// Addresses, all in 198.18.0.0/15: the hot flow's client, the flows
    /// that fill the flow table (from 198.18.3.0 port 0 on, every source
    /// port: the cold row cycles through the first `coldFlows`; the rest
    /// from 198.18.3.4 on), then
    /// blocks of `clients` addresses from 198.18.4.0: the known clients,
    /// then a block per trial for each dataplane's new clients.
    static let hotClient = "198.18.2.1"
    static let coldFirst: UInt32 = 0xC612_0300
    /// Fewer than the table holds: cycling through more entries than an
    /// LRU keeps misses every time (each miss's insert pushes out the next
    /// flow of the cycle). The rest of the fill stays untouched.
    static let coldFlows = 7 * 32_768
    static let fillFlows = 4 * 65_536
    static let firstClient: UInt32 = 0xC612_0400
    /// Client blocks the rows use: known + new per trial for 2 dataplanes.
    static func blocks(trials: Int) -> Int { 1 + 2 * trials }
    /// Records fill groups no service uses: 8 x 131,072 = the table's size.
    static let fillerGroups: ClosedRange<UInt32> = 1000...1007

    init(
        pinRoot: String, repeat repeatCount: Int32, clients: Int32, previousObject: String?, previousLabel: String
    )
        throws
    {
        BPFFS.removeTree(pinRoot)
        dataplane = try Dataplane(pinRoot: pinRoot)
        baselineObject = try BPFObject(bytes: Objects.baseline, name: "baseline", pinRoot: nil)
        try baselineObject.load()
        floor = try baselineObject.program("baseline_swap")
        pass = try baselineObject.program("xdp_pass")
        benchObject = try dataplane.companion(bytes: Objects.bench, name: "bench")
        current = try Subject(label: "", object: benchObject)
        baselineNext = try benchObject.program("bench_baseline_next_client")
        baselineNextFlow = try benchObject.program("bench_baseline_next_flow")
        if let previousObject {
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: previousObject)))
            previous = try Subject(
                label: " (\(previousLabel), before)", object: dataplane.companion(bytes: bytes, name: "previous"))
        } else {
            previous = nil
        }
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

    /// Median of `trials` runs of each (program, frame, verdict), taken in
    /// turn so that drift in the machine hits all alike.
    func medians(_ subjects: [(BPFProgram, [UInt8], Verdict)], count: Int32) throws -> [Double] {
        var samples = [[Double]](repeating: [], count: subjects.count)
        for _ in 0..<trials {
            for (i, s) in subjects.enumerated() { samples[i].append(try run(s.0, s.1, expect: s.2, count: count)) }
        }
        return samples.map(Self.median)
    }

    static func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

    /// The first address of client block `index` (see `firstClient`).
    func block(_ index: Int) -> UInt32 { Self.firstClient + UInt32(index) * UInt32(clients) }

    /// The frame bench_next_client turns into a packet of the block's first client.
    func before(_ blockStart: UInt32, sport: UInt16, flags: UInt8) -> [UInt8] {
        frame(Self.address(blockStart - 1), port: 80, sport: sport, flags: flags)
    }

    /// Fills the record table (every group but the benchmark's; then the
    /// known clients' records, real 4, in group 1) and the flow table (the
    /// cold row's flows). Returns (records, flows) present.
    func fillTables() throws -> (records: Int, flows: Int) {
        // The hot flow, whose entry is the template of the cold ones.
        let hot = frame(Self.hotClient, port: 80, flags: TCPFlags.ack)
        _ = try dataplane.program.testRun(packet: hot)
        guard let template = dataplane.flowKeys().first else {
            throw DataplaneError(description: "the hot flow was not written")
        }
        var records = 0
        for group in Self.fillerGroups {
            records = try dataplane.fillRecords(count: 131_072, group: group, real: 1, firstClient: 0xC612_0000)
        }
        records = try dataplane.fillRecords(count: Int(clients), group: 1, real: 4, firstClient: block(0))
        // The flows the cold row never touches first, so they are the
        // least recently used: the few entries an LRU table gives up to
        // its per-CPU free lists come from them, and a cycle flow that
        // missed would push out one of them, not the next of the cycle.
        let untouched = Self.fillFlows - Self.coldFlows
        _ = try dataplane.fillFlows(like: template, count: untouched, firstClient: Self.coldFirst + 4)
        var flows = try dataplane.fillFlows(like: template, count: Self.coldFlows, firstClient: Self.coldFirst)
        _ = try dataplane.program.testRun(packet: hot)  // back in, if the fill pushed it out
        flows = dataplane.flowCount()
        return (records, flows)
    }

    func measure(into table: inout ResultTable) throws {
        let r = repeatCount, n = clients
        let tables = dataplane.tableSizes
        let filled = try fillTables()
        let full = "full tables"
        let fill =
            "tables filled first (\(filled.flows) of \(tables.flows) flows, \(filled.records) of \(tables.records) records): every insert evicts"
        let subjects = [current] + (previous.map { [$0] } ?? [])
        let method = "repeat \(r), median of \(trials) alternating"

        // Stateless: the same frame again and again.
        let hot = frame(Self.hotClient, port: 80, flags: TCPFlags.ack)
        var stateless: [(BPFProgram, [UInt8], Verdict)] = [
            (floor, hot, .tx), (pass, hot, .pass),
            (dataplane.program, frame(Self.hotClient, port: 22, dst: "198.18.0.200"), .pass),
            (dataplane.program, frame(Self.hotClient, port: 80, dst: "198.18.0.200"), .pass)
        ]
        stateless += subjects.map { ($0.pipeline, hot, .tx) }
        let s = try medians(stateless, count: r)
        let base = s[0]
        table.add("floor: swap MACs, XDP_TX", ns: base, baseline: nil, method: method)
        table.add("XDP_PASS (a program that only returns it)", ns: s[1], baseline: base, method: method)
        table.add("non-VIP pass, port no service uses", ns: s[2], baseline: base, method: method)
        table.add("non-VIP pass, port 80 of another address", ns: s[3], baseline: base, method: method)
        for (i, subject) in subjects.enumerated() {
            table.add(
                "established, hot (one flow)\(subject.label), \(full)", ns: s[4 + i], baseline: base,
                method: method)
        }

        // Established over the whole flow table: each run another flow.
        let coldCount = Int32(Self.coldFlows)
        let coldFrame = frame(Self.address(Self.coldFirst - 1), port: 80, sport: 65535, flags: TCPFlags.ack)
        let newFlowsBefore = dataplane.counters(service: httpID).newFlows
        let cold = try medians(
            [(baselineNextFlow, coldFrame, .tx)] + subjects.map { ($0.nextFlow, coldFrame, .tx) }, count: coldCount)
        let coldMisses = dataplane.counters(service: httpID).newFlows - newFlowsBefore
        let coldRuns = UInt64(coldCount) * UInt64(trials * subjects.count)
        let coldNote =
            "repeat \(coldCount), +1 source port per run: \(Self.coldFlows) flows cycling (of the \(Self.fillFlows) filled), median of \(trials) alternating; "
            + "\(coldMisses) of \(coldRuns) packets missed their flow"
        table.add("floor: +1 source port, swap MACs, XDP_TX", ns: cold[0], baseline: base, method: coldNote)
        for (i, subject) in subjects.enumerated() {
            table.add(
                "established, cold (\(Self.coldFlows) flows cycling)\(subject.label), \(full)", ns: cold[1 + i],
                baseline: base, method: coldNote + "; " + fill)
        }

        // New clients: each trial its own block, per dataplane; the
        // known clients (block 0, records to real 4) on a new source port
        // each trial, so each of their SYNs and ACKs starts a new flow.
        let syn = TCPFlags.syn, ack = TCPFlags.ack
        var floorNext: [Double] = []
        var synNew = [[Double]](repeating: [], count: subjects.count)
        var ackNew = synNew, synKnown = synNew, ackKnown = synNew
        var checks = [String](repeating: "", count: subjects.count)
        var knownHits = [UInt64](repeating: 0, count: subjects.count)
        let countersBefore = dataplane.tableCounters()
        var synWrites: (stateless: UInt64, remembered: UInt64) = (0, 0)
        for t in 0..<trials {
            floorNext.append(
                try run(baselineNext, before(block(1 + t), sport: 40000, flags: syn), expect: .tx, count: n))
            // Each trial another dataplane goes first.
            for i in subjects.indices.map({ ($0 + t) % subjects.count }) {
                let subject = subjects[i]
                let newBlock = block(1 + t + i * trials)
                let c0 = dataplane.tableCounters()
                synNew[i].append(
                    try run(subject.nextClient, before(newBlock, sport: 40000, flags: syn), expect: .tx, count: n))
                let c1 = dataplane.tableCounters()
                if i == 0 {
                    synWrites.stateless += c1.synStateless - c0.synStateless
                    synWrites.remembered += c1.synRemembered - c0.synRemembered
                }
                ackNew[i].append(
                    try run(subject.nextClient, before(newBlock, sport: 40000, flags: ack), expect: .tx, count: n))
                let sport = UInt16(41000 + t * 2 + i)
                let real4 = dataplane.counters(service: httpID, real: 4).packets
                synKnown[i].append(
                    try run(subject.nextClient, before(block(0), sport: sport, flags: syn), expect: .tx, count: n))
                knownHits[i] += dataplane.counters(service: httpID, real: 4).packets - real4
                ackKnown[i].append(
                    try run(subject.nextClient, before(block(0), sport: sport, flags: ack), expect: .tx, count: n))
            }
        }
        let countersAfter = dataplane.tableCounters()
        for i in subjects.indices {
            checks[i] = "\(knownHits[i]) of \(Int(n) * trials) SYNs went to their record's real"
        }
        let stateful =
            "repeat \(n), +1 source address per run (a new client each), median of \(trials) alternating (each trial another dataplane first), new clients each trial"
        let floorNextMedian = Self.median(floorNext)
        table.add("floor: +1 source address, swap MACs, XDP_TX", ns: floorNextMedian, baseline: base, method: stateful)
        let written =
            "SYNs given no state: \(synWrites.stateless), remembered: \(synWrites.remembered); "
            + "full-table writes: \(countersAfter.flowsWrittenFull - countersBefore.flowsWrittenFull) flows, "
            + "\(countersAfter.recordsWrittenFull - countersBefore.recordsWrittenFull) records"
        for (i, subject) in subjects.enumerated() {
            let l = subject.label
            let sn = Self.median(synNew[i]), an = Self.median(ackNew[i])
            let sk = Self.median(synKnown[i]), ak = Self.median(ackKnown[i])
            let now = i == 0
            table.add(
                "SYN, new client\(l), \(full)", ns: sn, baseline: base,
                method: stateful + "; "
                    + (now
                        ? "no flow lookup, record lookup misses, writes nothing; " + written
                        : "flow and record lookups miss, writes record + flow")
                    + "; " + fill)
            table.add(
                "SYN, known client (record hit)\(l), \(full)", ns: sk, baseline: base,
                method: stateful + ", same clients each trial on a new port; "
                    + (now ? "record hit, writes nothing" : "flow lookup misses, record hit, writes flow")
                    + "; " + checks[i])
            table.add(
                "first ACK, new client\(l), \(full)", ns: an, baseline: base,
                method: stateful + ", the SYN row's clients in the same order; "
                    + (now ? "flow and record lookups miss, writes record + flow" : "flow hit (written by its SYN)"))
            table.add(
                "first ACK, known client\(l), \(full)", ns: ak, baseline: base,
                method: stateful + ", the known SYN row's clients; "
                    + (now ? "flow lookup misses, record hit, writes flow" : "flow hit (written by its SYN)"))
            table.add(
                "connection, new client: SYN + first ACK\(l), \(full)", ns: sn + an, baseline: base,
                method: "sum of the two rows' medians")
            table.add(
                "connection, known client: SYN + first ACK\(l), \(full)", ns: sk + ak, baseline: base,
                method: "sum of the two rows' medians")
        }
    }

    /// The :80 service's id.
    var httpID: UInt32 { model.services.first { $0.port == 80 }!.id }
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
