import Crypto
import Model
import Testing

@testable import Sync

/// Fixtures: one follow group (:80 and :443 on one VIP) with two reals.
enum Fixture {
    static let vip = IPAddress("198.18.0.100")!
    static let http = ServiceKey(vip: vip, port: 80, proto: .tcp)
    static let https = ServiceKey(vip: vip, port: 443, proto: .tcp)
    static let realA = IPAddress("198.18.0.21")!
    static let realB = IPAddress("198.18.0.22")!
    static let secret = Array("0123456789abcdef0123456789abcdef".utf8)

    static func record(client: String = "198.18.1.7", real: IPAddress = realA, written: UInt64 = 1_000) -> SyncRecord {
        SyncRecord(group: http, service: https, client: IPAddress(client)!, real: real, writtenNs: written)
    }

    /// The group as a node's model holds it; `down` reals failed here.
    static func model(down: Set<IPAddress> = [], group: UInt32 = 7, netmask: Int = 32) -> DataplaneModel {
        let reals = [
            DataplaneModel.Real(id: 3, address: realA, mac: MACAddress("02:00:00:00:00:03")!, recGen: 5),
            DataplaneModel.Real(id: 4, address: realB, mac: MACAddress("02:00:00:00:00:04")!, recGen: 9)
        ]
        let backends = reals.map {
            DataplaneModel.Backend(real: $0.id, weight: 1, state: down.contains($0.address) ? .down : .up)
        }
        let persistence = Persistence(timeoutNs: 60_000_000_000, netmask: netmask)
        return DataplaneModel(
            services: [
                .init(
                    id: 1, group: group, vip: vip, port: 80, proto: .tcp, persistence: persistence,
                    backends: backends),
                .init(
                    id: 2, group: group, vip: vip, port: 443, proto: .tcp, persistence: persistence,
                    backends: backends)
            ], reals: reals)
    }
}

@Suite("Sync messages")
struct MessageTests {
    let key = SymmetricKey(data: Fixture.secret)

    func message(records: [SyncRecord] = [Fixture.record()], seq: UInt64 = 1, sent: UInt64 = 5_000) -> SyncMessage {
        SyncMessage(kind: .records, node: "lb1", epoch: 4_000, seq: seq, sentNs: sent, records: records)
    }

    @Test("a message with IPv4 and IPv6 records decodes to what was encoded")
    func roundTrip() throws {
        let v6 = ServiceKey(vip: IPAddress("2001:db8::100")!, port: 443, proto: .udp)
        let six = SyncRecord(
            group: v6, service: v6, client: IPAddress("2001:db8:1::")!, real: IPAddress("2001:db8::21")!,
            writtenNs: .max)
        let m = message(records: [Fixture.record(), six])
        let bytes = SyncCodec.encode(m, key: key)
        #expect(bytes.count == SyncMessage.size(records: 2, nameBytes: 3))
        #expect(try SyncCodec.decode(bytes, key: key) == m)
    }

    @Test("a full datagram stays under the IPv6 minimum MTU with room for IP and UDP headers")
    func datagramSize() {
        let records = Array(repeating: Fixture.record(), count: SyncMessage.maxDatagramRecords)
        let name = String(repeating: "n", count: 64)
        let bytes = SyncCodec.encode(
            SyncMessage(kind: .records, node: name, epoch: 1, seq: 1, sentNs: 1, records: records), key: key)
        #expect(bytes.count + 40 + 8 <= 1280)
    }

    @Test("a forged message (any byte changed) is refused as bad-mac")
    func forged() {
        let bytes = SyncCodec.encode(message(), key: key)
        // The real's last byte, the written time, the sender name, the MAC.
        for offset in [38 + 3 + 40 + 3, bytes.count - 33, 39, bytes.count - 1] {
            var forged = bytes
            forged[offset] ^= 0x01
            #expect(throws: SyncCodec.Error.self) { try SyncCodec.decode(forged, key: key) }
            #expect((try? SyncCodec.decode(forged, key: key)) == nil)
            do {
                _ = try SyncCodec.decode(forged, key: key)
            } catch {
                #expect(error.rejection == .badMAC, "offset \(offset)")
            }
        }
    }

    @Test("a message under another secret is refused as bad-mac; garbage as malformed")
    func wrongSecret() {
        let other = SymmetricKey(data: Array("another secret of thirty-two b!!".utf8))
        let bytes = SyncCodec.encode(message(), key: other)
        do {
            _ = try SyncCodec.decode(bytes, key: key)
            Issue.record("accepted a message under another secret")
        } catch {
            #expect(error.rejection == .badMAC)
        }
        do {
            _ = try SyncCodec.decode(Array("GET / HTTP/1.1\r\n\r\n".utf8) + [UInt8](repeating: 0, count: 80), key: key)
            Issue.record("accepted garbage")
        } catch {
            #expect(error.rejection == .malformed)
        }
    }
}

