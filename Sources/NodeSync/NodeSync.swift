import Configuration
import Control
import Dataplane
import Logging
import Model
import NIOCore
import Sync
import Synchronization

/// Record sync in `tandem serve`: the transport, and what a
/// node does with records. It observes the controller's commits, so the
/// rules that name and place records are always those of the model the
/// dataplane runs; records arrive through the controller's actor
/// (`install`), so an install never races a health change's generation bump.
public final class NodeSync: CommitObserver {
    let transport: SyncTransport
    let config: Config.Sync
    let dataplane: any DataplaneProtocol
    let shared: Shared
    /// How long a starting node waits for its peers' tables.
    static let pullTimeout: Duration = .seconds(5)

    /// What the observer, the store and the feed share, under one lock:
    /// a feed started between two commits still gets the later one's rules.
    final class Shared: Sendable {
        struct State {
            /// The sync view of the last committed model.
            var view = SyncView(model: DataplaneModel())
            var feed: RecordFeed?
            /// Node names by the id synced records carry in `origin`.
            var names: [UInt32: String] = [:]
        }
        let state = Mutex(State())
    }

    /// `install` hands records a peer sent to the controller's actor,
    /// which calls `install(_:from:)` back.
    public init(
        _ config: Config.Sync, node: String, dataplane: any DataplaneProtocol,
        install: @escaping @Sendable ([SyncRecord], String) async -> (installed: Int, rejected: [Rejection: Int]),
        group: any EventLoopGroup, logger: Logger
    ) throws {
        self.config = config
        self.dataplane = dataplane
        let shared = Shared()
        self.shared = shared
        let engine = SyncEngine(node: node, secret: try config.readSecret(), peers: config.peers)
        transport = SyncTransport(
            engine: engine, listen: config.listen,
            store: NodeStore(dataplane: dataplane, shared: shared, install: install), group: group, logger: logger)
    }

    var engine: SyncEngine { transport.engine }

    public func committed(_ commit: Committed) {
        let view = SyncView(model: commit.model)
        shared.state.withLock { state in
            state.view = view
            state.feed?.update(rules: view.rules)
        }
    }

    /// A new shared secret (a reload read the file again).
    public func rekey(_ secret: [UInt8]) { engine.rekey(secret) }

    /// The peers as this node hears them.
    public func peers() -> [PeerReport] { engine.reports() }

    /// Node name of a record's `origin` (0: this node, `local`).
    public func originNames() -> [UInt32: String] { shared.state.withLock { $0.names } }

    /// Installs what the rules allow of records a peer wrote. Call it on
    /// the controller's actor, between applies.
    public func install(
        _ records: [SyncRecord], from node: String, logger: Logger
    ) -> (
        installed: Int, rejected: [Rejection: Int]
    ) {
        let origin = Self.nodeID(node)
        let view = shared.state.withLock { state in
            state.names[origin] = node
            return state.view
        }
        let (writes, rejected) = Self.plan(records, origin: origin, dataplane: dataplane, view: view)
        do {
            try dataplane.installRecords(writes)
        } catch {
            logger.error("sync: cannot install records", metadata: ["peer": "\(node)", "error": "\(error)"])
            return (0, rejected)
        }
        return (writes.count, rejected)
    }

    /// Starts sending this node's record writes to the peers, named by the
    /// rules of the model committed last (and of each one committed later).
    func startFeed(logger: Logger) throws -> RecordFeed {
        let transport = self.transport
        return try shared.state.withLock { state in
            let feed = try RecordFeed(dataplane: dataplane, rules: state.view.rules) { transport.publish($0) }
            state.feed = feed
            feed.start(logger: logger)
            return feed
        }
    }

    /// The writer's id as the `persist` value's `origin` holds it: FNV-1a
    /// 32 of the node name, never 0 (0 is this node).
    package static func nodeID(_ name: String) -> UInt32 {
        var h: UInt32 = 2_166_136_261
        for b in name.utf8 { h = (h ^ UInt32(b)) &* 16_777_619 }
        return h == 0 ? 1 : h
    }

    /// What `view`'s rules allow of records node `origin` wrote, as writes
    /// into `dataplane`, and why not the rest.
    package static func plan(
        _ records: [SyncRecord], origin: UInt32, dataplane: any DataplaneProtocol, view: SyncView
    )
        -> (writes: [Dataplane.RecordWrite], rejected: [Rejection: Int])
    {
        let (rules, timeouts) = (view.rules, view.timeouts)
        let offset = KernelClock.wallMinusMonotonic()
        let now = KernelClock.monotonicNs()
        var writes: [Dataplane.RecordWrite] = []
        var rejected: [Rejection: Int] = [:]
        for r in records {
            var local: SyncRules.Local?
            if let (group, client) = rules.place(r), let held = dataplane.record(group: group, client: client),
                let address = rules.realAddress(held.real)
            {
                let live = held.valid && now &- held.lastSeenNs < (timeouts[group] ?? 0)
                local = .init(real: address, writtenNs: KernelClock.wall(held.writtenNs, offset: offset), live: live)
            }
            switch rules.decide(r, local: local) {
            case .install(let i):
                // On this node's clock; a write "in the future" (clocks
                // apart) counts as now.
                let written = min(KernelClock.monotonic(i.writtenNs, offset: offset), now)
                writes.append(
                    .init(
                        group: i.group, client: i.client, real: i.real, recGen: i.recGen, service: i.service,
                        origin: origin, lastSeenNs: now, writtenNs: written))
            case .unchanged: break
            case .reject(let why): rejected[why, default: 0] += 1
            }
        }
        return (writes, rejected)
    }
}

/// What record sync reads of a model: its rules and each group's record
/// timeout.
package struct SyncView: Sendable {
    package let rules: SyncRules
    package let timeouts: [UInt32: UInt64]

    package init(model: DataplaneModel) {
        rules = SyncRules(model: model)
        var timeouts: [UInt32: UInt64] = [:]
        for s in model.services { if let p = s.persistence { timeouts[s.group] = p.timeoutNs } }
        self.timeouts = timeouts
    }
}

/// The node's side of the transport: records in go to the controller's
/// actor; a peer's pull reads the table off the actor, named by the view
/// of the model committed last.
struct NodeStore: SyncStore {
    let dataplane: any DataplaneProtocol
    let shared: NodeSync.Shared
    let install: @Sendable ([SyncRecord], String) async -> (installed: Int, rejected: [Rejection: Int])

    func apply(_ records: [SyncRecord], from node: String) async -> (installed: Int, rejected: [Rejection: Int]) {
        await install(records, node)
    }

    func forEachRecordBatch(_ body: ([SyncRecord]) throws -> Void) async throws {
        let view = shared.state.withLock { $0.view }
        let (rules, timeouts) = (view.rules, view.timeouts)
        let offset = KernelClock.wallMinusMonotonic()
        let now = KernelClock.monotonicNs()
        try dataplane.forEachRecordBatch { batch in
            let live = batch.compactMap { r -> SyncRecord? in
                guard r.valid, let timeout = timeouts[r.group], now &- r.lastSeenNs < timeout else { return nil }
                return rules.outgoing(
                    group: r.group, service: r.service, client: r.client, real: r.real,
                    writtenNs: KernelClock.wall(r.writtenNs, offset: offset))
            }
            if !live.isEmpty { try body(live) }
        }
    }
}
