import Configuration
import Control
import ControlAPI
import Dataplane
import Foundation
import Health
import Logging
import Model
import Sync

/// What the read commands need, copied from the controller's actor in
/// O(config): the scans of a full record table behind `status`,
/// `persistence list|flush` and `/metrics` then run without holding the
/// actor, so a health transition is applied while a slow read goes on.
struct ReadView: Sendable {
    let dataplane: any DataplaneProtocol
    let state: ControlState
    /// The latest count of the tables (RecordCensus), nil before the first.
    let census: Dataplane.Census?
    let censusAt: ContinuousClock.Instant?
    let probes: [ProbeTarget: ProbeStatus]
    var checkStats: CheckerStats? = nil
    let configPath: String
    let started: ContinuousClock.Instant
    let rates: RateTracker
    let logger: Logger
    /// Ring digests by service id, copied here because the dataplane keeps
    /// them in memory, written by `apply` on the actor.
    let ringDigests: [UInt32: RingDigest]
    /// This node's name, whether it is drained, and each VIP's announcement.
    var node = ""
    var announceTable: UInt32? = nil
    var drained = false
    var vips: [VIPReport] = []
    /// Record sync peers (nil without sync) and the names of record writers.
    var syncPeers: [PeerStatus]? = nil
    var syncUnsent: UInt64? = nil
    var originNames: [UInt32: String] = [:]
}

/// What `status`, `stats` and `persistence` read: the maps, named with the
/// config's service names and real addresses.
extension ReadView {
    func status() -> StatusReport {
        let fill = census ?? Dataplane.Census()
        let perReal = fill.validPerReal
        let config = state.config
        let services = config.services.map { s -> ServiceReport in
            let id = state.serviceID(s.name) ?? 0
            let group = state.groupID(s.name) ?? 0
            let counters = dataplane.counters(service: id)
            let reals = s.reals.map { r -> RealReport in
                let rid = state.ids.reals[RealKey(group: group, address: r.address)] ?? 0
                let target = ProbeTarget(real: r.address, port: r.port, check: s.check)
                var lastCheck: String?
                if case .failure(let why)? = probes[target]?.last { lastCheck = why }
                if state.unreachable.contains(r.address) { lastCheck = "no answer to ARP/NDP on \(config.interface)" }
                return RealReport(
                    address: r.address.description, port: Int(r.port), weight: Int(r.weight),
                    state: state.reason(service: s, address: r.address).rawValue,
                    health: s.check.kind == .none
                        ? "n/a" : (state.isHealthy(service: s.name, address: r.address) ? "up" : "down"),
                    lastCheck: lastCheck, records: perReal[rid] ?? 0,
                    counters: dataplane.counters(service: id, real: rid))
            }
            return ServiceReport(
                name: s.name, vip: s.vip.description, port: Int(s.port), proto: s.proto == .tcp ? "tcp" : "udp",
                scheduler: s.scheduler.rawValue, group: Int(group),
                follows: state.group(of: s.name).filter { $0 != s.name },
                persistence: s.persistence.map { "source-ip \(DurationText.format($0.timeoutNs)) /\($0.netmask)" },
                check: s.check.summary, failover: s.failover.rawValue, dropOnFailure: s.dropOnFailure,
                sorry: s.sorry.map { "\($0.address):\($0.port)" },
                counters: counters, rates: rates.rate(s.name, counters), reals: reals,
                ringDigest: ringDigests[id]?.description)
        }
        let uptime = started.duration(to: .now)
        return StatusReport(
            interface: config.interface, xdpMode: config.xdpMode.rawValue, pinDirectory: config.pinDirectory,
            configPath: configPath,
            uptimeSeconds: uptime.inSeconds,
            flows: fill.flows, flowCapacity: fill.flowCapacity, records: fill.validRecords,
            recordCapacity: fill.recordCapacity,
            countedSecondsAgo: censusAt.map { $0.duration(to: .now).inSeconds },
            pressure: dataplane.tableCounters(), services: services,
            node: node, announceTable: announceTable, drained: drained, vips: vips, sync: syncPeers,
            syncUnsent: syncUnsent,
            checks: checkStats.flatMap { $0.probes > 0 ? ChecksReport($0) : nil })
    }

    func stats() -> StatsReport {
        let fill = census ?? Dataplane.Census()
        let services = state.config.services.map { s -> ServiceStats in
            let counters = dataplane.counters(service: state.serviceID(s.name) ?? 0)
            return ServiceStats(name: s.name, counters: counters, rates: rates.rate(s.name, counters))
        }
        let packets = Dictionary(
            dataplane.packetReasons().map { ($0.key.description, $0.value) },
            uniquingKeysWith: { a, _ in a })
        return StatsReport(
            services: services, packets: packets, flows: fill.flows, flowCapacity: fill.flowCapacity,
            records: fill.validRecords, recordCapacity: fill.recordCapacity,
            pressure: dataplane.tableCounters())
    }

