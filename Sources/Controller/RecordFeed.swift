import Dataplane
import Foundation
import Logging
import Model
import Synchronization
import Sync

/// The records this node's dataplane writes, sent to the peers as they are
/// written (SPEC §9): a thread waits on the program's `record_events` ring
/// buffer and hands batches to `run`, which turns them into sync records
/// and publishes them. Records installed from peers make no event, so
/// nothing is sent back. Off the controller's actor, except for a read of
/// the model each batch is named by.
package final class RecordFeed: Sendable {
    private let events: Dataplane.RecordEvents
    private let batches: AsyncStream<[Dataplane.RecordEvent]>
    private let input: AsyncStream<[Dataplane.RecordEvent]>.Continuation
    private let stopped = Atomic(false)
    /// Events read from the ring but not queued (the sender fell behind).
    private let dropped: UnsentCount
    /// How long the thread waits in one poll: how soon `stop` takes effect.
    static let pollMs: Int32 = 200
    /// Batches queued for the sender before further ones are dropped.
    static let queuedBatches = 4096

    /// `dropped`: where the writes read but not queued are counted (the
    /// controller shows it with the ring buffer's own count).
    package init(dataplane: Dataplane, dropped: UnsentCount = UnsentCount()) throws {
        events = try dataplane.recordEvents()
        self.dropped = dropped
        (batches, input) = AsyncStream.makeStream(bufferingPolicy: .bufferingOldest(Self.queuedBatches))
    }

    /// Starts the reading thread. Events written before it (a previous
    /// run's, perhaps hours old) are dropped: peers pull whole tables.
    package func start(logger: Logger) {
        _ = try? events.drain()
        let thread = Thread { [self] in
            while !stopped.load(ordering: .relaxed) {
                do {
                    let batch = try events.poll(timeoutMs: Self.pollMs)
                    if !batch.isEmpty, case .dropped = input.yield(batch) {
                        dropped.value.add(UInt64(batch.count), ordering: .relaxed)
                    }
                } catch {
                    logger.error("sync: cannot read the dataplane's record writes", metadata: ["error": "\(error)"])
                    Thread.sleep(forTimeInterval: 1)
                }
            }
            input.finish()
        }
        thread.name = "tandem-record-feed"
        thread.start()
    }

    /// Ends the thread (within `pollMs`) and with it `run`.
    package func stop() { stopped.store(true, ordering: .relaxed) }

    /// Publishes each batch until `stop`; says at most once a minute how
    /// many record writes were not sent.
    func run(sync: NodeSync, controller: Controller, logger: Logger) async {
        await run(
            dataplane: controller.dataplane, rules: { await controller.syncView().rules },
            publish: { sync.transport.publish($0) }, logger: logger)
    }

    /// `run` with its parts given: the rules that name the records (of
    /// the model the dataplane runs), and where they go.
    package func run(
        dataplane: Dataplane, rules: @Sendable () async -> SyncRules,
        publish: @Sendable ([SyncRecord]) -> Void, logger: Logger
    ) async {
        var reported = dataplane.recordEventsLostCount() + dropped.value.load(ordering: .relaxed)
        var lastReport = ContinuousClock.now - .seconds(60)
        for await batch in batches {
            let rules = await rules()
            let offset = NodeSync.wallMinusMonotonic()
            let records = batch.compactMap { e in
                rules.outgoing(
                    group: e.group, service: e.service, client: e.client, real: e.real,
                    writtenNs: UInt64(clamping: Int64(bitPattern: e.writtenNs) &+ offset))
            }
            if !records.isEmpty { publish(records) }
            let lost = dataplane.recordEventsLostCount() + dropped.value.load(ordering: .relaxed)
            if lost > reported && ContinuousClock.now - lastReport >= .seconds(60) {
                let message =
                    "sync: \(lost - reported) record writes were not sent to the peers (the event ring buffer "
                    + "was full); they reach peers at the peers' next pull or the client's next write"
                logger.warning("\(message)", metadata: ["lost_total": "\(lost)"])
                reported = lost
                lastReport = .now
            }
        }
    }
}

/// Record writes the feed read but could not queue for the peers.
package final class UnsentCount: Sendable {
    package init() {}
    package let value = Atomic<UInt64>(0)
}

extension Controller {
    /// Record writes that never went to the peers: lost in the full event
    /// ring buffer, or read while the sender was behind; nil without sync.
    func syncUnsent() -> UInt64? {
        guard let sync else { return nil }
        return dataplane.recordEventsLostCount() + sync.feedDropped.value.load(ordering: .relaxed)
    }
}
