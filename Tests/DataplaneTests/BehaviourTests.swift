import Configuration
@testable import Dataplane
import Frames
import Model
import TandemABI
import TestSupport
import TestTraits
import Testing

/// Multi-packet behaviour (docs/design/packet-path.md): flows, persistence, port following,
/// failure and its O(1) invalidation, drain, schedulers.
@Suite("Dataplane behaviour", .privileged)
struct BehaviourTests {
    static let vip = "198.18.0.100"
    static let client = "198.18.10.7"

    func syn(
        _ port: UInt16, sport: UInt16 = 40000, client: String = client, proto: UInt8 = 6,
        vip: String = vip
    ) -> PacketSpec {
        PacketSpec(src: client, dst: vip, proto: proto, sport: sport, dport: port)
    }

    func ack(_ port: UInt16, sport: UInt16 = 40000, client: String = client) -> PacketSpec {
        PacketSpec(src: client, dst: Self.vip, sport: sport, dport: port, tcpFlags: TCPFlags.ack)
    }

    @Test("new flow: scheduled by maglev, counted, flow and record written")
    func newFlow() throws {
        let rig = try Rig()
        let r = try rig.connect(syn(80))
        #expect(r.verdict == .tx)
        #expect(r.real == rig.scheduled(service: 0, client: Self.client))
        let sc = rig.dataplane.counters(service: 0)
        // SYN and ACK forwarded; one new flow, written by the ACK.
        #expect(sc.packets == 2 && sc.newFlows == 1 && sc.persistHits == 0 && sc.bytes == UInt64(2 * r.input.count))
        #expect(rig.dataplane.counters(real: r.real!).newFlows == 1)
        #expect(rig.dataplane.flowCount() == 1)
        let records = rig.dataplane.records()
        #expect(records.count == 1)
        #expect(records.first?.real == r.real && records.first?.service == 0 && records.first?.valid == true)
        #expect(records.first?.client == IPAddress(Self.client))
    }

    @Test("a real's counters are per service: traffic to :80 leaves its :443 line at 0")
    func countersPerService() throws {
        let rig = try Rig()
        let first = try rig.connect(syn(80))
        for _ in 0..<4 { _ = try rig.send(ack(80)) }
        let real = try #require(first.real)
        let http = rig.dataplane.counters(service: 0, real: real)
        #expect(http.packets == 6 && http.newFlows == 1 && http.bytes == UInt64(6 * first.input.count))
        #expect(rig.dataplane.counters(service: 1, real: real) == Counters())
        #expect(rig.dataplane.counters(service: 2, real: real) == Counters())

        // The client's :443 connection follows to the same real: counted
        // there as a follow hit, and only there.
        #expect(try rig.connect(syn(443, sport: 40001)).real == real)
        let https = rig.dataplane.counters(service: 1, real: real)
        #expect(https.packets == 2 && https.followHits == 1)
        #expect(rig.dataplane.counters(service: 0, real: real).packets == 6)
        #expect(rig.dataplane.counters(real: real).packets == 8)
    }

