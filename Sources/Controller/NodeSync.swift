import Configuration
import Dataplane
import Foundation
import Glibc
import Logging
import Model
import NIOCore
import ServiceLifecycle
import Sync
import Synchronization
import Control

/// Record sync in `tandem serve`: the transport, and what the controller
/// does with records (docs/design/record-sync.md). Records arrive through the controller's
/// actor, so an install never races a health change's generation bump.
package final class NodeSync: Sendable {
    let transport: SyncTransport
    let config: Config.Sync
    /// The feed of this node's record writes, once started.
    let feed = Mutex<RecordFeed?>(nil)
    /// How long a starting node waits for its peers' tables.
    static let pullTimeout: Duration = .seconds(5)

    init(
        _ config: Config.Sync, node: String, controller: Controller, group: any EventLoopGroup, logger: Logger
    )
        throws
    {
        self.config = config
        let engine = SyncEngine(node: node, secret: try config.readSecret(), peers: config.peers)
        transport = SyncTransport(
            engine: engine, listen: config.listen, store: ControllerStore(controller: controller), group: group,
            logger: logger)
    }

    var engine: SyncEngine { transport.engine }

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
        _ records: [SyncRecord], origin: UInt32, dataplane: Dataplane, view: SyncView
    )
        -> (writes: [Dataplane.RecordWrite], rejected: [Rejection: Int])
    {
        let (rules, timeouts) = (view.rules, view.timeouts)
        let offset = NodeSync.wallMinusMonotonic()
        let now = ReadView.monotonicNs()
        var writes: [Dataplane.RecordWrite] = []
        var rejected: [Rejection: Int] = [:]
        for r in records {
            var local: SyncRules.Local?
            if let (group, client) = rules.place(r), let held = dataplane.record(group: group, client: client),
                let address = rules.realAddress(held.real)
            {
                let live = held.valid && now &- held.lastSeenNs < (timeouts[group] ?? 0)
                local = .init(
                    real: address, writtenNs: UInt64(clamping: Int64(bitPattern: held.writtenNs) &+ offset),
                    live: live)
            }
            switch rules.decide(r, local: local) {
            case .install(let i):
                // On this node's clock; a write "in the future" (clocks
                // apart) counts as now.
                let written = min(UInt64(clamping: Int64(clamping: i.writtenNs) &- offset), now)
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

    package static func wallMinusMonotonic() -> Int64 {
        var real = timespec()
        var mono = timespec()
        clock_gettime(CLOCK_REALTIME, &real)
        clock_gettime(CLOCK_MONOTONIC, &mono)
        return (Int64(real.tv_sec) - Int64(mono.tv_sec)) * 1_000_000_000 + Int64(real.tv_nsec) - Int64(mono.tv_nsec)
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

struct ControllerStore: SyncStore {
    let controller: Controller

    func apply(_ records: [SyncRecord], from node: String) async -> (installed: Int, rejected: [Rejection: Int]) {
        await controller.applySynced(records, from: node)
    }

    func forEachRecordBatch(_ body: ([SyncRecord]) throws -> Void) async throws {
        let (dataplane, view) = await controller.syncTableView()
        let (rules, timeouts) = (view.rules, view.timeouts)
        let offset = NodeSync.wallMinusMonotonic()
        let now = ReadView.monotonicNs()
        try dataplane.forEachRecordBatch { batch in
            let live = batch.compactMap { r -> SyncRecord? in
                guard r.valid, let timeout = timeouts[r.group], now &- r.lastSeenNs < timeout else { return nil }
                return rules.outgoing(
                    group: r.group, service: r.service, client: r.client, real: r.real,
                    writtenNs: UInt64(clamping: Int64(bitPattern: r.writtenNs) &+ offset))
            }
            if !live.isEmpty { try body(live) }
        }
    }
}

extension Controller {
    /// The dataplane and the sync view of the model it runs, for reading
    /// the table off the actor.
    func syncTableView() -> (Dataplane, SyncView) { (dataplane, syncView()) }

    /// The sync view of the applied model, built again only after an apply
    /// (a big config's takes milliseconds; records come a few at a time).
    func syncView() -> SyncView {
        if let cached = syncViewCache, cached.version == dataplane.appliedVersion { return cached.view }
        let view = SyncView(model: dataplane.applied ?? DataplaneModel())
        syncViewCache = (dataplane.appliedVersion, view)
        return view
    }

    /// Installs what the rules allow of records a peer wrote.
    func applySynced(_ records: [SyncRecord], from node: String) -> (installed: Int, rejected: [Rejection: Int]) {
        let origin = NodeSync.nodeID(node)
        syncNames[origin] = node
        let (writes, rejected) = NodeSync.plan(records, origin: origin, dataplane: dataplane, view: syncView())
        do {
            try dataplane.installRecords(writes)
        } catch {
            logger.error("sync: cannot install records", metadata: ["peer": "\(node)", "error": "\(error)"])
            return (0, rejected)
        }
        return (writes.count, rejected)
    }

    /// The peers' tables were taken, or the pull gave up: VIPs may be announced.
    func syncPullDone(_ results: [SyncTransport.PullResult]) {
        let reached = results.filter { $0.error == nil }
        if reached.isEmpty && !results.isEmpty {
            logger.warning(
                "sync: no peer's table could be pulled; announcing anyway",
                metadata: ["peers": "\(results.map { "\($0.peer) (\($0.error ?? "-"))" }.joined(separator: ", "))"])
        } else {
            logger.notice(
                "sync: pulled the peers' tables",
                metadata: [
                    "peers": "\(reached.map(\.peer).joined(separator: ","))",
                    "received": "\(reached.map(\.received).reduce(0, +))",
                    "installed": "\(reached.map(\.installed).reduce(0, +))",
                    "unreachable": "\(results.filter { $0.error != nil }.map(\.peer).joined(separator: ","))"
                ])
        }
        pullDone = true
        announce()
    }

    /// Node name of a record's `origin` (0: this node).
    func originName(_ origin: UInt32) -> String {
        origin == 0 ? node : syncNames[origin] ?? String(format: "node-%08x", origin)
    }
}

/// Binds the sync address, pulls the peers' tables (the announce decision
/// waits for it), then receives and sends heartbeats until shutdown.
struct SyncService: Service {
    let sync: NodeSync
    let controller: Controller
    let logger: Logger

    func run() async throws {
        do {
            try await sync.transport.start()
        } catch {
            throw ControlError("sync: cannot listen on \(sync.config.listen) (UDP and TCP): \(error)")
        }
        logger.info(
            "sync listening",
            metadata: [
                "listen": "\(sync.config.listen)",
                "peers": "\(sync.config.peers.map(\.description).joined(separator: ","))"
            ])
        let feed: RecordFeed?
        do {
            feed = try await controller.startRecordFeed(sync, logger: logger)
        } catch {
            feed = nil
            logger.error(
                "sync: cannot read the dataplane's record writes; only pulls move this node's records",
                metadata: ["error": "\(error)"])
        }
        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask { await sync.transport.runReceiver() }
            tasks.addTask {
                let results = await sync.transport.pullAll(timeout: NodeSync.pullTimeout)
                await controller.syncPullDone(results)
                await cancelWhenGracefulShutdown { await sync.transport.runHeartbeat() }
            }
            tasks.addTask {
                try? await gracefulShutdown()
                await feed?.stop()
                await sync.transport.stop()
            }
        }
    }
}

extension Controller {
    /// Starts sending this node's record writes to the peers, named by the
    /// rules of the model applied now (and of each one applied later: on
    /// the actor, so no apply comes between).
    func startRecordFeed(_ sync: NodeSync, logger: Logger) throws -> RecordFeed {
        let transport = sync.transport
        let feed = try RecordFeed(dataplane: dataplane, rules: syncView().rules) { transport.publish($0) }
        sync.feed.withLock { $0 = feed }
        feed.start(logger: logger)
        return feed
    }

    /// A model was applied: the feed names records by its rules from now on.
    func syncModelApplied() {
        guard let sync else { return }
        let rules = syncView().rules
        sync.feed.withLock { $0 }?.update(rules: rules)
    }

    /// Peers as `status` shows them.
    func syncPeers() -> [PeerStatus]? {
        guard let sync else { return nil }
        return sync.engine.reports().map { PeerStatus($0) }
    }
}

extension PeerStatus {
    init(_ r: PeerReport) {
        self.init(
            endpoint: r.endpoint, node: r.node, up: r.up, recordsSent: r.recordsSent,
            recordsReceived: r.recordsReceived, recordsInstalled: r.recordsInstalled, sendErrors: r.sendErrors,
            rejected: r.rejected, lagMs: r.lagMs, lastHeardSeconds: r.lastHeardSeconds)
    }
}
