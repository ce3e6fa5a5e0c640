import Dataplane
import Model
import Logging
import ServiceLifecycle

/// Counts the flow and record tables in the background, so `status` and
/// `/metrics` answer in O(config) however full the tables are. A walk of a
/// million records takes about a second of a low-priority thread; the next
/// one starts after five times as long (at least two seconds), so counting
/// never takes more than a fifth of a core.
struct RecordCensus: Service {
    let controller: Controller
    let logger: Logger

    func run() async throws {
        let clock = ContinuousClock()
        var pressure = PressureWatch()
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let dataplane = controller.dataplane
            let start = clock.now
            if let line = pressure.observe(dataplane.tableCounters(), at: start, sizes: dataplane.tableSizes) {
                logger.warning("\(line.message)", metadata: line.metadata)
            }
            do {
                let counts = try await offload(background: true) { try dataplane.census() }
                await controller.updateCensus(counts, at: clock.now)
            } catch {
                logger.warning("cannot count the tables", metadata: ["error": "\(error)"])
            }
            let pause = max(.seconds(2), start.duration(to: clock.now) * 5)
            _ = try? await cancelWhenGracefulShutdown { try await Task.sleep(for: pause) }
        }
    }
}

/// Decides the pressure log line: writes into a full table (each pushed
/// out an entry, perhaps a live client's) or a SYN flood (far more SYNs
/// than handshakes completed). At most one line a minute while it lasts,
/// each with the figures since the previous one.
struct PressureWatch {
    /// SYNs beyond completed handshakes, per minute, that count as a flood.
    static let floodSYNs: UInt64 = 100_000
    static let interval = Duration.seconds(60)

    private var since: (at: ContinuousClock.Instant, counters: TableCounters)?
    private var lastLine: ContinuousClock.Instant?

    struct Line: Equatable {
        var message: String
        var metadata: Logger.Metadata
        static func == (a: Line, b: Line) -> Bool { a.message == b.message && "\(a.metadata)" == "\(b.metadata)" }
    }

    mutating func observe(_ now: TableCounters, at time: ContinuousClock.Instant, sizes: TableSizes) -> Line? {
        guard let (start, before) = since else {
            since = (time, now)
            return nil
        }
        let flowsFull = now.flowsWrittenFull &- before.flowsWrittenFull
        let recordsFull = now.recordsWrittenFull &- before.recordsWrittenFull
        let syns = now.synStateless &- before.synStateless
        let completed = now.flowsWritten &- before.flowsWritten
        let seconds = max(1, start.duration(to: time).components.seconds)
        let excess = syns > completed ? syns - completed : 0
        let flood = excess * 60 / UInt64(seconds) >= Self.floodSYNs
        let quiet = lastLine.map { $0.duration(to: time) >= Self.interval } ?? true
        if !quiet { return nil }
        if flowsFull == 0 && recordsFull == 0 && !flood {
            // Nothing to say: the next line counts from here.
            if start.duration(to: time) >= Self.interval { since = (time, now) }
            return nil
        }
        since = (time, now)
        lastLine = time
        var parts: [String] = []
        if recordsFull > 0 { parts.append("\(recordsFull) records written into the full record table") }
        if flowsFull > 0 { parts.append("\(flowsFull) flows written into the full flow table") }
        if flood { parts.append("\(syns) SYNs given no state against \(completed) handshakes completed") }
        return Line(
            message: "tables under pressure: " + parts.joined(separator: "; ") + " in the last \(seconds) s",
            metadata: [
                "records_full": "\(recordsFull)", "flows_full": "\(flowsFull)", "syns_stateless": "\(syns)",
                "handshakes": "\(completed)", "seconds": "\(seconds)",
                "tables": "flows=\(sizes.flows) records=\(sizes.records)"
            ])
    }
}
