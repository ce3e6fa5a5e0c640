import Configuration
@testable import Dataplane
import Frames
import Model
import TandemABI
import TestSupport
import TestTraits
import Testing

/// The record fields record sync relies on: who wrote a record and when
/// the choice was made, and records installed from a peer.
@Suite("Synced records in the dataplane", .privileged)
struct SyncRecordTests {
    static let client = "198.18.10.7"

    func syn(_ port: UInt16, sport: UInt16 = 40000) -> PacketSpec {
        PacketSpec(src: Self.client, dst: "198.18.0.100", sport: sport, dport: port)
    }

    @Test(
        "a record the dataplane writes is this node's (origin 0), written when first seen; a refresh keeps the write time"
    )
    func writtenHere() throws {
        let rig = try Rig()
        let seen = try rig.seedRecord(
            service: 0, client: Self.client, real: Topology.shopReals[0], ageNs: 5_000_000_000)
        _ = try rig.connect(syn(443))
        let service = rig.model.services.first { $0.id == 0 }!
        let record = try #require(rig.dataplane.record(group: service.group, client: IPAddress(Self.client)!))
        #expect(record.origin == 0 && record.writtenNs == seen)
        #expect(record.lastSeenNs > seen, "the hit refreshed it")
        _ = try rig.connect(syn(80, sport: 40001))
        let fresh = try #require(rig.dataplane.record(group: service.group, client: IPAddress(Self.client)!))
        #expect(fresh.writtenNs == seen)
    }

    @Test("an installed record is followed by every port of the group and names its node")
    func installed() throws {
        let rig = try Rig()
        let natural = rig.scheduled(service: 1, client: Self.client)
        let other = Topology.shopReals.first { $0 != natural }!
        let service = rig.model.services.first { $0.id == 0 }!
        let now = TestClock.nowNs()
        try rig.dataplane.installRecords([
            .init(
                group: service.group, client: IPAddress(Self.client)!, real: other,
                recGen: rig.model.real(other)!.recGen, service: 0, origin: 0xABCD, lastSeenNs: now,
                writtenNs: now - 1000)
        ])
        #expect(try rig.connect(syn(443)).real == other)
        #expect(rig.dataplane.counters(service: 1).followHits == 1)
        let record = try #require(rig.dataplane.record(group: service.group, client: IPAddress(Self.client)!))
        #expect(record.origin == 0xABCD && record.writtenNs == now - 1000 && record.valid)
        // Installed with a generation the real no longer has: dead on arrival.
        try rig.dataplane.installRecords([
            .init(
                group: service.group, client: IPAddress("198.18.10.8")!, real: other,
                recGen: rig.model.real(other)!.recGen &+ 1, service: 0, origin: 1, lastSeenNs: now, writtenNs: now)
        ])
        #expect(rig.dataplane.record(group: service.group, client: IPAddress("198.18.10.8")!)?.valid == false)
    }

    @Test(
        "record writes reach the reader: one event at a new client's first ACK, none for a record hit, one when its real failed"
    )
    func recordEvents() throws {
        let rig = try Rig()
        let events = try rig.dataplane.recordEvents()
        let service = rig.model.services.first { $0.id == 0 }!
        let client = IPAddress(Self.client)!
        let https = rig.model.services.first { $0.port == 443 }!.id

        _ = try rig.send(syn(443))
        #expect(try events.drain().isEmpty, "a SYN writes no record")
        var ack = syn(443)
        ack.tcpFlags = TCPFlags.ack
        let first = try rig.send(ack)
        let written = try events.drain()
        let record = try #require(rig.dataplane.record(group: service.group, client: client))
        #expect(
            written == [
                .init(
                    group: service.group, client: client, real: record.real, service: https, writtenNs: record.writtenNs
                )
            ])
        #expect(first.real == record.real)

        // Same client again, on the other port of the group: a follow hit.
        _ = try rig.connect(syn(80, sport: 40001))
        _ = try rig.connect(syn(443, sport: 40002))
        #expect(try events.drain().isEmpty, "a hit on an unchanged record writes nothing")

        // Its real fails: the next connection is rescheduled and written.
        try rig.fail(record.real)
        let moved = try rig.connect(syn(443, sport: 40003))
        let again = try events.drain()
        let now = try #require(rig.dataplane.record(group: service.group, client: client))
        #expect(moved.real != record.real && now.real == moved.real)
        #expect(
            again == [
                .init(group: service.group, client: client, real: now.real, service: https, writtenNs: now.writtenNs)
            ]
        )
        #expect(rig.dataplane.recordEventsLostCount() == 0)
    }

    @Test("an installed record makes no event: records from peers are not sent back")
    func installedMakesNoEvent() throws {
        let rig = try Rig()
        let events = try rig.dataplane.recordEvents()
        let service = rig.model.services.first { $0.id == 0 }!
        let real = Topology.shopReals[1]
        let now = TestClock.nowNs()
        try rig.dataplane.installRecords([
            .init(
                group: service.group, client: IPAddress(Self.client)!, real: real,
                recGen: rig.model.real(real)!.recGen, service: 0, origin: 7, lastSeenNs: now, writtenNs: now)
        ])
        #expect(try rig.connect(syn(443)).real == real)
        #expect(try events.drain().isEmpty)
    }

    @Test(
        "a full event ring buffer loses events, not records: every client is written and the lost count says how many events went"
    )
    func fullRingLosesEvents() throws {
        let rig = try Rig()
        let events = try rig.dataplane.recordEvents()
        let service = rig.model.services.first { $0.id == 0 }!
        let https = rig.model.services.first { $0.port == 443 }!.id
        // The ring (1 MB) holds some 21,000 events; nobody reads it meanwhile.
        let clients = (0..<24_000).map { IPAddress(bytes: [198, 19, UInt8($0 >> 8), UInt8($0 & 0xFF)])! }
        for client in clients {
            var ack = PacketSpec(src: client.description, dst: "198.18.0.100", sport: 40000, dport: 443)
            ack.tcpFlags = TCPFlags.ack
            _ = try rig.send(ack)
        }
        let read = try events.drain()
        let lost = rig.dataplane.recordEventsLostCount()
        #expect(lost > 0 && read.count < clients.count, "the ring was full: \(read.count) read, \(lost) lost")
        #expect(UInt64(read.count) + lost == UInt64(clients.count), "every write is read or counted as lost")
        #expect(read.allSatisfy { $0.service == https })
        let written = clients.filter { rig.dataplane.record(group: service.group, client: $0) != nil }.count
        #expect(written == clients.count, "every client has its record")
    }
}
