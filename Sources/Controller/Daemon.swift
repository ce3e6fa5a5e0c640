import BPF
import Configuration
import Control
import ControlAPI
import Health
import NodeSync
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
    public static func run(
        configPath: String, logger: Logger,
        registry: PrometheusCollectorRegistry
    ) async throws {
        let validated = try ConfigParser.loadValidated(path: configPath)
        let config = validated.config
        // Every line names the node: logs of several nodes read together.
        var logger = logger
        logger[metadataKey: "node"] = "\(config.nodeName)"
        if await ControlClient.isServing(socket: config.socket) {
            throw ControlError(
                "tandem serve is already running on \(config.socket) (use 'tandem reload' to apply a new config)")
        }
        // Checked before anything changes: a start that fails leaves all as it was.
        try SocketPath.prepareDirectory((config.socket as NSString).deletingLastPathComponent)
        // Held until the process exits: one daemon per pin directory.
        let lock = try PinLock.acquire(pins: config.pinDirectory, socket: config.socket, config: configPath)
        defer { withExtendedLifetime(lock) {} }
        let group = MultiThreadedEventLoopGroup.singleton
        let checker = try HealthChecker(group: group, logger: logger)
        let fresh = !FileManager.default.fileExists(atPath: config.pinDirectory)
        let controller: Controller
        do {
            controller = try await Startup.controller(
                validated, configPath: configPath, logger: logger, group: group, registry: registry)
        } catch {
            // Pins this start created (maps of a dataplane that never ran) go.
            if fresh { BPFFS.removeTree(config.pinDirectory) }
            throw error
        }

        var services: [any Service] = [
            HealthService(checker: checker, controller: controller),
            ControlServer(path: config.socket, controller: controller, group: group, logger: logger),
            HangupReloader(controller: controller, logger: logger),
            RecordCensus(controller: controller, logger: logger),
            NeighbourWatch(controller: controller),
            AnnounceWatch(controller: controller)
        ]
        if let settings = config.sync {
            let sync = try NodeSync(
                settings, node: config.nodeName, dataplane: controller.dataplane,
                install: { records, peer in await controller.installSynced(records, from: peer) },
                group: group, logger: logger)
            await controller.attachSync(sync)
            let announcer = controller.announcer
            services.append(SyncService(sync: sync, logger: logger) { announcer.setPullDone(true) })
        }
        if let address = config.metrics {
            services.append(try MetricsServer(address: address, controller: controller, group: group, logger: logger))
        }
        services.append(
            Readiness(
                controller: controller,
                summary: [
                    "config": "\(configPath)", "services": "\(config.services.count)",
                    "interface": "\(config.interface)", "socket": "\(config.socket)",
                    "announce": "\(config.announce.map { "table \($0.table)" } ?? "off")",
                    "sync": "\(config.sync.map { "\($0.listen), \($0.peers.count) peers" } ?? "off")"
                ], logger: logger))
        let serviceGroup = ServiceGroup(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        try await serviceGroup.run()
        logger.notice(
            "stopped; XDP keeps forwarding from the pinned state", metadata: ["pins": "\(config.pinDirectory)"])
    }
}

/// Health checks for as long as the group runs: the checker probes on the
/// event loops and the controller applies its transitions in order. Graceful
/// shutdown stops the probes, which ends the transitions.
struct HealthService: Service {
    let checker: HealthChecker
    let controller: Controller

    func run() async {
        await controller.startHealthChecks(checker)
        await withGracefulShutdownHandler {
            await controller.followHealth(checker)
        } onGracefulShutdown: {
            checker.stop()
        }
        await controller.stopHealthChecks()
    }
}

/// Runs a server's accept loop until graceful shutdown cancels it. The
/// cancellation that ends it then is a clean stop, not an error: otherwise
/// the group, and `tandem serve`, would fail on every SIGTERM.
func serveUntilGracefulShutdown(_ operation: @Sendable @escaping () async throws -> Void) async throws {
    do {
        try await cancelWhenGracefulShutdown(operation)
    } catch is CancellationError where Task.isShuttingDownGracefully {
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
