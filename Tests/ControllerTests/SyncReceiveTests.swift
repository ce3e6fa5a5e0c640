import Configuration
import Control
import Dataplane
import Foundation
import Logging
import Model
import NIOPosix
import NodeSync
import Sync
import Testing

@testable import Controller

/// Records a peer sent, through the controller: installed only where this
/// node's own state allows, named by the model committed last.
@Suite("Synced records through the controller")
struct SyncReceiveTests {
    static let group = ServiceKey(vip: IPAddress("198.18.0.100")!, port: 80, proto: .tcp)
    static let https = ServiceKey(vip: IPAddress("198.18.0.100")!, port: 443, proto: .tcp)

    /// Record sync attached as `tandem serve` does, with a secret of its own.
    static func attachSync(_ h: Harness) async throws -> NodeSync {
        let secret = FileManager.default.temporaryDirectory.appendingPathComponent("tandem-secret-\(UUID())").path
        try Data(repeating: 0x61, count: 32).write(to: URL(fileURLWithPath: secret))
        chmod(secret, 0o600)
        defer { unlink(secret) }
        let settings = Config.Sync(
            listen: Endpoint("127.0.0.1:7946")!, peers: [Endpoint("127.0.0.2:7946")!], secretFile: secret)
        let controller = h.controller
        let sync = try NodeSync(
            settings, node: "lb1", dataplane: h.dataplane,
            install: { records, peer in await controller.installSynced(records, from: peer) },
            group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "test"))
        await controller.attachSync(sync)
        return sync
    }

    static func record(_ client: String, on real: String, service: ServiceKey = https) -> SyncRecord {
        SyncRecord(
            group: group, service: service, client: IPAddress(client)!, real: IPAddress(real)!,
            writtenNs: UInt64(Date().timeIntervalSince1970 * 1e9))
    }

    @Test("a peer's record is installed when its real is usable here, refused when the real is down here")
    func installOnlyUsable() async throws {
        let h = try await Harness.start(HealthCommitTests.yaml)
        _ = try await Self.attachSync(h)
        let group = try #require(await h.controller.state.groupID("shop-http"))

        var result = await h.controller.installSynced([Self.record("198.18.10.1", on: "198.18.0.21")], from: "lb2")
        #expect(result.installed == 1 && result.rejected.isEmpty)
        let installed = try #require(h.dataplane.record(group: group, client: IPAddress("198.18.10.1")!))
        #expect(installed.valid && installed.origin == NodeSync.nodeID("lb2"))
        let listing = try #require(await h.controller.handle(.listRecords(.init())).records)
        #expect(listing.map(\.node) == ["lb2"], "the listing names the writer")

        // 198.18.0.22 fails here: the peer's opinion of it does not count.
        await h.check("shop-http", "198.18.0.22", up: false)
        result = await h.controller.installSynced([Self.record("198.18.10.2", on: "198.18.0.22")], from: "lb2")
        #expect(result.installed == 0 && result.rejected == [.realNotUsable: 1])
        #expect(h.dataplane.record(group: group, client: IPAddress("198.18.10.2")!) == nil)

        // An unknown group is refused too.
        let stranger = SyncRecord(
            group: ServiceKey(vip: IPAddress("198.18.9.9")!, port: 80, proto: .tcp),
            service: ServiceKey(vip: IPAddress("198.18.9.9")!, port: 80, proto: .tcp),
            client: IPAddress("198.18.10.3")!, real: IPAddress("198.18.0.21")!, writtenNs: 1)
        result = await h.controller.installSynced([stranger], from: "lb2")
        #expect(result.rejected == [.unknownGroup: 1])
    }

    @Test("a live record of this node's own is kept against an older one from a peer")
    func localWins() async throws {
        let h = try await Harness.start(HealthCommitTests.yaml)
        _ = try await Self.attachSync(h)
        let state = await h.controller.state
        let group = state.groupID("shop-http")!
        let real21 = state.ids.reals[RealKey(group: group, address: IPAddress("198.18.0.21")!)]!
        h.dataplane.clientWrites(
            group: group, client: IPAddress("198.18.10.1")!, real: real21, service: state.serviceID("shop-http")!)
        var older = Self.record("198.18.10.1", on: "198.18.0.22")
        older.writtenNs = 1_000_000_000
        let result = await h.controller.installSynced([older], from: "lb2")
        #expect(result.rejected == [.olderThanLocal: 1])
        #expect(h.dataplane.record(group: group, client: IPAddress("198.18.10.1")!)?.real == real21)
    }

    @Test("with sync, VIPs wait for the peers' tables; once pulled they are announced")
    func announceWaitsForPull() async throws {
        let h = try await Harness.start(HealthCommitTests.yaml)
        _ = try await Self.attachSync(h)
        #expect(h.announced(in: 100).isEmpty)
        #expect(h.announcer.report(HealthCommitTests.shop).reason == "starting: pulling the peers' records")
        h.announcer.setPullDone(true)
        #expect(h.announced(in: 100) == [HealthCommitTests.shop, HealthCommitTests.api])
    }
}
