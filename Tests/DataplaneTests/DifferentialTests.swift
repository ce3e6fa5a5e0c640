import ReferenceDataplane
import Configuration
@testable import Dataplane
import Foundation
import Frames
import Glibc
import Model
import TandemABI
import TestSupport
import TestTraits
import Testing

/// SplitMix64: a seeded generator, so a failing run can be replayed.
struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Generated and mutated frames: mostly plausible traffic to the
/// topology's services, so flows, records, follows and failures all occur,
/// and a share broken in every way the parser must survive.
struct FrameGenerator {
    var rng: SeededRandom
    let vips4 = ["198.18.0.100", "198.18.0.101", "198.18.0.102", "198.18.0.103", "198.18.0.104"]

    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }
    mutating func pick<T>(_ items: [T]) -> T { items.randomElement(using: &rng)! }
    mutating func int(_ r: ClosedRange<Int>) -> Int { Int.random(in: r, using: &rng) }

    mutating func frame() -> [UInt8] {
        let v6 = chance(0.2)
        let client =
            v6
            ? "2001:db8:20::\(String(int(0...3), radix: 16)):\(String(int(1...40), radix: 16))"
            : "198.18.20.\(int(1...60))"
        let dst =
            v6
            ? (chance(0.8) ? "2001:db8::100" : "2001:db8::200")
            : (chance(0.85) ? pick(vips4) : "198.18.0.200")
        let proto: UInt8 = chance(0.7) ? 6 : (chance(0.7) ? 17 : pick([1, 47, 58]))
        var p = PacketSpec(
            src: client, dst: dst, proto: proto,
            sport: UInt16(40000 + int(0...63)),
            dport: chance(0.85) ? pick([80, 443, 8080]) : UInt16(int(1...65535)))
        p.tcpFlags = pick([
            TCPFlags.syn, TCPFlags.syn, TCPFlags.ack, TCPFlags.syn | TCPFlags.ack,
            TCPFlags.fin | TCPFlags.ack, TCPFlags.rst, 0x18
        ])
        p.payload = (0..<int(0...40)).map { _ in UInt8(int(0...255)) }
        if chance(0.3) { mutate(&p) }
        var bytes = p.bytes
        if chance(0.08) { bytes = Array(bytes.prefix(int(14...bytes.count))) }
        if chance(0.08) {
            for _ in 0..<int(1...3) { bytes[int(12...min(bytes.count - 1, 80))] = UInt8(int(0...255)) }
        }
        return bytes
    }

    mutating func mutate(_ p: inout PacketSpec) {
        switch int(0...6) {
        case 0: if p.dst.family == .inet { p.ipOptions = Array(repeating: 1, count: 4 * int(1...10)) }
        case 1: p.fragment = pick([0x2000, 0x0001, 0x4000, 0x2001, 0x1FFF])
        case 2: p.vlan = UInt16(int(1...4094))
        case 3: p.ipv6Ext = pick([0, 43, 44, 59, 60, 51])
        case 4: p.lengthDelta = int(-30...30)
        case 5: p.ihlOverride = UInt8(int(0...15))
        default: p.etherType = pick([0x0800, 0x86DD, 0x0806, 0x88A8, 0x1234])
        }
    }
}

@Suite("Differential: XDP program vs Swift model", .privileged)
struct DifferentialTests {
    static let packets = 120_000

    /// Seeds run by default; TANDEM_DIFF_SEED=n runs only n (to replay one).
    static let seeds: [UInt64] =
        ProcessInfo.processInfo.environment["TANDEM_DIFF_SEED"].flatMap { UInt64($0) }
        .map { [$0] } ?? [0x7A4D_E3, 1, 2, 3]