@Suite("Sync admission")
struct AdmissionTests {
    final class Clock: @unchecked Sendable {
        var now: UInt64 = 100_000_000_000
    }

    static let peer = Endpoint("198.18.0.2:7946")!

    func engines(window: UInt64 = 30_000_000_000) -> (SyncEngine, SyncEngine, Clock) {
        let clock = Clock()
        let a = SyncEngine(
            node: "lb1", secret: Fixture.secret, peers: [Endpoint("198.18.0.3:7946")!], clock: { clock.now })
        let b = SyncEngine(
            node: "lb2", secret: Fixture.secret, peers: [Self.peer], windowNs: window, clock: { clock.now })
        return (a, b, clock)
    }

    @Test("a replayed message is refused and counted; reordered ones within the window are not")
    func replay() throws {
        let (a, b, _) = engines()
        let sealed = a.seal(Array(repeating: Fixture.record(), count: 40))
        #expect(sealed.count == 3)
        #expect(b.admit(sealed[2], from: Self.peer) != nil)
        #expect(b.admit(sealed[0], from: Self.peer) != nil, "out of order, not seen: accepted")
        #expect(b.admit(sealed[0], from: Self.peer) == nil, "seen: replay")
        #expect(b.admit(sealed[2], from: Self.peer) == nil)
        let report = b.reports()[0]
        #expect(report.rejected["replay"] == 17 + 6)
        #expect(report.recordsReceived == 6 + 17)
        #expect(report.node == "lb1" && report.up)
    }

    @Test("messages of an earlier run of the sender are replays; a new run starts afresh")
    func epochs() {
        let clock = Clock()
        let first = SyncEngine(node: "lb1", secret: Fixture.secret, peers: [], clock: { clock.now })
        let old = first.seal([Fixture.record()])[0]
        clock.now += 1_000_000_000
        let second = SyncEngine(node: "lb1", secret: Fixture.secret, peers: [], clock: { clock.now })
        let receiver = SyncEngine(node: "lb2", secret: Fixture.secret, peers: [Self.peer], clock: { clock.now })
        #expect(receiver.admit(second.seal([Fixture.record()])[0], from: Self.peer) != nil)
        #expect(receiver.admit(old, from: Self.peer) == nil)
        #expect(receiver.reports()[0].rejected == ["replay": 1])
    }

    @Test("a message sent outside the time window is refused as stale (a receiver that forgot cannot be replayed)")
    func stale() {
        let (a, b, clock) = engines(window: 5_000_000_000)
        let sealed = a.seal([Fixture.record()])[0]
        clock.now += 6_000_000_000
        #expect(b.admit(sealed, from: Self.peer) == nil)
        #expect(b.reports()[0].rejected == ["stale": 1])
    }

    @Test("forged and wrong-secret datagrams are counted as bad-mac against the peer")
    func badMAC() {
        let (_, b, clock) = engines()
        let stranger = SyncEngine(
            node: "lb1", secret: Array("x".utf8) + Fixture.secret, peers: [], clock: { clock.now })
        #expect(b.admit(stranger.seal([Fixture.record()])[0], from: Self.peer) == nil)
        #expect(b.reports()[0].rejected == ["bad-mac": 1])
        #expect(b.reports()[0].recordsReceived == 0 && !b.reports()[0].up)
    }

    @Test("the receive rate is bounded per sender; senders that are no peer share a small bucket")
    func rateBound() {
        let (a, b, _) = engines()
        let stranger = Endpoint("198.18.9.9:7946")!
        let datagrams = a.seal(Array(repeating: Fixture.record(), count: 17 * 200))
        let admitted = datagrams.filter { b.admit($0, from: stranger) != nil }.count
        #expect(admitted == Int(SyncEngine.strangerRate.burst))
        #expect(b.strangerRejections()["rate-limited"] == UInt64(200 - admitted))
        // The peer's own bucket is untouched by the stranger's flood.
        #expect(b.admit(a.seal([Fixture.record()])[0], from: Self.peer) != nil)
    }

    @Test("frames of a pull must carry the request's nonce and never arrive as datagrams")
    func pullFrames() {
        let (a, b, _) = engines()
        let frame = a.seal([Fixture.record()], kind: .pullRecords, ref: 77)[0]
        #expect(b.admit(frame, from: Self.peer) == nil, "as a datagram")
        #expect(b.admit(frame, from: Self.peer, pull: 78) == nil, "another pull")
        #expect(b.admit(frame, from: Self.peer, pull: 77) != nil)
    }
}
