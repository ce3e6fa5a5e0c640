import Announce
import Configuration
import Control
import ControlAPI
import Dataplane
import Foundation
import Health
import Logging
import Metrics
import Model
import NodeSync
import Prometheus
import Sync

/// The running balancer: the control state, health verdicts and operator
/// commands, serialized by the actor. Every change goes through `commit`,
/// which writes only what differs to the dataplane and, once the write
/// worked, tells the commit observers (the announcer, record sync): what
/// follows a change is theirs, not written after each change here.
public actor Controller {
    public let configPath: String
    let dataplane: any DataplaneProtocol
    let neighbours: any NeighbourResolver
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
    /// This node's name (`node:`, default the hostname).
    public let node: String
    /// Keeps the announce table in step with the VIPs' verdicts.
    let announcer: NodeAnnouncer
    /// Drained flag and announce table, kept in the pinned `node` map.
    private(set) var nodeState: NodeState
    /// Record sync with the peers (`sync:`), nil without.
    private(set) var sync: NodeSync?
    /// Told of every model the dataplane took, in order.
    private var observers: [any CommitObserver]
    private var socketBound = false

    /// A controller over a dataplane that already runs `state`'s model
    /// with `macs` (`Startup` loads the real one; tests pass a model of
    /// it). The announcer is the first commit observer.
    init(
        state: ControlState, macs: [IPAddress: MACAddress], dataplane: any DataplaneProtocol,
        neighbours: any NeighbourResolver, announcer: NodeAnnouncer, configPath: String, logger: Logger,
        registry: PrometheusCollectorRegistry = .init()
    ) {
        self.configPath = configPath
        self.metrics = ControllerMetrics(registry: registry)
        self.logger = logger
        self.node = state.config.nodeName
        self.dataplane = dataplane
        self.neighbours = neighbours
        self.state = state
        self.macs = macs
        self.announcer = announcer
        self.nodeState = dataplane.nodeState
        self.observers = [announcer]
        self.subscribers = Self.subscribers(of: state)
        if let model = dataplane.applied {
            announcer.committed(Committed(model: model))
        }
    }

    /// Builds the model from `next` (with `nextMACs`, else the current
    /// MACs), writes it, and keeps `next` only if the write worked; then
    /// the observers hear of it.
    private func commit(_ next: ControlState, macs nextMACs: [IPAddress: MACAddress]? = nil) throws {
        let macs = nextMACs ?? self.macs
        try dataplane.apply(next.model(macs: macs))
        state = next
        self.macs = macs
        guard let model = dataplane.applied else { return }
        let commit = Committed(model: model)
        for observer in observers { observer.committed(commit) }
    }

    /// Starts record sync: VIPs wait for the pull of the peers' tables.
    /// Sync hears of each commit before the announcer, so the records of a
    /// group a reload adds are sent by the new rules before its VIP is
    /// announced.
    func attachSync(_ sync: NodeSync) {
        self.sync = sync
        announcer.setPullDone(false)
        observers.insert(sync, at: 0)
        if let model = dataplane.applied {
            sync.committed(Committed(model: model))
        }
    }

    /// Installs what the rules allow of records a peer wrote: on the actor,
    /// so an install never comes between a state change and its apply.
    func installSynced(_ records: [SyncRecord], from node: String) -> (installed: Int, rejected: [Rejection: Int]) {
        sync?.install(records, from: node, logger: logger) ?? (0, [:])
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
        do {
            try commit(next, macs: nextMACs)
            for (address, what) in changed {
                logger.notice("real reachable", metadata: ["real": "\(address)", "reason": "\(what)"])
            }
        } catch {
            logger.error("cannot apply a neighbour change", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Readiness

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

    /// The first round of checks is done: the VIPs may be announced.
    func firstRoundDone() { announcer.firstChecksDone() }

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

    /// The probes `state`'s config asks for, each with the (service, real)
    /// verdicts it decides.
    private static func subscribers(of state: ControlState) -> [ProbeTarget: [(service: String, address: IPAddress)]] {
        var subscribers: [ProbeTarget: [(service: String, address: IPAddress)]] = [:]
        for s in state.config.services where s.check.kind != .none {
            for r in s.reals {
                subscribers[ProbeTarget(real: r.address, port: r.port, check: s.check), default: []]
                    .append((s.name, r.address))
            }
        }
        return subscribers
    }

    /// Gives the checker the probes of the config now, each starting from
    /// the verdict the state holds.
    private func updateProbes() {
        subscribers = Self.subscribers(of: state)
        let targets = subscribers.mapValues { subs in
            subs.allSatisfy { state.isHealthy(service: $0.service, address: $0.address) }
        }
        checker?.update(targets)
    }

    /// A probe's verdict changed: every (service, real) it decides follows.
    func healthChanged(_ transition: HealthChecker.Transition) {
        let (target, up) = (transition.target, transition.up)
        guard let subs = subscribers[target] else { return }
        var next = state
        var changed: [String] = []
        for sub in subs where next.setHealth(service: sub.service, address: sub.address, up: up) {
            changed.append(sub.service)
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
        let before = announcer.setDrained(next.drained)
        let after = announcer.announced
        logger.notice("node \(command.action.rawValue)", metadata: ["node": "\(node)"])
        switch command.action {
        case .drain:
            let gone = before.subtracting(after).sorted().map(\.description)
            return "node \(node): draining; "
                + (gone.isEmpty ? "no VIP was announced" : "withdrew \(gone.joined(separator: ", "))")
        case .resume:
            let back = after.subtracting(before).sorted().map(\.description)
            var message =
                "node \(node): resumed; "
                + (back.isEmpty ? "no VIP announced" : "announced \(back.joined(separator: ", "))")
            let withheld = announcer.vips.filter { !after.contains($0) }
                .map { "\($0) (\(announcer.report($0).reason ?? "-"))" }
            if !withheld.isEmpty { message += "; not announced: \(withheld.joined(separator: ", "))" }
            return message
        }
    }

    /// A reload changed `announce`: the table is recorded in the pins (for
    /// `tandem down`) and the routes move to it.
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
        announcer.move(to: table)
    }

    /// Re-reads the config file and applies the difference. A config that
    /// fails validation, or a real whose MAC cannot be found, changes nothing.
    public func reload() async throws -> String {
        do {
            let validated = try ConfigParser.loadValidated(path: configPath)
            let config = validated.config
            let current = state.config
            let fixed = current.restartOnlyChanges(to: config)
            // The secret is read again: a new one takes effect now.
            let secret = try config.sync.map { s in
                do { return try s.readSecret() } catch {
                    throw ControlError("sync.secret-file: \(error) (nothing applied)")
                }
            }
            if fixed.contains("tables") {
                // A restart does not resize them either: the next start
                // refuses pins of another size.
                let pinned = current.tables
                throw ControlError(
                    "\(configPath): tables changed, but the pinned maps keep their sizes (flows \(pinned.flows), records \(pinned.records)) through reloads and restarts: set tables back; a new size needs 'tandem down', which drops every flow and record, then a start (nothing applied)"
                )
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
            try commit(next, macs: macs.merging(resolved) { _, new in new })
            if let secret { sync?.rekey(secret) }
            if config.announce != current.announce { moveAnnouncements(to: config.announce?.table) }
            updateProbes()
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

    // MARK: Reads

    /// A copy of what reads need; cheap, taken on the actor.
    func readView() -> ReadView {
        ReadView(
            dataplane: dataplane, state: state, census: census?.counts, censusAt: census?.at,
            probes: checker?.snapshot() ?? [:], checkStats: checker?.stats(), configPath: configPath,
            started: started, rates: rates, logger: logger, ringDigests: dataplane.ringDigests,
            node: node, announceTable: announcer.table, drained: nodeState.drained, vips: vipReports(),
            syncPeers: sync?.peers().map(PeerStatus.init),
            syncUnsent: sync.map { _ in dataplane.recordEventsLostCount() },
            originNames: sync?.originNames() ?? [:])
    }

    /// Each VIP of the config, in address order, with its services.
    func vipReports() -> [VIPReport] {
        let byVIP = Dictionary(grouping: state.config.services, by: \.vip)
        return byVIP.keys.sorted().map { vip in
            let (announced, reason) = announcer.report(vip)
            return VIPReport(
                vip: vip.description, announced: announced, reason: reason,
                services: byVIP[vip]!.map(\.name))
        }
    }
}
