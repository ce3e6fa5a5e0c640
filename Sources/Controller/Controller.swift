import BPF
import Configuration
import Control
import Model
import Dataplane
import Foundation
import Glibc
import Health
import Logging
import Metrics
import NIOCore
import Prometheus
import Sync

/// The running balancer: the dataplane, the control state, health
/// verdicts and operator commands, serialized by the actor. Every change
/// goes through `commit`, which writes only what differs to the maps.
public actor Controller {
    public let configPath: String
    let dataplane: Dataplane
    let link: XDPLink
    let neighbours: Neighbours
    let logger: Logger
    let started = ContinuousClock.now
    private(set) var state: ControlState
    private var macs: [IPAddress: MACAddress]
    private(set) var checker: HealthChecker?
    /// Probe target -> the (service, real) verdicts it decides.
    private var subscribers: [ProbeTarget: [(service: String, address: IPAddress)]] = [:]
    let rates = RateTracker()
    /// The latest count of the tables, by RecordCensus.
    private(set) var census: (counts: Dataplane.Census, at: ContinuousClock.Instant)?
    let metrics: ControllerMetrics
    public private(set) var events = Events()
    /// This node's name (`node:`, default the hostname).
    public let node: String
    /// Keeps the announce table in step with the VIPs' verdicts.
    private(set) var announcer: Announcer
    /// Drained flag and announce table, kept in the pinned `node` map.
    private(set) var nodeState: NodeState
    /// XDP was adopted from pins: forwarding went on since a previous run.
    let adopted: Bool
    /// Every health check ran once (Readiness says so).
    private(set) var firstChecksDone = false
    /// Record sync with the peers (`sync:`), nil without.
    private(set) var sync: NodeSync?
    /// Node names by the id synced records carry in `origin`.
    var syncNames: [UInt32: String] = [:]
    /// `syncView()`'s, with the `appliedVersion` it was built for.
    var syncViewCache: (version: UInt64, view: SyncView)?
    /// The peers' tables were pulled (or the pull gave up); true without sync.
    var pullDone = true

    /// Counts a user would graph: how often things changed.
    public struct Events: Sendable {
        public var transitions: [String: UInt64] = [:]
        public var reloads = 0
        public var failedReloads = 0
    }

    /// Loads (or adopts) the dataplane under the config's pin directory,
    /// writes the config into it and makes sure XDP runs on the interface.
    /// Nothing on the NIC changes unless every step before attaching worked.
    public init(
        _ validated: ValidatedConfig, configPath: String, logger: Logger,
        group: any EventLoopGroup, registry: PrometheusCollectorRegistry = .init()
    ) async throws {
        self.configPath = configPath
        self.metrics = ControllerMetrics(registry: registry)
        self.logger = logger
        let config = validated.config
        self.node = config.nodeName
        _ = try Interface.index(config.interface)
        try BPFFS.prepare(directory: config.pinDirectory)
        let dataplane = try Dataplane(
            pinRoot: config.pinDirectory, tables: config.tables,
            verifierLogPath: "/tmp/tandem-verifier.log")
        let pinned = dataplane.pinnedState()
        var state = try ControlState(validated, adopting: pinned)
        let neighbours = Neighbours(interface: config.interface, group: group)
        // A real that does not answer ARP/NDP does not stop the start: it
        // keeps the MAC the pinned maps have for it (a restart during its
        // outage), or is out of service until NeighbourWatch finds it.
        var macs: [IPAddress: MACAddress] = [:]
        for real in pinned.reals where real.active { if let mac = real.mac { macs[real.address] = mac } }
        macs.merge(try await neighbours.resolve(state.realAddresses)) { _, resolved in resolved }
        for address in state.realAddresses where macs[address] == nil {
            state.setReachable(address, false)
            logger.warning(
                "real unreachable",
                metadata: [
                    "real": "\(address)",
                    "reason": "no answer to ARP/NDP on \(config.interface); out of service until it answers"
                ])
        }
        let model = state.model(macs: macs)
        try dataplane.apply(model)

        let linkPath = config.pinDirectory + "/link"
        let ifindex = try Interface.index(config.interface)
        var adopted: XDPLink?
        if FileManager.default.fileExists(atPath: linkPath) {
            let pinnedLink = try XDPLink.pinned(at: linkPath, interface: config.interface)
            if pinnedLink.attachedIndex == ifindex {
                adopted = pinnedLink
            } else {
                // Its interface is gone or is another one: that link forwards nothing here.
                logger.warning(
                    "pinned XDP link is not on the configured interface; attaching anew",
                    metadata: ["link": "\(linkPath)", "interface": "\(config.interface)"])
                try? pinnedLink.detach()
                unlink(linkPath)
            }
        }
        let link: XDPLink
        if let adopted {
            // A previous `tandem serve` left forwarding running: take it over.
            try adopted.update(to: dataplane.program)
            link = adopted
            let fill = dataplane.tableFill()
            logger.info(
                "adopted pinned dataplane",
                metadata: [
                    "pins": "\(config.pinDirectory)", "services": "\(pinned.services.count)",
                    "records": "\(fill.records)", "flows": "\(fill.flows)"
                ])
        } else {
            link = try XDPLink.attach(
                dataplane.program, interface: config.interface,
                mode: config.xdpMode)
            try link.pin(at: linkPath)
            logger.info(
                "attached XDP",
                metadata: [
                    "interface": "\(config.interface)",
                    "mode": "\(config.xdpMode.rawValue)"
                ])
        }
        self.dataplane = dataplane
        self.link = link
        self.neighbours = neighbours
        self.state = state
        self.macs = macs
        self.adopted = adopted != nil
        // Routes a previous run put in a table the config no longer names go.
        var nodeState = dataplane.nodeState
        let table = config.announce?.table
        if let old = nodeState.announceTable, old != table {
            var previous = Announcer(table: old, interface: config.interface, logger: logger)
            previous.withdrawAll(
                reason: table.map { "the announce table is now \($0)" } ?? "announce is no longer configured")
        }
        nodeState.announceTable = table
        try dataplane.setNodeState(nodeState)
        self.nodeState = nodeState
        self.announcer = Announcer(table: table, interface: config.interface, logger: logger)
        if nodeState.drained {
            logger.notice("node drained: no VIP is announced until 'tandem node resume'", metadata: ["node": "\(node)"])
        }
    }

    /// Starts record sync: VIPs wait for the pull of the peers' tables.
    func attachSync(_ sync: NodeSync) {
        self.sync = sync
        pullDone = false
        announce()
    }

    func updateCensus(_ counts: Dataplane.Census, at time: ContinuousClock.Instant) {
        census = (counts, time)
    }

    // MARK: Neighbours

    /// Looks again for the MAC of every real: those that were unreachable
    /// and now answer go into service, a MAC that changed (a replaced
    /// server, a moved address) is written. Run by NeighbourWatch.
    func refreshNeighbours(all: Bool) async {
        let addresses = all ? state.realAddresses : state.unreachable.intersection(state.realAddresses)
        guard !addresses.isEmpty else { return }
        let found: [IPAddress: MACAddress]
        do {
            found = try await neighbours.resolve(addresses, timeout: .seconds(1))
        } catch {
            logger.warning("cannot read the neighbour table", metadata: ["error": "\(error)"])
            return
        }
        var next = state
        var changed: [(IPAddress, String)] = []
        var nextMACs = macs
        for (address, mac) in found {
            if next.setReachable(address, true) { changed.append((address, "answers ARP/NDP again")) }
            if let old = macs[address], old != mac { changed.append((address, "MAC changed from \(old) to \(mac)")) }
            nextMACs[address] = mac
        }
        guard !changed.isEmpty else { return }
        let model = next.model(macs: nextMACs)
        do {
            try dataplane.apply(model)
            state = next
            macs = nextMACs
            syncModelApplied()
            announce()
            for (address, what) in changed {
                logger.notice("real reachable", metadata: ["real": "\(address)", "reason": "\(what)"])
            }
        } catch {
            logger.error("cannot apply a neighbour change", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Readiness

    private var socketBound = false

    /// The control socket accepts connections.
    func controlSocketBound() { socketBound = true }

    /// Whether the socket is up, and how many probes ran once or not yet.
    func readiness() -> (socket: Bool, checked: Int, pending: Int) {
        let probes = checker?.snapshot() ?? [:]
        let pending = probes.values.filter { $0.checks == 0 }.count
        return (socketBound, probes.count - pending, pending)
    }

    /// How long the first round of checks may take: the slowest interval
    /// (the first probe waits up to one) plus its timeout, twice.
    func firstRoundPatience() -> Duration {
        let worst = state.config.services.map { $0.check.timing.intervalNs + $0.check.timing.timeoutNs }.max() ?? 0
        return .nanoseconds(Int64(clamping: 2 * worst)) + .seconds(1)
    }

    // MARK: Health

    /// Probes every (service, real) whose check is not `none` with
    /// `checker`, from now on and after each reload.
    public func startHealthChecks(_ checker: HealthChecker) {
        self.checker = checker
        updateProbes()
    }

    /// Applies the checker's transitions one at a time, in the order the
    /// checker saw them, until it stops.
    public func followHealth(_ checker: HealthChecker) async {
        for await transition in checker.transitions {
            healthChanged(transition)
        }
    }

    public func stopHealthChecks() {
        checker?.stop()
        checker = nil
    }

    private func updateProbes() {
        var subscribers: [ProbeTarget: [(service: String, address: IPAddress)]] = [:]
        for s in state.config.services where s.check.kind != .none {
            for r in s.reals {
                subscribers[ProbeTarget(real: r.address, port: r.port, check: s.check), default: []]
                    .append((s.name, r.address))
            }
        }
        self.subscribers = subscribers
        let targets = subscribers.mapValues { subs in
            subs.allSatisfy { state.isHealthy(service: $0.service, address: $0.address) }
        }
        checker?.update(targets)
    }

    func healthChanged(_ transition: HealthChecker.Transition) {
        let (target, up) = (transition.target, transition.up)
        guard let subs = subscribers[target] else { return }
        var next = state
        var changed: [String] = []
        for sub in subs where next.setHealth(service: sub.service, address: sub.address, up: up) {
            changed.append(sub.service)
            events.transitions[up ? "up" : "down", default: 0] += 1
            Metrics.Counter(label: "tandem_health_transitions_total", dimensions: [("to", up ? "up" : "down")])
                .increment()
        }
        guard !changed.isEmpty else { return }
        do {
            try commit(next)
            for service in changed {
                logger.notice(
                    up ? "real up" : "real down",
                    metadata: [
                        "service": "\(service)", "real": "\(target.address)", "reason": "\(transition.reason)",
                        "group": "\(state.group(of: service).joined(separator: ","))"
                    ])
            }
        } catch {
            logger.error("cannot apply a health change", metadata: ["real": "\(target.address)", "error": "\(error)"])
        }
    }

    /// Builds the model from `next`, writes it, and keeps `next` only if
    /// the write worked; the announcements follow.
    private func commit(_ next: ControlState) throws {
        let model = next.model(macs: macs)
        try dataplane.apply(model)
        state = next
        syncModelApplied()
        announce()
    }

    // MARK: Announcing

    /// Brings the announce table in line with the rules (`Announcement`),
    /// from what the dataplane was last given. Run after every change and
    /// periodically (AnnounceWatch), which also restores a route someone
    /// deleted and sees XDP detached behind Tandem's back.
    func announce() {
        let facts = Announcement.Facts(
            table: announcer.table != nil, attached: link.attachedIndex != nil, firstChecksDone: firstChecksDone,
            drained: nodeState.drained, adopted: adopted,
            usable: Announcement.usable(dataplane.applied ?? state.model(macs: macs)), pullDone: pullDone)
        announcer.reconcile(Announcement.decide(facts))
    }

    /// A reload changed `announce`: the routes leave the old table and go
    /// into the new one (none when `announce` was removed).
    private func moveAnnouncements(to table: UInt32?) {
        var next = nodeState
        next.announceTable = table
        do {
            try dataplane.setNodeState(next)
            nodeState = next
        } catch {
            // Only `tandem down` without a config reads it; the routes move anyway.
            logger.error("cannot record the announce table in the pins", metadata: ["error": "\(error)"])
        }
        announcer.withdrawAll(
            reason: table.map { "the announce table is now \($0)" } ?? "announce is no longer configured")
        announcer = Announcer(table: table, interface: state.config.interface, logger: logger)
        announce()
    }

    /// The first round of checks is done: the VIPs may be announced.
    func firstRoundDone() {
        guard !firstChecksDone else { return }
        firstChecksDone = true
        announce()
    }

    /// `tandem node drain` and `resume`: the flag is pinned, so a drained
    /// node stays drained through restarts until resumed.
    private func setNode(_ command: NodeCommand) throws -> String {
        var next = nodeState
        next.drained = command.action == .drain
        guard next != nodeState else {
            return "node \(node): already \(command.action == .drain ? "draining" : "announcing (not drained)")"
        }
        try dataplane.setNodeState(next)
        nodeState = next
        let before = announcer.announced
        announce()
        logger.notice("node \(command.action.rawValue)", metadata: ["node": "\(node)"])
        let vips = announcer.verdicts.keys.sorted()
        switch command.action {
        case .drain:
            let gone = before.subtracting(announcer.announced).sorted().map(\.description)
            return "node \(node): draining; "
                + (gone.isEmpty ? "no VIP was announced" : "withdrew \(gone.joined(separator: ", "))")
        case .resume:
            let back = announcer.announced.subtracting(before).sorted().map(\.description)
            var message =
                "node \(node): resumed; "
                + (back.isEmpty ? "no VIP announced" : "announced \(back.joined(separator: ", "))")
            let withheld = vips.filter { !announcer.announced.contains($0) }
                .map { "\($0) (\(announcer.report($0).reason ?? "-"))" }
            if !withheld.isEmpty { message += "; not announced: \(withheld.joined(separator: ", "))" }
            return message
        }
    }

    // MARK: Requests

    public func handle(_ request: ControlRequest) async -> ControlResponse {
        do {
            switch request {
            // The control socket serves reads off the actor (ReadView); these
            // are for callers that hold the actor anyway.
            case .status: return ControlResponse(status: readView().status())
            case .stats: return ControlResponse(stats: readView().stats())
            case .listRecords(let filter):
                var all: [RecordReport] = []
                try readView().records(filter) { all += $0 }
                return ControlResponse(records: all)
            case .flushRecords(let filter): return ControlResponse(message: try readView().flush(filter))
            case .setReal(let command): return ControlResponse(message: try setReal(command))
            case .node(let command): return ControlResponse(message: try setNode(command))
            case .reload: return ControlResponse(message: try await reload())
            }
        } catch {
            return ControlResponse(error: "\(error)")
        }
    }

    /// Re-reads the config file and applies the difference. A config that
    /// fails validation, or a real whose MAC cannot be found, changes nothing.
    public func reload() async throws -> String {
        do {
            let validated = try ConfigParser.loadValidated(path: configPath)
            let config = validated.config
            let current = state.config
            var fixed: [String] = []
            if config.interface != current.interface { fixed.append("interface") }
            if config.xdpMode != current.xdpMode { fixed.append("xdp-mode") }
            if config.pinDirectory != current.pinDirectory { fixed.append("pin-directory") }
            if config.socket != current.socket { fixed.append("socket") }
            if config.metrics != current.metrics { fixed.append("metrics") }
            if config.node != current.node { fixed.append("node") }
            if config.sync?.listen != current.sync?.listen { fixed.append("sync.listen") }
            if config.sync?.peers != current.sync?.peers { fixed.append("sync.peers") }
            // The secret is read again: a new one takes effect now.
            let secret = try config.sync.map { s in
                do { return try s.readSecret() } catch {
                    throw ControlError("sync.secret-file: \(error) (nothing applied)")
                }
            }
            if !fixed.isEmpty {
                throw ControlError(
                    "\(configPath): \(fixed.joined(separator: ", ")) changed; these take effect only when tandem serve restarts (nothing applied)"
                )
            }
            var next = state
            try next.reload(validated)
            let newAddresses = next.realAddresses.subtracting(macs.keys)
            let resolved = try await neighbours.resolve(newAddresses)
            // New reals that do not answer yet are out of service, not an error.
            for address in newAddresses where resolved[address] == nil { next.setReachable(address, false) }
            let before = Set(state.config.services.map(\.name))
            let after = Set(config.services.map(\.name))
            macs.merge(resolved) { _, new in new }
            try commit(next)
            if let secret { sync?.engine.rekey(secret) }
            if config.announce != current.announce { moveAnnouncements(to: config.announce?.table) }
            updateProbes()
            events.reloads += 1
            Metrics.Counter(label: "tandem_reloads_total", dimensions: [("result", "applied")]).increment()
            // Reals that joined or left services that stay, by service.
            let oldReals = Dictionary(
                current.services.map { ($0.name, Set($0.reals.map(\.address))) }, uniquingKeysWith: { a, _ in a })
            var realsAdded: [String] = [], realsRemoved: [String] = []
            for s in config.services {
                guard let was = oldReals[s.name] else { continue }
                let now = Set(s.reals.map(\.address))
                realsAdded += now.subtracting(was).sorted().map { "\(s.name)/\($0)" }
                realsRemoved += was.subtracting(now).sorted().map { "\(s.name)/\($0)" }
            }
            let summary =
                "reloaded \(configPath): \(config.services.count) services (\(after.subtracting(before).count) added, \(before.subtracting(after).count) removed), reals \(realsAdded.count) added, \(realsRemoved.count) removed"
            logger.notice(
                "reloaded",
                metadata: [
                    "config": "\(configPath)", "services": "\(config.services.count)",
                    "added": "\(after.subtracting(before).sorted().joined(separator: ","))",
                    "removed": "\(before.subtracting(after).sorted().joined(separator: ","))",
                    "reals_added": "\(realsAdded.joined(separator: ","))",
                    "reals_removed": "\(realsRemoved.joined(separator: ","))"
                ])
            return summary
        } catch let errors as ConfigErrors {
            events.failedReloads += 1
            Metrics.Counter(label: "tandem_reloads_total", dimensions: [("result", "refused")]).increment()
            logger.error(
                "reload refused",
                metadata: [
                    "config": "\(configPath)", "errors": "\(errors.errors.count)",
                    "error": "\(errors.errors.map(\.description).joined(separator: "; "))"
                ])
            throw ControlError(
                errors.description
                    + "\n\(configPath): \(errors.errors.count) error\(errors.errors.count == 1 ? "" : "s"), nothing applied"
            )
        } catch {
            events.failedReloads += 1
            Metrics.Counter(label: "tandem_reloads_total", dimensions: [("result", "refused")]).increment()
            logger.error("reload refused", metadata: ["config": "\(configPath)", "error": "\(error)"])
            throw error
        }
    }

    private func setReal(_ command: RealCommand) throws -> String {
        guard let address = IPAddress(command.address) else {
            throw ControlError("\(command.address) is not an IP address")
        }
        let state: Config.RealState =
            switch command.action {
            case .enable: .enabled
            case .disable: .disabled
            case .drain: .drain
            }
        var next = self.state
        let services = try next.setOperator(state, address: address, service: command.service)
        try commit(next)
        for service in services {
            logger.notice(
                "operator \(command.action.rawValue)", metadata: ["service": "\(service)", "real": "\(address)"])
        }
        let done =
            switch command.action {
            case .enable: "enabled"
            case .disable: "disabled"
            case .drain: "draining"
            }
        return "\(address): \(done) in \(services.joined(separator: ", "))"
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