    /// The valid records `filter` selects, handed to `send` in batches of
    /// up to `batchSize`, each sorted by group and client: the daemon holds
    /// one batch at a time whatever the table size. Throws before sending
    /// anything when the filter names an unknown service or real.
    func records(
        _ filter: RecordFilter, batchSize: Int = 4096,
        send: ([RecordReport]) throws -> Void
    ) throws {
        let match = try matcher(filter)
        let now = KernelClock.monotonicNs()
        let names = serviceNamesByID()
        let groupNames = Dictionary(grouping: state.config.services, by: { state.groupID($0.name) ?? 0 })
            .mapValues { $0.map(\.name) }
        var pending: [Dataplane.Record] = []
        func flush() throws {
            guard !pending.isEmpty else { return }
            pending.sort { a, b in a.group != b.group ? a.group < b.group : a.client < b.client }
            try send(
                pending.map { r in
                    RecordReport(
                        group: Int(r.group), services: groupNames[r.group] ?? [], client: r.client.description,
                        real: state.ids.address[r.real]?.description ?? "#\(r.real)",
                        service: names[r.service] ?? "#\(r.service)",
                        ageSeconds: Double(now &- min(now, r.lastSeenNs)) / 1e9,
                        node: r.origin == 0 ? node : originNames[r.origin] ?? String(format: "node-%08x", r.origin))
                })
            pending.removeAll(keepingCapacity: true)
        }
        try dataplane.forEachRecordBatch { batch in
            for r in batch where r.valid && match(r) {
                pending.append(r)
                if pending.count >= batchSize { try flush() }
            }
        }
        try flush()
    }

    func flush(_ filter: RecordFilter) throws -> String {
        let match = try matcher(filter)
        let deleted = try dataplane.deleteRecords(matching: match)
        logger.notice(
            "records flushed",
            metadata: [
                "service": "\(filter.service ?? "*")",
                "client": "\(filter.client ?? "*")",
                "real": "\(filter.real ?? "*")", "count": "\(deleted)"
            ])
        return "flushed \(deleted) record\(deleted == 1 ? "" : "s")"
    }

    /// A predicate for `filter`, or an error naming the bad field.
    private func matcher(_ filter: RecordFilter) throws -> @Sendable (Dataplane.Record) -> Bool {
        var group: UInt32?
        if let name = filter.service {
            guard let g = state.groupID(name) else {
                throw ControlError("no service named \(name) (see 'tandem status')")
            }
            group = g
        }
        var network: (IPAddress, Int)?
        if let text = filter.client {
            network = try RecordFilter.parseCIDR(text)
        }
        var realIDs: Set<UInt32>?
        if let text = filter.real {
            guard let address = IPAddress(text) else { throw ControlError("--real \(text) is not an IP address") }
            let ids = Set(state.ids.reals.filter { $0.key.address == address }.map(\.value))
            if ids.isEmpty { throw ControlError("no service has a real \(address)") }
            realIDs = ids
        }
        let (wantGroup, wantNetwork, wantReals) = (group, network, realIDs)
        return { r in
            if let group = wantGroup, r.group != group { return false }
            if let (net, prefix) = wantNetwork {
                guard r.client.family == net.family, r.client.masked(prefix: prefix) == net else { return false }
            }
            if let wantReals, !wantReals.contains(r.real) { return false }
            return true
        }
    }

    private func serviceNamesByID() -> [UInt32: String] {
        var names: [UInt32: String] = [:]
        for s in state.config.services { if let id = state.serviceID(s.name) { names[id] = s.name } }
        return names
    }

}

extension ChecksReport {
    init(_ s: CheckerStats) {
        self.init(
            probes: s.probes, scheduledPerSecond: s.scheduledPerSecond, donePerSecond: s.donePerSecond,
            roundSeconds: Double(s.roundNs) / 1e9, latenessSeconds: Double(s.latenessNs) / 1e9, missed: s.missed,
            missedTotal: s.missedTotal, behind: s.behind, tcpChecks: s.tcpPath)
    }
}

extension PeerStatus {
    init(_ r: PeerReport) {
        self.init(
            endpoint: r.endpoint, node: r.node, up: r.up, recordsSent: r.recordsSent,
            recordsReceived: r.recordsReceived, recordsInstalled: r.recordsInstalled, sendErrors: r.sendErrors,
            rejected: r.rejected, lagMs: r.lagMs, lastHeardSeconds: r.lastHeardSeconds)
    }
}

/// Per-service rates from counter samples at least a second apart.
final class RateTracker: @unchecked Sendable {
    private var last: [String: (at: ContinuousClock.Instant, counters: CountersReport)] = [:]
    private var rates: [String: RatesReport] = [:]
    private let lock = NSLock()

    /// Reads run concurrently (ReadView): one update at a time.
    func rate(_ name: String, _ counters: CountersReport) -> RatesReport {
        lock.withLock { update(name, counters) }
    }

    private func update(_ name: String, _ counters: CountersReport) -> RatesReport {
        let now = ContinuousClock.now
        guard let previous = last[name] else {
            last[name] = (now, counters)
            return RatesReport()
        }
        let elapsed = previous.at.duration(to: now)
        let seconds = elapsed.inSeconds
        if seconds >= 1 {
            var r = RatesReport()
            r.packetsPerSecond = Double(counters.packets &- previous.counters.packets) / seconds
            r.bytesPerSecond = Double(counters.bytes &- previous.counters.bytes) / seconds
            r.newFlowsPerSecond = Double(counters.newFlows &- previous.counters.newFlows) / seconds
            rates[name] = r
            last[name] = (now, counters)
        }
        return rates[name] ?? RatesReport()
    }
}
