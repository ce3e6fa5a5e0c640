import Dataplane
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
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let dataplane = controller.dataplane
            let start = clock.now
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
