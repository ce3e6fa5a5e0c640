import Configuration
import Control
import ControlAPI
import Model
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle

/// Prometheus `/metrics` over HTTP, on the config's `metrics` address.
/// Kernel counters are read from the maps at each scrape.
public struct MetricsServer: Service {
    let host: String
    let port: Int
    let controller: Controller
    let group: any EventLoopGroup
    let logger: Logger

    /// `address` is "host:port" or "[v6]:port".
    public init(address: String, controller: Controller, group: any EventLoopGroup, logger: Logger) throws {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
            (1...65535).contains(port)
        else {
            throw ControlError("metrics: \(address) is not host:port")
        }
        var host = String(address[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.host = host
        self.port = port
        self.controller = controller
        self.group = group
        self.logger = logger
    }

    public func run() async throws {
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    return try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(
                        wrappingChannelSynchronously: channel)
                }
            }
        logger.info("metrics endpoint ready", metadata: ["address": "http://\(host):\(port)/metrics"])
        try await serveUntilGracefulShutdown {
            try await server.executeThenClose { connections in
                try await withThrowingDiscardingTaskGroup { tasks in
                    for try await connection in connections {
                        tasks.addTask { try? await serve(connection) }
                    }
                }
            }
        }
    }

    /// Brings the registry up to date with the maps, then renders it; the
    /// maps are read off the actor (see ReadView).
    private func metricsText() async throws -> String {
        let view = await controller.readView()
        let metrics = controller.metrics
        return try await offload { view.metricsText(metrics) }
    }

    private func serve(_ connection: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>) async throws {
        try await connection.executeThenClose { inbound, outbound in
            var uri = ""
            for try await part in inbound {
                switch part {
                case .head(let head): uri = head.uri
                case .body: continue
                case .end:
                    let found = uri == "/metrics" || uri.hasPrefix("/metrics?")
                    let body = found ? try await metricsText() : "only /metrics is here\n"
                    var headers = HTTPHeaders()
                    headers.add(name: "Content-Type", value: found ? "text/plain; version=0.0.4" : "text/plain")
                    headers.add(name: "Content-Length", value: "\(body.utf8.count)")
                    headers.add(name: "Connection", value: "close")
                    try await outbound.write(
                        .head(
                            HTTPResponseHead(
                                version: .http1_1, status: found ? .ok : .notFound,
                                headers: headers)))
                    try await outbound.write(.body(.byteBuffer(ByteBuffer(string: body))))
                    try await outbound.write(.end(nil))
                    return
                }
            }
        }
    }
}

extension ReadView {
    func metricsText(_ metrics: ControllerMetrics) -> String {
        metrics.lock.withLock { render(metrics) }
    }