    @Test("established flow keeps its real and is not a new flow")
    func established() throws {
        let rig = try Rig()
        let first = try rig.connect(syn(80))
        for _ in 0..<5 { #expect(try rig.send(ack(80)).real == first.real) }
        let sc = rig.dataplane.counters(service: 0)
        #expect(sc.packets == 7 && sc.newFlows == 1)
        #expect(rig.dataplane.tableCounters().flowsWritten == 1)
    }

    @Test("persistence: a second connection of the client goes to the same real")
    func persistenceHit() throws {
        let rig = try Rig()
        let first = try rig.connect(syn(80, sport: 40000))
        for sport in UInt16(40001)...40010 { #expect(try rig.connect(syn(80, sport: sport)).real == first.real) }
        let sc = rig.dataplane.counters(service: 0)
        #expect(sc.persistHits == 10 && sc.followHits == 0 && sc.newFlows == 11)
    }

    @Test("a live record beats the scheduler")
    func recordBeatsScheduler() throws {
        let rig = try Rig()
        let scheduled = rig.scheduled(service: 0, client: Self.client)
        let other = Topology.shopReals.first { $0 != scheduled }!
        try rig.seedRecord(service: 0, client: Self.client, real: other, ageNs: 60_000_000_000)
        #expect(try rig.connect(syn(80)).real == other)
        #expect(rig.dataplane.counters(service: 0).persistHits == 1)
    }

    @Test("port following: :443 (TCP and UDP) goes where :80 went, counted as follow hits")
    func follow() throws {
        let rig = try Rig()
        // Make :80 land on a real the :443 scheduler alone would not pick.
        let natural = rig.scheduled(service: 1, client: Self.client)
        let other = Topology.shopReals.first { $0 != natural }!
        try rig.seedRecord(service: 0, client: Self.client, real: other, ageNs: 0)
        let http = try rig.connect(syn(80))
        let https = try rig.connect(syn(443, sport: 40001))
        let quic = try rig.connect(syn(443, sport: 40002, proto: 17))
        #expect(http.real == other)
        #expect(https.real == other)
        #expect(quic.real == other)
        #expect(rig.dataplane.counters(service: 1).followHits == 1)
        #expect(rig.dataplane.counters(service: 2).followHits == 1)
        #expect(rig.dataplane.counters(real: other).followHits == 3 - 1)
    }

    @Test("an unlinked service on the same VIP does not follow")
    func unlinkedDoesNotFollow() throws {
        let rig = try Rig()
        _ = try rig.connect(syn(80))
        _ = try rig.connect(syn(8080, sport: 40001))
        let c = rig.dataplane.counters(service: 3)
        #expect(c.newFlows == 1 && c.persistHits == 0 && c.followHits == 0)
        #expect(rig.dataplane.records().count == 2, "one record per group")
    }

    @Test("an expired record is ignored and rewritten")
    func expired() throws {
        let rig = try Rig()
        let scheduled = rig.scheduled(service: 0, client: Self.client)
        let other = Topology.shopReals.first { $0 != scheduled }!
        try rig.seedRecord(
            service: 0, client: Self.client, real: other,
            ageNs: Topology.timeoutNs + 1_000_000_000)
        #expect(try rig.connect(syn(80)).real == scheduled)
        #expect(rig.dataplane.counters(service: 0).persistHits == 0)
        let record = try #require(rig.dataplane.records().first)
        #expect(record.real == scheduled && record.valid)
        #expect(TestClock.nowNs() - record.lastSeenNs < 10_000_000_000)
    }

    @Test("failure: records invalidated for the whole group, clients moved to one real on both ports")
    func failureMovesGroup() throws {
        let rig = try Rig()
        let clients = (1...40).map { "198.18.10.\($0)" }
        var before: [String: UInt32] = [:]
        for c in clients { before[c] = try rig.connect(syn(80, client: c)).real }
        let failed = before[clients[0]]!
        let affected = clients.filter { before[$0] == failed }
        try rig.fail(failed)
        #expect(rig.dataplane.records().filter { $0.real == failed }.allSatisfy { !$0.valid })

        for c in clients {
            // Checkout first this time: :443, then a new :80 connection.
            let https = try rig.connect(syn(443, sport: 50000, client: c))
            let http = try rig.connect(syn(80, sport: 50001, client: c))
            #expect(https.real != failed && https.real == http.real, "client \(c)")
            if before[c] != failed { #expect(https.real == before[c], "unaffected client \(c) keeps its real") }
        }
        #expect(!affected.isEmpty)
        // The old :80 connections of affected clients stay (drop-on-failure off).
        for c in affected { #expect(try rig.send(ack(80, client: c)).real == failed) }
    }

    @Test("a failed real's records stay invalid after it recovers: its quiet clients are scheduled anew")
    func invalidatedRecordsStayInvalid() throws {
        let rig = try Rig()
        // A client whose record points at a real the ring would not pick,
        // silent while that real fails and recovers.
        let scheduled = rig.scheduled(service: 0, client: Self.client)
        let other = Topology.shopReals.first { $0 != scheduled }!
        try rig.seedRecord(service: 0, client: Self.client, real: other, ageNs: 1_000_000_000)
        try rig.fail(other)
        try rig.recover(other)
        #expect(rig.model.services[0].backends.first { $0.real == other }?.state == .up)
        #expect(try rig.connect(syn(443)).real == scheduled, "the record written before the failure no longer counts")
        #expect(rig.dataplane.counters(service: 1).followHits == 0)
    }

    @Test("drop-on-failure also moves established flows off the failed real")
    func dropOnFailure() throws {
        let rig = try Rig()
        let first = try rig.connect(syn(8080))
        try rig.fail(first.real!)  // alt (:8080) has drop-on-failure
        let moved = try rig.send(ack(8080))
        #expect(moved.verdict == .tx && moved.real != first.real)
        // The flow written anew for the moved connection.
        #expect(rig.dataplane.tableCounters().flowsWritten == 2)
    }

    @Test("drain: the real keeps its clients but gets no new ones")
    func drain() throws {
        let rig = try Rig()
        let clients = (1...40).map { "198.18.11.\($0)" }
        var before: [String: UInt32] = [:]
        for c in clients { before[c] = try rig.connect(syn(80, client: c)).real }
        let drained = before[clients[0]]!
        try rig.drain(drained)
        for c in clients {
            #expect(try rig.connect(syn(443, sport: 41000, client: c)).real == before[c], "existing client \(c)")
        }
        for i in 1...40 {
            #expect(try rig.connect(syn(80, client: "198.18.12.\(i)")).real != drained, "new client")
        }
    }

    @Test("recovery: a real back up is scheduled again; records made meanwhile stay")
    func recovery() throws {
        let rig = try Rig()
        let first = try rig.connect(syn(80))
        try rig.fail(first.real!)
        let moved = try rig.connect(syn(80, sport: 40001))
        try rig.recover(first.real!)
        #expect(try rig.connect(syn(443, sport: 40002)).real == moved.real)
        let newcomers = try (1...60).map { try rig.connect(syn(80, client: "198.18.13.\($0)")).real! }
        #expect(newcomers.contains(first.real!))
    }

    @Test("IPv6 with /64 persistence: clients of one /64 share a real")
    func ipv6Netmask() throws {
        let rig = try Rig()
        let a = try rig.connect(syn(80, client: "2001:db8:10::7", vip: "2001:db8::100"))
        let b = try rig.connect(syn(80, client: "2001:db8:10::ffff:1", vip: "2001:db8::100"))
        #expect(a.verdict == .tx && a.real == b.real)
        #expect(rig.dataplane.counters(service: 4).persistHits == 1)
        #expect(rig.dataplane.records().first?.client == IPAddress("2001:db8:10::"))
    }

    @Test("wrr spreads new flows 3:1")
    func wrr() throws {
        let rig = try Rig()
        var counts: [UInt32: Int] = [:]
        for i in 0..<400 {
            let r = try rig.connect(syn(80, sport: UInt16(20000 + i), vip: "198.18.0.101"))
            counts[r.real!, default: 0] += 1
        }
        // Per-CPU cursors: exact per CPU, within a cycle or two overall.
        #expect(abs(counts[9, default: 0] - 300) <= 8 && abs(counts[10, default: 0] - 100) <= 8, "\(counts)")
    }

    @Test("fixed: the highest weight takes all; the next takes over on failure")
    func fixed() throws {
        let rig = try Rig()
        for i in 0..<20 { #expect(try rig.connect(syn(80, sport: UInt16(20000 + i), vip: "198.18.0.102")).real == 12) }
        try rig.fail(12)
        for i in 0..<20 { #expect(try rig.connect(syn(80, sport: UInt16(30000 + i), vip: "198.18.0.102")).real == 11) }
    }

    @Test("reload: a new real joins, clients with records stay, ring flips slot")
    func reloadAddsReal() throws {
        let rig = try Rig()
        let clients = (1...30).map { "198.18.14.\($0)" }
        var before: [String: UInt32] = [:]
        for c in clients { before[c] = try rig.connect(syn(80, client: c)).real }
        let ringBefore = rig.dataplane.services.lookup(tandem_service_key(rig.model.services[0]))!.ring_id
        try rig.reload { c in
            for s in 0...2 {
                c.services[s].reals.append(Config.Real(address: IPAddress("198.18.0.24")!, port: c.services[s].port))
            }
        }
        let added = try #require(rig.model.reals.first { $0.address == IPAddress("198.18.0.24")! }).id
        let ringAfter = rig.dataplane.services.lookup(tandem_service_key(rig.model.services[0]))!.ring_id
        #expect(ringBefore != ringAfter)
        for c in clients {
            #expect(
                try rig.connect(syn(443, sport: 42000, client: c)).real == before[c], "client \(c) follows its record")
        }
        let newcomers = try (1...60).map { try rig.connect(syn(80, client: "198.18.15.\($0)")).real! }
        #expect(newcomers.contains(added))
    }

    @Test("a real removed by reload loses its flows and records at once")
    func reloadRemovesReal() throws {
        let rig = try Rig()
        let first = try rig.connect(syn(80))
        let gone = first.real!
        let address = rig.model.real(gone)!.address
        try rig.reload { c in for s in 0...2 { c.services[s].reals.removeAll { $0.address == address } } }
        let next = try rig.send(ack(80))
        #expect(next.verdict == .tx && next.real != gone)
    }

    @Test("a removed service's established flows stop at once: the next packet passes")
    func removedServiceRetiresFlows() throws {
        let rig = try Rig()
        #expect(try rig.connect(syn(8080)).verdict == .tx)
        let original = rig.state.config
        try rig.reload { c in c.services.removeAll { $0.name == "alt" } }
        let after = PacketSpec(src: Self.client, dst: Self.vip, dport: 8080, tcpFlags: TCPFlags.ack)
        #expect(try rig.send(after).verdict == .pass)
        #expect(rig.reason(.passNotVIP) == 1)
        // Re-adding it under the same id starts clean.
        try rig.reload { c in c = original }
        #expect(try rig.send(after).verdict == .tx)
        #expect(rig.dataplane.counters(service: 3).packets == 1)
    }

    @Test("applying the same model twice writes nothing new and keeps every flow")
    func idempotentApply() throws {
        let rig = try Rig()
        let first = try rig.connect(syn(80))
        try rig.dataplane.apply(rig.model)
        #expect(try rig.send(ack(80)).real == first.real)
        #expect(rig.dataplane.counters(service: 0).packets == 3)
    }

    @Test("an invalid model is refused and changes nothing")
    func invalidModel() throws {
        let rig = try Rig()
        let first = try rig.connect(syn(80))
        var bad = rig.model
        bad.services[0].backends.append(.init(real: 999, weight: 1))
        bad.services[1].id = 0
        #expect(throws: DataplaneError.self) { try rig.dataplane.apply(bad) }
        #expect(try rig.send(ack(80)).real == first.real)
        #expect(rig.dataplane.applied == rig.model)
    }

    @Test("a second Dataplane on the same pins adopts flows, records and rings")
    func adopt() throws {
        let rig = try Rig()
        let first = try rig.connect(syn(80))
        let second = try Dataplane(pinRoot: rig.dataplane.pinRoot)
        try second.apply(rig.model)
        let again = try second.program.testRun(packet: ack(80).bytes)
        #expect(Array(again.output.prefix(6)) == Topology.mac(first.real!).bytes)
        #expect(second.records().count == 1 && second.counters(service: 0).packets == 3)
    }
}
