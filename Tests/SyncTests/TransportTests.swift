import Logging
import Model
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TestSupport
import Testing

@testable import Sync

/// A node's record table in memory, under the same rules as the controller.
final class MemoryStore: SyncStore, @unchecked Sendable {
    let rules: SyncRules
    let table = NIOLockedValueBox<[SyncRecord]>([])
    init(model: DataplaneModel = Fixture.model(), records: [SyncRecord] = []) {
        rules = SyncRules(model: model)
        table.withLockedValue { $0 = records }
    }

    func apply(_ records: [SyncRecord], from node: String) async -> (installed: Int, rejected: [Rejection: Int]) {
        table.withLockedValue { t in
            var installed = 0
            var rejected: [Rejection: Int] = [:]
            for r in records {
                let i = t.firstIndex { $0.group == r.group && $0.client == r.client }
                let local = i.map { SyncRules.Local(real: t[$0].real, writtenNs: t[$0].writtenNs, live: true) }
                switch rules.decide(r, local: local) {
                case .install:
                    if let i { t[i] = r } else { t.append(r) }
                    installed += 1
                case .unchanged: break
                case .reject(let why): rejected[why, default: 0] += 1
                }
            }
            return (installed, rejected)
        }
    }

    func forEachRecordBatch(_ body: ([SyncRecord]) throws -> Void) async throws {
        let all = table.withLockedValue { $0 }
        for start in stride(from: 0, to: all.count, by: 1000) {
            try body(Array(all[start..<min(start + 1000, all.count)]))
        }
    }
}

@Suite("Sync transport on loopback")
struct TransportTests {
    static func node(
        _ name: String, port: Int, peer: Int, store: MemoryStore, secret: [UInt8] = Fixture.secret
    )
        async throws -> SyncTransport
    {
        let engine = SyncEngine(node: name, secret: secret, peers: [Endpoint("127.0.0.1:\(peer)")!])
        let t = SyncTransport(
            engine: engine, listen: Endpoint("127.0.0.1:\(port)")!, store: store,
            group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "test"))
        try await t.start()
        return t
    }

    /// Two ports free for UDP and TCP now (not derived from the pid, which
    /// another socket of the host may hold).
    static func ports() -> (Int, Int) {
        let ports = Ports.freeUDPAndTCP(2)
        return (ports[0], ports[1])
    }

    /// Polls `condition` for up to 30 s: a limit only for a test that would
    /// never pass, not a time the transport must meet on a busy machine.
    static func eventually(_ condition: () -> Bool) async -> Bool {
        for _ in 0..<3000 {
            if condition() { return true }
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
        return condition()
    }

    @Test("a record published on one node is installed on the other; a forged datagram changes nothing")
    func live() async throws {
        let (pa, pb) = Self.ports()
        let forgerPort = Ports.freeUDPAndTCP()
        let storeB = MemoryStore()
        let a = try await Self.node("lb1", port: pa, peer: pb, store: MemoryStore())
        let b = try await Self.node("lb2", port: pb, peer: pa, store: storeB)
        let receiver = Task { await b.runReceiver() }
        defer { receiver.cancel() }
        a.publish([Fixture.record(real: Fixture.realB, written: SyncEngine.wallNs())])
        #expect(await Self.eventually { storeB.table.withLockedValue { $0.count } == 1 })
        #expect(storeB.table.withLockedValue { $0.first?.real } == Fixture.realB)

        // Same sender, another secret: refused, counted, table unchanged.
        let forger = try await Self.node(
            "lb1", port: forgerPort, peer: pb, store: MemoryStore(), secret: Array("y".utf8) + Fixture.secret)
        forger.publish([Fixture.record(real: Fixture.realA, written: SyncEngine.wallNs())])
        #expect(await Self.eventually { b.engine.reports()[0].rejected["bad-mac"] == 1 })
        #expect(storeB.table.withLockedValue { $0.map(\.real) } == [Fixture.realB])
        let report = b.engine.reports()[0]
        #expect(report.node == "lb1" && report.recordsInstalled == 1)
        #expect(a.engine.reports()[0].recordsSent == 1)
        for t in [a, b, forger] { await t.stop() }
    }

    @Test("a starting node pulls the peer's whole table over TCP; a down peer times out")
    func pull() async throws {
        let (pa, pb) = Self.ports()
        let now = SyncEngine.wallNs()
        let table = (0..<2500).map {
            Fixture.record(
                client: "198.18.\(10 + $0 / 250).\($0 % 250)", real: $0 % 2 == 0 ? Fixture.realA : Fixture.realB,
                written: now)
        }
        let storeA = MemoryStore()
        let a = try await Self.node("lb1", port: pa, peer: pb, store: storeA)
        let b = try await Self.node("lb2", port: pb, peer: pa, store: MemoryStore(records: table))
        let results = await a.pullAll(timeout: .seconds(30))
        #expect(results == [.init(peer: "127.0.0.1:\(pb)", received: 2500, installed: 2500, error: nil)])
        #expect(storeA.table.withLockedValue { $0.count } == 2500)
        await b.stop()
        let down = await a.pull(Endpoint("127.0.0.1:\(pb)")!, timeout: .milliseconds(500))
        #expect(down.error != nil && down.received == 0)
        await a.stop()
    }
}
