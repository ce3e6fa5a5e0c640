import Crypto
import Foundation
import Model
import NIOConcurrencyHelpers

/// Counts of one peer, as `status` and `/metrics` show them.
public struct PeerReport: Sendable, Equatable, Codable {
    public var endpoint: String
    /// The name it sends (`node:` there), once heard from.
    public var node: String?
    /// Heard from within `SyncEngine.downAfterNs`.
    public var up: Bool
    public var recordsSent: UInt64 = 0
    public var messagesSent: UInt64 = 0
    public var sendErrors: UInt64 = 0
    public var recordsReceived: UInt64 = 0
    public var recordsInstalled: UInt64 = 0
    public var rejected: [String: UInt64] = [:]
    /// Receive time minus send time of its last message (ms): network plus
    /// the difference of the two clocks.
    public var lagMs: Double?
    /// Seconds since its last message.
    public var lastHeardSeconds: Double?
}

/// Where a message came from, checked before any work is spent on it.
public struct Received: Sendable {
    public var message: SyncMessage
    public var peer: Int?
}

/// The transport-independent half of record sync: encoding with the
/// secret, admission (rate, MAC, replay, time window) and the counters.
/// Thread-safe: the transport calls it from event loops.
public final class SyncEngine: @unchecked Sendable {
    public let node: String
    public let epoch: UInt64
    public let peers: [Endpoint]
    /// A peer unheard for this long is down (it sends every `heartbeatNs`).
    public static let heartbeatNs: UInt64 = 1_000_000_000
    public static let downAfterNs: UInt64 = 3_500_000_000
    /// Per sender address: datagrams per second and burst. A peer sends at
    /// most one datagram per 17 records; 5,000/s is 85,000 records/s.
    public static let peerRate = (rate: 5_000.0, burst: 20_000.0)
    /// Senders that are no peer share one small bucket.
    public static let strangerRate = (rate: 50.0, burst: 100.0)

    struct State {
        var key: SymmetricKey
        var seq: UInt64 = 0
        var guardian: ReplayGuard
        var buckets: [TokenBucket]
        var stranger: TokenBucket
        var reports: [PeerReport]
        var lastHeard: [UInt64?]
        /// Rejections of senders that are no peer.
        var strangers: [String: UInt64] = [:]
    }

    private let state: NIOLockedValueBox<State>
    let clock: @Sendable () -> UInt64

    public init(
        node: String, secret: [UInt8], peers: [Endpoint], windowNs: UInt64 = 30_000_000_000,
        clock: @escaping @Sendable () -> UInt64 = SyncEngine.wallNs
    ) {
        self.node = node
        self.peers = peers
        self.clock = clock
        self.epoch = clock()
        state = NIOLockedValueBox(
            State(
                key: SymmetricKey(data: secret), guardian: ReplayGuard(windowNs: windowNs),
                buckets: peers.map { _ in TokenBucket(rate: Self.peerRate.rate, burst: Self.peerRate.burst) },
                stranger: TokenBucket(rate: Self.strangerRate.rate, burst: Self.strangerRate.burst),
                reports: peers.map { PeerReport(endpoint: $0.description, up: false) },
                lastHeard: peers.map { _ in nil }))
    }

