import BPF
import Configuration
import Control
import Model
import Foundation
import Logging
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import UnixSignals

/// `tandem serve`: the controller and its services in one ServiceGroup.
/// SIGTERM or SIGINT stops the services in reverse order and exits; the
/// pinned link and maps stay, so forwarding goes on and the next
/// `tandem serve` adopts them with every flow and record.
public enum Daemon {
    public static func run(configPath: String, logger: Logger,
                           registry: PrometheusCollectorRegistry) async throws {
        let validated = try ConfigParser.loadValidated(path: configPath)
        let config = validated.config
        if await ControlClient.isServing(socket: config.socket) {
            throw ControlError("tandem serve is already running on \(config.socket) (use 'tandem reload' to apply a new config)")
        }
        // Checked before anything changes: a start that fails leaves all as it was.
        try SocketPath.prepareDirectory((config.socket as NSString).deletingLastPathComponent)
        // Held until the process exits: one daemon per pin directory.
        let lock = try PinLock.acquire(pins: config.pinDirectory, socket: config.socket, config: configPath)
        defer { withExtendedLifetime(lock) {} }
        let group = MultiThreadedEventLoopGroup.singleton
        let fresh = !FileManager.default.fileExists(atPath: config.pinDirectory)
        let controller: Controller
        do {
            controller = try await Controller(validated, configPath: configPath,
                                              logger: logger, group: group, registry: registry)
        } catch {
            // Pins this start created (maps of a dataplane that never ran) go.
            if fresh { BPFFS.removeTree(config.pinDirectory) }
            throw error
        }
        try await controller.startHealthChecks(group: group)

        var services: [any Service] = [
            ControlServer(path: config.socket, controller: controller, group: group, logger: logger),
            HangupReloader(controller: controller, logger: logger),
            RecordCensus(controller: controller, logger: logger),
        ]
        if let address = config.metrics {
            services.append(try MetricsServer(address: address, controller: controller, group: group, logger: logger))
        }
        let serviceGroup = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint],
                                        logger: logger)
        logger.notice("serving", metadata: ["config": "\(configPath)", "services": "\(config.services.count)",
                                            "interface": "\(config.interface)", "socket": "\(config.socket)"])
        try await serviceGroup.run()
        await controller.stopHealthChecks()
        logger.notice("stopped; XDP keeps forwarding from the pinned state", metadata: ["pins": "\(config.pinDirectory)"])
    }
}

/// SIGHUP re-reads the config, like `tandem reload`.
struct HangupReloader: Service {
    let controller: Controller
    let logger: Logger

    func run() async throws {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            logger.info("SIGHUP: reloading")
            _ = try? await controller.reload()
        }
    }
}