    @Test("generated and mutated frames: identical verdicts, bytes, tables and counters", arguments: seeds)
    func differential(seed: UInt64) throws {
        // wrr cursors are per CPU: keep every run on one CPU, as the model has one cursor.
        #expect(throws: Never.self) { try CPUAffinity.pin(to: 0) }
        defer { try? CPUAffinity.pin(to: nil) }

        var gen = FrameGenerator(rng: SeededRandom(state: seed))
        let rig = try Rig()
        var ref = ReferenceModel()
        ref.apply(rig.model)

        var mismatches: [String] = []
        var verdicts: [Verdict: Int] = [:]
        for i in 0..<Self.packets {
            if i > 0 && i % 6000 == 0 {
                try changeState(rig: rig, gen: &gen, ref: &ref)
                ref.apply(rig.model, changedAt: ringChangeTimes(rig))
            }
            let frame = gen.frame()
            let now = TestClock.nowNs()
            let got = try rig.send(bytes: frame)
            let (verdict, output) = ref.process(frame, now: now)
            verdicts[got.verdict, default: 0] += 1
            if got.verdict != verdict || got.output != output {
                mismatches.append(
                    "packet \(i) (seed \(seed)): program \(got.verdict), model \(verdict); "
                        + "frame \(frame.map { String(format: "%02x", $0) }.joined())")
                if mismatches.count >= 10 { break }
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) divergences:\n\(mismatches.joined(separator: "\n"))")
        // The run must have exercised every outcome.
        #expect(
            verdicts[.tx, default: 0] > 10_000 && verdicts[.pass, default: 0] > 1_000
                && verdicts[.drop, default: 0] > 1_000, "\(verdicts)")

        // Tables: the same flows and the same records.
        let programFlows = Dictionary(
            rig.dataplane.flows.entries().map { (flowKey($0.0), $0.1.real) },
            uniquingKeysWith: { a, _ in a })
        #expect(programFlows.count == ref.flows.count)
        #expect(ref.flows.allSatisfy { programFlows[$0.key] == $0.value.real })
        let programRecords = Dictionary(
            rig.dataplane.persist.entries().map {
                (
                    ReferenceModel.PersistKey(group: $0.0.group, client: clientBytes($0.0)),
                    ($0.1.real, $0.1.service, $0.1.rec_gen)
                )
            }, uniquingKeysWith: { a, _ in a })
        #expect(programRecords.count == ref.records.count)
        let programChoices = Dictionary(
            rig.dataplane.synChoices.entries().map { (flowKey($0.0), $0.1.real) }, uniquingKeysWith: { a, _ in a })
        #expect(programChoices == ref.synChoices)
        #expect(
            ref.records.allSatisfy { k, r in
                programRecords[k].map { $0 == (r.real, r.service, r.recGen) } ?? false
            })
        // Counters.
        for s in rig.model.services {
            #expect(rig.dataplane.counters(service: s.id) == ref.serviceCounters[s.id], "service \(s.id)")
        }
        let reasons = rig.dataplane.packetReasons()
        for r in PacketReason.allCases { #expect(reasons[r] == ref.reasons[r, default: 0], "reason \(r)") }
    }

    /// When each service's ring last changed, as the dataplane stamped it.
    func ringChangeTimes(_ rig: Rig) -> [UInt32: UInt64] {
        Dictionary(
            rig.dataplane.services.entries().map { ($0.1.id, $0.1.ring_changed_ns) }, uniquingKeysWith: { a, _ in a })
    }

    /// Fail, recover, drain, reweigh, remove or add a real, as a controller would.
    func changeState(rig: Rig, gen: inout FrameGenerator, ref: inout ReferenceModel) throws {
        let pool: [UInt32] = [1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12]
        let real = gen.pick(pool)
        switch gen.int(0...5) {
        case 0: try rig.fail(real)
        case 1: try rig.recover(real)
        case 2: try rig.drain(real)
        case 3:
            let (address, names) = rig.services(of: real)
            let weight = UInt32(gen.int(0...4))
            try rig.reload { c in
                for s in c.services.indices where names.contains(c.services[s].name) {
                    for r in c.services[s].reals.indices where c.services[s].reals[r].address == address {
                        c.services[s].reals[r].weight = weight
                    }
                }
            }
        case 4:
            // A fourth real joins the shop group, or leaves it.
            let extra = IPAddress("198.18.0.24")!
            try rig.reload { c in
                for s in 0...2 {
                    if c.services[s].reals.contains(where: { $0.address == extra }) {
                        c.services[s].reals.removeAll { $0.address == extra }
                    } else {
                        c.services[s].reals.append(Config.Real(address: extra, port: c.services[s].port, weight: 2))
                    }
                }
            }
        default:
            // Records the scheduler would not have written: live, just
            // expired, or long expired, on any real of the group.
            for _ in 0..<8 {
                let client = "198.18.20.\(gen.int(1...60))", real = gen.pick([UInt32(1), 2, 3])
                let age = gen.pick([Topology.timeoutNs * 2, Topology.timeoutNs + 1_000_000_000, 5_000_000_000])
                let lastSeen = try rig.seedRecord(service: 0, client: client, real: real, ageNs: age)
                ref.records[.init(group: 1, client: IPAddress(client)!.bytes)] =
                    .init(real: real, recGen: rig.model.real(real)!.recGen, service: 0, lastSeen: lastSeen)
            }
        }
    }
}

private func flowKey(_ k: tandem_flow_key) -> ReferenceModel.FlowKey {
    let n = k.af == 4 ? 4 : 16
    return .init(
        src: Array(withUnsafeBytes(of: k.src) { Array($0) }.prefix(n)),
        dst: Array(withUnsafeBytes(of: k.dst) { Array($0) }.prefix(n)),
        sport: k.sport, dport: k.dport, proto: k.proto)
}

private func clientBytes(_ k: tandem_persist_key) -> [UInt8] {
    Array(withUnsafeBytes(of: k.client) { Array($0) }.prefix(k.af == 4 ? 4 : 16))
}