    public static let wallNs: @Sendable () -> UInt64 = {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// A new secret (reload): messages under the old one are refused from now on.
    public func rekey(_ secret: [UInt8]) {
        state.withLockedValue { $0.key = SymmetricKey(data: secret) }
    }

    /// The peer a datagram from `source` belongs to: the same address and
    /// port, else the same address.
    public func peer(of source: Endpoint) -> Int? {
        peers.firstIndex(of: source) ?? peers.firstIndex { $0.address == source.address }
    }

    // MARK: Sending

    /// `records` as messages of at most `perMessage` records (none: one
    /// empty message, a heartbeat), each with the next sequence number.
    public func seal(
        _ records: [SyncRecord], kind: SyncMessage.Kind = .records, ref: UInt32 = 0,
        perMessage: Int = SyncMessage.maxDatagramRecords
    ) -> [[UInt8]] {
        let chunks =
            records.isEmpty
            ? [[]]
            : stride(from: 0, to: records.count, by: perMessage).map {
                Array(records[$0..<min($0 + perMessage, records.count)])
            }
        return state.withLockedValue { s in
            chunks.map { chunk in
                s.seq += 1
                let m = SyncMessage(
                    kind: kind, node: node, epoch: epoch, seq: s.seq, sentNs: clock(), ref: ref, records: chunk)
                return SyncCodec.encode(m, key: s.key)
            }
        }
    }

    public func countSent(peer: Int, messages: Int, records: Int, failed: Bool) {
        state.withLockedValue { s in
            if failed {
                s.reports[peer].sendErrors += UInt64(messages)
            } else {
                s.reports[peer].messagesSent += UInt64(messages)
                s.reports[peer].recordsSent += UInt64(records)
            }
        }
    }

    // MARK: Receiving

    /// The message in `bytes` from `source` if it passes the rate bound,
    /// the MAC, the time window and the replay check; otherwise counted
    /// and nil. Frames of a pull this node asked for (`pull`: its nonce)
    /// are not rate-bound and must carry the nonce; TCP keeps them in
    /// order, so the caller checks that their sequence rises.
    public func admit(_ bytes: [UInt8], from source: Endpoint?, pull: UInt32? = nil) -> Received? {
        let now = clock()
        let peer = source.flatMap(peer(of:))
        return state.withLockedValue { s -> Received? in
            func reject(_ r: Rejection, records: Int = 1) -> Received? {
                if let peer {
                    s.reports[peer].rejected[r.rawValue, default: 0] += UInt64(max(records, 1))
                } else {
                    s.strangers[r.rawValue, default: 0] += 1
                }
                return nil
            }
            if pull == nil {
                let allowed = peer.map { s.buckets[$0].take(nowNs: now) } ?? s.stranger.take(nowNs: now)
                if !allowed { return reject(.rateLimited) }
            }
            let m: SyncMessage
            do throws(SyncCodec.Error) {
                m = try SyncCodec.decode(bytes, key: s.key)
            } catch {
                return reject(error.rejection)
            }
            let pullReply = m.kind == .pullRecords || m.kind == .pullEnd
            if let pull {
                guard pullReply, m.ref == pull else { return reject(.replay, records: m.records.count) }
                let skew = m.sentNs > now ? m.sentNs - now : now - m.sentNs
                if skew > s.guardian.windowNs { return reject(.stale, records: m.records.count) }
            } else {
                // A pull's frames are never datagrams.
                if pullReply { return reject(.replay, records: m.records.count) }
                if let r = s.guardian.admit(m, nowNs: now) { return reject(r, records: m.records.count) }
            }
            if let peer {
                s.reports[peer].node = m.node
                s.lastHeard[peer] = now
                s.reports[peer].lagMs = (Double(now) - Double(m.sentNs)) / 1e6
                s.reports[peer].recordsReceived += UInt64(m.records.count)
            }
            return Received(message: m, peer: peer)
        }
    }

    /// What the receiver did with the records of one message.
    public func countApplied(peer: Int?, installed: Int, rejected: [Rejection: Int]) {
        state.withLockedValue { s in
            guard let peer else {
                for (r, n) in rejected { s.strangers[r.rawValue, default: 0] += UInt64(n) }
                return
            }
            s.reports[peer].recordsInstalled += UInt64(installed)
            for (r, n) in rejected { s.reports[peer].rejected[r.rawValue, default: 0] += UInt64(n) }
        }
    }

    public func reports() -> [PeerReport] {
        let now = clock()
        return state.withLockedValue { s in
            s.reports.enumerated().map { i, r in
                var r = r
                if let heard = s.lastHeard[i] {
                    let ago = now > heard ? now - heard : 0
                    r.up = ago < Self.downAfterNs
                    r.lastHeardSeconds = Double(ago) / 1e9
                }
                return r
            }
        }
    }

    /// Rejections of senders that are no configured peer.
    public func strangerRejections() -> [String: UInt64] { state.withLockedValue { $0.strangers } }
}
