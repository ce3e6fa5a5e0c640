import BPF
import Configuration
import Control
@testable import NodeSync
import Dataplane
import Foundation
import Frames
import Logging
import Model
import NIOPosix
import Sync
import TestSupport
import TestTraits
import Testing

/// A client's record written by one node's program reaches the other node's
/// record table: ring buffer, feed, UDP on loopback, the receiver's rules.
@Suite("Record writes sent to peers", .privileged)
struct RecordFeedTests {
    static let yaml = """
        interface: tdm-test0
        services:
        \(Configs.followPair(reals: ["198.18.0.21", "198.18.0.22", "198.18.0.23"]))
        """

    /// A node's dataplane (its own pins) and the model it runs.
    final class Node: @unchecked Sendable {
        let dataplane: Dataplane
        let model: DataplaneModel
        init(_ name: String) throws {
            let config = try ConfigParser.parseValidated(RecordFeedTests.yaml, file: "feed.yaml")
            var model = try ControlState(config).model(macs: [:])
            for i in model.reals.indices { model.reals[i].mac = MACAddress(bytes: [2, 0, 0, 0, 1, UInt8(i + 1)])! }
            dataplane = try Dataplane(pinRoot: "/sys/fs/bpf/tandem-test-\(getpid())-\(name)")
            try dataplane.apply(model)
            self.model = model
        }
        deinit { dataplane.removePins() }
    }

    /// Installs what arrives into `node` as the controller does.
    struct Store: SyncStore {
        let node: Node
        func apply(_ records: [SyncRecord], from name: String) async -> (installed: Int, rejected: [Rejection: Int]) {
            let (writes, rejected) = NodeSync.plan(
                records, origin: NodeSync.nodeID(name), dataplane: node.dataplane, view: SyncView(model: node.model))
            do { try node.dataplane.installRecords(writes) } catch { return (0, rejected) }
            return (writes.count, rejected)
        }
        func forEachRecordBatch(_ body: ([SyncRecord]) throws -> Void) async throws {}
    }

    static func transport(_ name: String, port: Int, peer: Int, store: Store) async throws -> SyncTransport {
        let engine = SyncEngine(
            node: name, secret: Array(repeating: 7, count: 32), peers: [Endpoint("127.0.0.1:\(peer)")!])
        let t = SyncTransport(
            engine: engine, listen: Endpoint("127.0.0.1:\(port)")!, store: store,
            group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "test"))
        try await t.start()
        return t
    }

    @Test("a new client's first ACK on one node writes the same record on its peer, marked with the writer's name")
    func recordReachesPeer() async throws {
        let a = try Node("feed-a")
        let b = try Node("feed-b")
        let ports = Ports.freeUDPAndTCP(2)
        let (portA, portB) = (ports[0], ports[1])
        let ta = try await Self.transport("lb1", port: portA, peer: portB, store: Store(node: a))
        let tb = try await Self.transport("lb2", port: portB, peer: portA, store: Store(node: b))
        let receiver = Task { await tb.runReceiver() }
        // Started with the rules of a model without the group: what it
        // writes is named by no group and not sent.
        let feed = try RecordFeed(dataplane: a.dataplane, rules: SyncRules(model: DataplaneModel())) {
            ta.publish($0)
        }
        feed.start(logger: Logger(label: "test"))
        func connect(_ source: String) throws {
            var packet = PacketSpec(src: source, dst: "198.18.0.100", sport: 40000, dport: 443)
            _ = try a.dataplane.program.testRun(packet: packet.bytes)
            packet.tcpFlags = TCPFlags.ack
            _ = try a.dataplane.program.testRun(packet: packet.bytes)
        }
        try connect("198.18.10.6")
        try await Task.sleep(nanoseconds: 300_000_000)
        #expect(ta.engine.reports()[0].recordsSent == 0, "a record of a group the rules do not know is not sent")

        // The model applied: its rules name the next write.
        feed.update(rules: SyncRules(model: a.model))
        let client = IPAddress("198.18.10.7")!
        try connect("198.18.10.7")
        let group = a.model.services.first { $0.port == 443 }!.group
        let written = try #require(a.dataplane.record(group: group, client: client))

        var arrived: Dataplane.Record?
        for _ in 0..<3000 where arrived == nil {
            arrived = b.dataplane.record(group: group, client: client)
            if arrived == nil { try await Task.sleep(nanoseconds: 10_000_000) }
        }
        let installed = try #require(arrived, "the record reached the peer within 30 s")
        let address = { (n: Node, id: UInt32) in n.model.reals.first { $0.id == id }?.address }
        #expect(address(b, installed.real) == address(a, written.real))
        #expect(installed.origin == NodeSync.nodeID("lb1") && installed.valid)
        #expect(ta.engine.reports()[0].recordsSent == 1)
        #expect(tb.engine.reports()[0].recordsInstalled == 1)

        await feed.stop()
        receiver.cancel()
        await ta.stop()
        await tb.stop()
    }
}
