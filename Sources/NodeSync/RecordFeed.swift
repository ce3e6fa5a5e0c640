import Dataplane
import Foundation
import Logging
import Model
import Synchronization
import Sync

/// The records this node's dataplane writes, sent to the peers as they are
/// written (docs/design/record-sync.md): one thread waits on the program's `record_events`
/// ring buffer and, woken by the first event, names each batch it reads
/// with the rules of the applied model and publishes it from that same
/// thread (no hop to a task or an event loop: at a few records at a time
/// each hop is a thread wakeup, which cost more than the rest). Records
/// installed from peers make no event, so nothing is sent back.
package final class RecordFeed: Sendable {
    private let events: any RecordEventSource
    private let dataplane: any DataplaneProtocol
    private let rules: Mutex<SyncRules>
    private let publish: @Sendable ([SyncRecord]) -> Void
    private let stopped = Atomic(false)
    private let started = Atomic(false)
    private let finished: AsyncStream<Void>
    private let finish: AsyncStream<Void>.Continuation
    /// How long the thread waits in one poll: how soon `stop` takes effect.
    static let pollMs: Int32 = 200

    /// `rules`: those of the model the dataplane runs now; `update` them
    /// after each apply.
    package init(
        dataplane: any DataplaneProtocol, rules: SyncRules, publish: @escaping @Sendable ([SyncRecord]) -> Void
    ) throws {
        events = try dataplane.recordEvents()
        self.dataplane = dataplane
        self.rules = Mutex(rules)
        self.publish = publish
        (finished, finish) = AsyncStream.makeStream()
    }

    /// The rules of a newly applied model.
    package func update(rules: SyncRules) { self.rules.withLock { $0 = rules } }

    /// Starts the thread. Events written before it (a previous run's,
    /// perhaps hours old) are dropped: peers pull whole tables. Says at
    /// most once a minute how many record writes the ring buffer lost.
    package func start(logger: Logger) {
        _ = try? events.drain()
        started.store(true, ordering: .relaxed)
        let thread = Thread { [self] in
            var reported = dataplane.recordEventsLostCount()
            var lastReport = ContinuousClock.now - .seconds(60)
            while !stopped.load(ordering: .relaxed) {
                do {
                    let batch = try events.poll(timeoutMs: Self.pollMs)
                    if !batch.isEmpty { send(batch) }
                } catch {
                    logger.error("sync: cannot read the dataplane's record writes", metadata: ["error": "\(error)"])
                    Thread.sleep(forTimeInterval: 1)
                }
                let lost = dataplane.recordEventsLostCount()
                if lost > reported && ContinuousClock.now - lastReport >= .seconds(60) {
                    let message =
                        "sync: \(lost - reported) record writes were not sent to the peers (the event ring buffer "
                        + "was full); they reach peers at the peers' next pull or the client's next write"
                    logger.warning("\(message)", metadata: ["lost_total": "\(lost)"])
                    reported = lost
                    lastReport = .now
                }
            }
            finish.finish()
        }
        thread.name = "tandem-record-feed"
        thread.start()
    }

    private func send(_ batch: [Dataplane.RecordEvent]) {
        let offset = KernelClock.wallMinusMonotonic()
        let records = rules.withLock { rules in
            batch.compactMap { e in
                rules.outgoing(
                    group: e.group, service: e.service, client: e.client, real: e.real,
                    writtenNs: KernelClock.wall(e.writtenNs, offset: offset))
            }
        }
        if !records.isEmpty { publish(records) }
    }

    /// Ends the thread (within `pollMs`); returns once it has.
    package func stop() async {
        stopped.store(true, ordering: .relaxed)
        guard started.load(ordering: .relaxed) else { return }
        for await _ in finished {}
    }
}
