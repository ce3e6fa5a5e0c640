import ArgumentParser
import Configuration
import Control
import Model
import Controller
import Foundation
import Glibc
import Logging
import Metrics
import Prometheus

/// `tandem serve --config F`: the daemon.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load or adopt the dataplane, run health checks and serve the control socket; SIGHUP reloads.")

    @Option(name: .shortAndLong, help: "The config file (YAML).")
    var config: String

    @Option(help: "Least severe log level shown: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func run() async throws {
        var stderr = StandardError()
        guard geteuid() == 0 else {
            print("tandem serve: must run as root (loads BPF programs, attaches XDP)", to: &stderr)
            throw ExitCode(1)
        }
        let level = logLevel
        LoggingSystem.bootstrap { label in LogfmtHandler(label: label, level: level) }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let logger = Logger(label: "tandem")
        do {
            try await Daemon.run(configPath: config, logger: logger, registry: registry)
        } catch let errors as ConfigErrors {
            print(errors.description, to: &stderr)
            print(
                "\(config): \(errors.errors.count) error\(errors.errors.count == 1 ? "" : "s"), nothing applied",
                to: &stderr)
            throw ExitCode(1)
        } catch {
            print("tandem serve: \(error)", to: &stderr)
            throw ExitCode(1)
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
