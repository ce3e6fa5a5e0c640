import Model
import Configuration
import Frames
@testable import Dataplane
import TandemABI
import TestSupport
import Testing

/// The record fields record sync relies on: who wrote a record and when
/// the choice was made, and records installed from a peer.
@Suite("Synced records in the dataplane", .enabled(if: Privilege.enabled, Comment(rawValue: Privilege.reason)))
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
}