    private func render(_ metrics: ControllerMetrics) -> String {
        let registry = metrics.registry
        let status = status()
        publishRingDigests(metrics, status.services)
        publishAnnouncements(metrics, status)
        for s in status.services {
            publish(metrics, "tandem_service", [("service", s.name)], s.counters)
            for r in s.reals {
                registry.gauge(
                    "tandem_real_up", labels: [("service", s.name), ("real", r.address)],
                    help: "1 while the real is scheduled in the service (state up)"
                )
                .set(to: r.state == "up" ? 1.0 : 0.0)
                registry.gauge(
                    "tandem_real_health_up", labels: [("service", s.name), ("real", r.address)],
                    help: "1 while the real passes its health check (n/a counts as 1)"
                )
                .set(to: r.health == "down" ? 0.0 : 1.0)
                registry.gauge(
                    "tandem_real_records", labels: [("service", s.name), ("real", r.address)],
                    help: "valid persistence records pointing at the real (its follow group)"
                )
                .set(to: Double(r.records))
                publish(metrics, "tandem_real", [("service", s.name), ("real", r.address)], r.counters)
            }
        }
        for p in status.sync ?? [] {
            let labels = [("peer", p.endpoint), ("node", status.node)]
            registry.gauge("tandem_sync_peer_up", labels: labels, help: "1 while the sync peer was heard from lately")
                .set(to: p.up ? 1 : 0)
            registry.gauge(
                "tandem_sync_peer_lag_seconds", labels: labels,
                help: "receive minus send time of the peer's last sync message (network and clock difference)"
            ).set(to: (p.lagMs ?? 0) / 1000)
            for (name, value, help) in [
                ("tandem_sync_records_sent_total", p.recordsSent, "records sent to the peer"),
                ("tandem_sync_records_received_total", p.recordsReceived, "records received from the peer"),
                ("tandem_sync_records_installed_total", p.recordsInstalled, "records of the peer installed here")
            ] {
                metrics.advance(
                    registry.counter(name, labels: labels, help: help), key: "\(name)/\(p.endpoint)", to: value)
            }
            for (reason, value) in p.rejected {
                metrics.advance(
                    registry.counter(
                        "tandem_sync_rejected_total", labels: labels + [("reason", reason)],
                        help: "sync messages or records refused, by reason"),
                    key: "sync_rejected/\(p.endpoint)/\(reason)", to: value)
            }
        }
        if let unsent = status.syncUnsent {
            metrics.advance(
                registry.counter(
                    "tandem_sync_records_unsent_total", labels: [("node", status.node)],
                    help:
                        "record writes never sent to the peers (the event ring buffer was full)"
                ),
                key: "sync_unsent", to: unsent)
        }
        for (table, used, capacity) in [
            ("flows", status.flows, status.flowCapacity),
            ("records", status.records, status.recordCapacity)
        ] {
            registry.gauge(
                "tandem_table_entries", labels: [("table", table)],
                help: "entries in the flow or persistence table"
            ).set(to: Double(used))
            registry.gauge(
                "tandem_table_capacity", labels: [("table", table)],
                help: "capacity of the flow or persistence table (LRU beyond it)"
            ).set(to: Double(capacity))
        }
        let p = status.pressure
        for (table, written, full) in [
            ("flows", p.flowsWritten, p.flowsWrittenFull), ("records", p.recordsWritten, p.recordsWrittenFull)
        ] {
            metrics.advance(
                registry.counter(
                    "tandem_table_writes_total", labels: [("table", table)],
                    help: "new flows or records written (first packet after a SYN, UDP)"),
                key: "writes/\(table)", to: written)
            metrics.advance(
                registry.counter(
                    "tandem_table_full_writes_total", labels: [("table", table)],
                    help: "writes that found the table full and pushed out its least recently used entry"),
                key: "full/\(table)", to: full)
        }
        for (state, count) in [("none", p.synStateless), ("remembered", p.synRemembered)] {
            metrics.advance(
                registry.counter(
                    "tandem_syns_total", labels: [("state", state)],
                    help:
                        "SYNs forwarded: none = no state written (what a spoofed SYN costs), remembered = choice kept for the ACK"
                ),
                key: "syns/\(state)", to: count)
        }
        if let c = status.checks { publishChecks(metrics, c) }
        for (reason, count) in dataplane.packetReasons() {
            metrics.advance(
                registry.counter(
                    "tandem_packets_total", labels: [("reason", reason.description)],
                    help: "packets passed or dropped by the XDP program, by reason"),
                key: "packets/\(reason)", to: count)
        }
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }

    /// `tandem_service_ring_info{service,digest} 1`, the info-metric idiom:
    /// the digest is a label, so nodes compare with a query. The series of
    /// a digest no longer live (ring changed, service removed) is dropped,
    /// or old digests would linger at 1.
    private func publishRingDigests(_ metrics: ControllerMetrics, _ services: [ServiceReport]) {
        let registry = metrics.registry
        func gauge(_ service: String, _ digest: String) -> Gauge {
            registry.gauge(
                "tandem_service_ring_info", labels: [("service", service), ("digest", digest)],
                help:
                    "1 for the digest of the service's live ring (real addresses, scheduler, hash seed); nodes that pick alike show the same"
            )
        }
        let now = Dictionary(
            services.compactMap { s in s.ringDigest.map { (s.name, $0) } },
            uniquingKeysWith: { a, _ in a })
        for (service, digest) in metrics.ringDigests where now[service] != digest {
            registry.unregisterGauge(gauge(service, digest))
        }
        for (service, digest) in now { gauge(service, digest).set(to: 1) }
        metrics.ringDigests = now
    }

