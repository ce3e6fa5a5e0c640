import Control
import Logging
import ServiceLifecycle
import Sync

/// Binds the sync address, pulls the peers' tables (the announce decision
/// waits for it: `pulled` is called when the pull is over, whatever its
/// outcome), then receives and sends heartbeats until shutdown.
public struct SyncService: Service {
    let sync: NodeSync
    let pulled: @Sendable () async -> Void
    let logger: Logger

    public init(sync: NodeSync, logger: Logger, pulled: @escaping @Sendable () async -> Void) {
        self.sync = sync
        self.pulled = pulled
        self.logger = logger
    }

    public func run() async throws {
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
            feed = try sync.startFeed(logger: logger)
        } catch {
            feed = nil
            logger.error(
                "sync: cannot read the dataplane's record writes; only pulls move this node's records",
                metadata: ["error": "\(error)"])
        }
        let (sync, pulled, logger) = (self.sync, self.pulled, self.logger)
        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask { await sync.transport.runReceiver() }
            tasks.addTask {
                let results = await sync.transport.pullAll(timeout: NodeSync.pullTimeout)
                Self.log(results, logger)
                await pulled()
                await cancelWhenGracefulShutdown { await sync.transport.runHeartbeat() }
            }
            tasks.addTask {
                try? await gracefulShutdown()
                await feed?.stop()
                await sync.transport.stop()
            }
        }
    }

    /// The peers' tables were taken, or the pull gave up.
    static func log(_ results: [SyncTransport.PullResult], _ logger: Logger) {
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
    }
}
