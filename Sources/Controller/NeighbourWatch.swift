import ServiceLifecycle

/// Keeps reals' MAC addresses current: every 2 seconds it asks again for
/// the reals that have not answered ARP/NDP (they stay out of service until
/// they do), and every 10 seconds it reads the MAC of every real, so a
/// replaced server is reached without a restart.
struct NeighbourWatch: Service {
    let controller: Controller

    func run() async {
        var round = 0
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            _ = try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(2)) }
            guard !Task.isShuttingDownGracefully else { return }
            round += 1
            await controller.refreshNeighbours(all: round % 5 == 0)
        }
    }
}