    /// `tandem_vip_announced{vip,node}` 0 or 1 per VIP of the config (a
    /// VIP no longer configured loses its series), and whether the node is
    /// drained.
    private func publishAnnouncements(_ metrics: ControllerMetrics, _ status: StatusReport) {
        let registry = metrics.registry
        func gauge(_ vip: String) -> Gauge {
            registry.gauge(
                "tandem_vip_announced", labels: [("vip", vip), ("node", status.node)],
                help: "1 while the VIP's route is in the announce table: the router sends its traffic to this node")
        }
        let now = Set(status.vips.map(\.vip))
        for vip in metrics.vips.subtracting(now) { registry.unregisterGauge(gauge(vip)) }
        for v in status.vips { gauge(v.vip).set(to: v.announced ? 1 : 0) }
        metrics.vips = now
        registry.gauge(
            "tandem_node_drained", labels: [("node", status.node)],
            help: "1 while tandem node drain is in force (no VIP announced)"
        ).set(to: status.drained ? 1 : 0)
    }

    private func publish(
        _ metrics: ControllerMetrics, _ prefix: String, _ labels: [(String, String)],
        _ c: CountersReport
    ) {
        let registry = metrics.registry
        let key = labels.map { "\($0.0)=\($0.1)" }.joined(separator: ",")
        for (name, value, help) in [
            ("packets_total", c.packets, "packets forwarded or dropped"),
            ("bytes_total", c.bytes, "bytes of those packets"),
            ("new_flows_total", c.newFlows, "flows scheduled"),
            ("persistence_hits_total", c.persistHits, "new flows placed by a record"),
            ("follow_hits_total", c.followHits, "new flows placed by a record another port made"),
            ("drops_total", c.drops, "packets dropped (no real)")
        ] {
            metrics.advance(
                registry.counter("\(prefix)_\(name)", labels: labels, help: "\(prefix): \(help)"),
                key: "\(prefix)_\(name)/\(key)", to: value)
        }
    }
}

/// The Prometheus registry, and the last kernel value behind each counter
/// (the maps count; Prometheus counters only move by increments). One
/// render at a time, under `lock`.
final class ControllerMetrics: @unchecked Sendable {
    let registry: PrometheusCollectorRegistry
    let lock = NSLock()
    private var last: [String: UInt64] = [:]
    /// The ring digest last published per service name (under `lock`).
    var ringDigests: [String: String] = [:]
    /// The VIPs last published in `tandem_vip_announced` (under `lock`).
    var vips: Set<String> = []

    init(registry: PrometheusCollectorRegistry) { self.registry = registry }

    func advance(_ counter: Prometheus.Counter, key: String, to value: UInt64) {
        let previous = last[key] ?? 0
        // A counter that went back (a service re-created) restarts from its new value.
        let delta = value >= previous ? value - previous : value
        if delta > 0 { counter.increment(by: Int64(clamping: delta)) }
        last[key] = value
    }
}

extension ReadView {
    /// Whether the health checks keep up with their schedule.
    func publishChecks(_ metrics: ControllerMetrics, _ c: ChecksReport) {
        let registry = metrics.registry
        for (name, value, help) in [
            ("tandem_health_probes", Double(c.probes), "distinct health probes running (shared checks count once)"),
            (
                "tandem_health_checks_scheduled_per_second", c.scheduledPerSecond,
                "checks a second the intervals ask for"
            ),
            ("tandem_health_checks_done_per_second", c.donePerSecond, "checks started a second in the latest round"),
            (
                "tandem_health_round_lateness_seconds", c.latenessSeconds,
                "how late the latest round's latest check started"
            ),
            ("tandem_health_behind", c.behind ? 1 : 0, "1 while checks are skipped or run over a tenth of a round late")
        ] {
            registry.gauge(name, labels: [], help: help).set(to: value)
        }
        metrics.advance(
            registry.counter(
                "tandem_health_checks_missed_total", labels: [],
                help: "checks skipped because the checker was a whole interval behind"),
            key: "health/missed", to: c.missedTotal)
    }
}

extension PrometheusCollectorRegistry {
    /// A gauge under its full name ("tandem_real_up"): no unit suffix added.
    func gauge(_ name: String, labels: [(String, String)], help: String) -> Gauge {
        makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
    }

    /// A counter under its full name ("tandem_packets_total").
    func counter(_ name: String, labels: [(String, String)], help: String) -> Prometheus.Counter {
        makeCounter(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help), labels: labels)
    }
}
