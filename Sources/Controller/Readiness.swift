import Foundation
import Logging
import ServiceLifecycle

/// Says "serving" (in the log and to systemd, READY=1) once the control
/// socket answers and every health check has run once, so a unit that
/// depends on tandem starts against a balancer that knows which reals are
/// up. A check that never finishes cannot hold this forever: after twice
/// the slowest check's interval plus timeout it is announced anyway, with
/// a warning. Then the VIPs may be announced. On SIGTERM or SIGINT it
/// tells systemd STOPPING=1.
struct Readiness: Service {
    let controller: Controller
    let summary: Logger.Metadata
    let logger: Logger

    func run() async throws {
        let clock = ContinuousClock()
        let start = clock.now
        let patience = await controller.firstRoundPatience()
        while !Task.isShuttingDownGracefully {
            let (socket, checked, pending) = await controller.readiness()
            if socket && pending == 0 {
                logger.notice("serving", metadata: summary.merging(["checked": "\(checked)"]) { a, _ in a })
                break
            }
            if socket && start.duration(to: clock.now) > patience {
                logger.warning(
                    "serving before every health check ran once",
                    metadata: summary.merging(
                        ["checked": "\(checked)", "pending": "\(pending)"]) { a, _ in a })
                break
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        guard !Task.isShuttingDownGracefully else { return }
        // Only now may the VIPs be announced (docs/design/several-nodes.md, "Announcing VIPs").
        await controller.firstRoundDone()
        Systemd.ready(status: "serving \(summary["services"].map { "\($0)" } ?? "?") services")
        await withGracefulShutdownHandler {
            // Sleeps until the shutdown: the sleep is cancelled then.
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                _ = try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(3600)) }
            }
        } onGracefulShutdown: {
            Systemd.stopping()
        }
    }
}
