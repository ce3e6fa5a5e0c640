import Announce
import ServiceLifecycle

/// Checks the announce table every 5 seconds besides the changes that
/// trigger it: a Tandem route someone deleted is written again, and a VIP
/// is withdrawn once XDP is no longer attached (detached behind Tandem's
/// back, the interface gone). Stops with the daemon, leaving the routes:
/// forwarding goes on from the pins.
struct AnnounceWatch: Service {
    let controller: Controller

    func run() async {
        controller.announcer.reconcile()
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            _ = try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(5)) }
            guard !Task.isShuttingDownGracefully else { return }
            controller.announcer.reconcile()
        }
    }
}
