import Configuration
import Model

/// Everything `tandem serve` decides, in pure Swift: the config, the stable
/// ids, health and operator states, and the `DataplaneModel` they produce.
///
/// Ids outlive reloads and restarts (they are recovered from the pinned
/// maps), because flows and records name services and reals by id. A real
/// id stands for one address in one follow group, so `invalidate(real:)`
/// clears that real's records for the whole group in O(1).
///
/// State changes (`setHealth`, `setOperator`, `reload`) are where records
/// are invalidated; `model(macs:)` only reads.
public struct ControlState: Sendable {
    public private(set) var config: Config
    public private(set) var groups: [[String]]
    public private(set) var ids: Identities
    /// Health verdicts that are down, per service name (absent = up).
    public private(set) var healthDown: [String: Set<IPAddress>] = [:]
    /// Operator states that are not `enabled`, per service name.
    public private(set) var operatorState: [String: [IPAddress: Config.RealState]] = [:]
    /// Real ids out of scheduling for a failure (down or disabled), as of
    /// the last state change.
    public private(set) var failed: Set<UInt32> = []
    /// Lookups by service name, rebuilt with the config.
    private var byName: [String: Config.Service] = [:]
    private var groupOf: [String: [String]] = [:]

    private mutating func index() {
        byName = Dictionary(config.services.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        groupOf = [:]
        for g in groups { for name in g { groupOf[name] = g } }
    }

    public init(_ validated: ValidatedConfig, adopting pinned: PinnedState = PinnedState()) throws {
        let config = validated.config, groups = validated.groups
        self.config = config
        self.groups = groups
        ids = Identities(adopting: pinned)
        index()
        let reused = try ids.assign(validated)
        for s in config.services {
            for r in s.reals where r.state != .enabled { operatorState[s.name, default: [:]][r.address] = r.state }
        }
        adoptStates(pinned)
        for rid in reused { invalidate(real: rid, flows: true) }
        invalidateNewFailures()
    }

    /// A restarted controller keeps what the maps say: reals that were
    /// down stay down until they pass `rise` checks, operator states stay.
    private mutating func adoptStates(_ pinned: PinnedState) {
        let byID = Dictionary(pinned.services.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let address = Dictionary(pinned.reals.map { ($0.id, $0.address) }, uniquingKeysWith: { a, _ in a })
        let byKey = Dictionary(config.services.map { (ServiceKey($0), $0) }, uniquingKeysWith: { a, _ in a })
        for b in pinned.backends {
            guard let ps = byID[b.service], let addr = address[b.real], let s = byKey[ps.key] else { continue }
            switch b.state {
            case .up: break
            case .draining:
                if operatorState[s.name]?[addr] == nil { operatorState[s.name, default: [:]][addr] = .drain }
            case .disabled:
                if operatorState[s.name]?[addr] == nil { operatorState[s.name, default: [:]][addr] = .disabled }
            case .down:
                // Only the service that failed matters; the group follows.
                healthDown[s.name, default: []].insert(addr)
            }
            if b.state == .down || b.state == .disabled { failed.insert(b.real) }
        }
    }

    // MARK: Changes

    /// Replaces the config (already validated). Ids of services and reals
    /// still present are kept; states of reals no longer present are dropped.
    public mutating func reload(_ validated: ValidatedConfig) throws {
        let config = validated.config, groups = validated.groups
        var next = ids
        let reused = try next.assign(validated)
        ids = next
        // A reused id had an earlier owner: nothing of theirs may match.
        for rid in reused { invalidate(real: rid, flows: true) }
        self.config = config
        self.groups = groups
        index()
        let present = Dictionary(
            config.services.map { ($0.name, Set($0.reals.map(\.address))) },
            uniquingKeysWith: { a, _ in a })
        var health: [String: Set<IPAddress>] = [:]
        for (name, down) in healthDown {
            let kept = down.intersection(present[name] ?? [])
            if !kept.isEmpty { health[name] = kept }
        }
        healthDown = health
        var states: [String: [IPAddress: Config.RealState]] = [:]
        for s in config.services {
            for r in s.reals where r.state != .enabled { states[s.name, default: [:]][r.address] = r.state }
        }
        // An operator's command outlives a reload unless the file says otherwise now.
        for (name, map) in operatorState {
            for (addr, state) in map where present[name]?.contains(addr) == true && states[name]?[addr] == nil {
                let inFile = config.services.first { $0.name == name }?.reals.first { $0.address == addr }?.state
                if inFile == .enabled { states[name, default: [:]][addr] = state }
            }
        }
        operatorState = states
        invalidateNewFailures()
    }

    /// Records a health verdict; true when it changed anything.
    @discardableResult
    public mutating func setHealth(service: String, address: IPAddress, up: Bool) -> Bool {
        let was = healthDown[service]?.contains(address) ?? false
        if up == !was { return false }
        if up { healthDown[service]?.remove(address) } else { healthDown[service, default: []].insert(address) }
        invalidateNewFailures()
        return true
    }

    /// Reals with no MAC address: no answer to ARP/NDP yet. Out of every
    /// service until the neighbour table has them.
    public private(set) var unreachable: Set<IPAddress> = []

    /// Records whether `address` answers ARP/NDP; true when it changed anything.
    @discardableResult
    public mutating func setReachable(_ address: IPAddress, _ reachable: Bool) -> Bool {
        guard reachable == unreachable.contains(address) else { return false }
        if reachable { unreachable.remove(address) } else { unreachable.insert(address) }
        invalidateNewFailures()
        return true
    }

    public func isHealthy(service: String, address: IPAddress) -> Bool {
        !(healthDown[service]?.contains(address) ?? false)
    }

    public func operatorState(service: String, address: IPAddress) -> Config.RealState {
        operatorState[service]?[address] ?? .enabled
    }

    /// `tandem real enable|disable|drain`. With no service, every service
    /// that has the address. Returns the services changed.
    public mutating func setOperator(_ state: Config.RealState, address: IPAddress, service: String?) throws -> [String]
    {
        let targets: [Config.Service]
        if let service {
            guard let s = config.services.first(where: { $0.name == service }) else {
                throw ControlError("no service named \(service) (see 'tandem status')")
            }
            guard s.reals.contains(where: { $0.address == address }) else {
                throw ControlError("service \(service) has no real \(address)")
            }
            targets = [s]
        } else {
            targets = config.services.filter { $0.reals.contains { $0.address == address } }
            if targets.isEmpty { throw ControlError("no service has a real \(address)") }
        }
        for s in targets {
            operatorState[s.name, default: [:]][address] = state == .enabled ? nil : state
        }
        invalidateNewFailures()
        return targets.map(\.name)
    }

    // MARK: Invalidation

    /// Invalidates every persistence record of `real` (one address in one
    /// follow group) for all services of the group, and with `flows` its
    /// established flows too, from the very next packet on. O(1) whatever
    /// the table size: the real's generation moves on, so every record and
    /// flow stamped with the old one stops matching; LRU reclaims them.
    /// The only place records and flows are invalidated.
    public mutating func invalidate(real: UInt32, flows: Bool) {
        ids.advanceGenerations(real, flows: flows)
    }

    /// Invalidates the reals that a state change has just taken out of
    /// scheduling (down or disabled) in some service; those already out
    /// are not invalidated again. A real's flows go too when a service it
    /// failed in has `drop-on-failure`.
    private mutating func invalidateNewFailures() {
        var nowFailed = Set<UInt32>()
        var dropping = Set<UInt32>()
        for s in config.services {
            guard let group = ids.groups[ServiceKey(s)] else { continue }
            for r in s.reals {
                guard let rid = ids.reals[RealKey(group: group, address: r.address)] else { continue }
                let state = backendState(service: s, address: r.address)
                if state == .down || state == .disabled {
                    nowFailed.insert(rid)
                    if s.dropOnFailure { dropping.insert(rid) }
                }
            }
        }
        for rid in nowFailed.subtracting(failed).sorted() {
            invalidate(real: rid, flows: dropping.contains(rid))
        }
        failed = nowFailed
    }

    // MARK: The model

    /// Why a real is out of a service, if it is.
    public enum Reason: String, Sendable, Codable {
        case up, draining, down, disabled
        /// Down because it failed (or was disabled) in a linked service.
        case groupDown = "group-down"
        /// No answer to ARP/NDP: frames cannot be addressed to it.
        case unreachable
    }

    /// The state of `address` in service `s`, with group failover applied.
    public func reason(service s: Config.Service, address: IPAddress) -> Reason {
        if operatorState(service: s.name, address: address) == .disabled { return .disabled }
        if unreachable.contains(address) { return .unreachable }
        if !isHealthy(service: s.name, address: address) { return .down }
        // The failing service's `failover` decides whether the failure spreads.
        for name in group(of: s.name) where name != s.name {
            guard let other = service(named: name), other.failover == .group,
                other.reals.contains(where: { $0.address == address })
            else { continue }
            if operatorState(service: name, address: address) == .disabled
                || !isHealthy(service: name, address: address)
            {
                return .groupDown
            }
        }
        if operatorState(service: s.name, address: address) == .drain { return .draining }
        return .up
    }

    public func service(named name: String) -> Config.Service? { byName[name] }

    public func group(of name: String) -> [String] { groupOf[name] ?? [name] }

    /// The dataplane state of `address` in service `s`.
    func backendState(service s: Config.Service, address: IPAddress) -> DataplaneModel.BackendState {
        switch reason(service: s, address: address) {
        case .up: .up
        case .draining: .draining
        case .down, .groupDown, .unreachable: .down
        case .disabled: .disabled
        }
    }

    /// The dataplane model for the current state: a pure read.
    public func model(macs: [IPAddress: MACAddress]) -> DataplaneModel {
        var services: [DataplaneModel.Service] = []
        var realIDs = Set<UInt32>()
        for s in config.services {
            let key = ServiceKey(s)
            guard let id = ids.services[key], let group = ids.groups[key] else { continue }
            var backends: [DataplaneModel.Backend] = []
            for r in s.reals {
                guard let rid = ids.reals[RealKey(group: group, address: r.address)] else { continue }
                realIDs.insert(rid)
                backends.append(.init(real: rid, weight: r.weight, state: backendState(service: s, address: r.address)))
            }
            var sorry: UInt32?
            if let sr = s.sorry, let rid = ids.reals[RealKey(group: group, address: sr.address)] {
                realIDs.insert(rid)
                sorry = rid
            }
            // The seed comes from the group's service keys, not its id: ids
            // are this node's, from its own reload history.
            let seed = ClientHash.seed(
                group: self.group(of: s.name).compactMap { service(named: $0).map(ServiceKey.init) })
            services.append(
                .init(
                    id: id, group: group, vip: s.vip, port: s.port, proto: s.proto, scheduler: s.scheduler,
                    persistence: s.persistence, dropOnFailure: s.dropOnFailure, sorryReal: sorry, backends: backends,
                    hashSeed: seed))
        }
        let reals = realIDs.sorted().compactMap { rid -> DataplaneModel.Real? in
            guard let address = ids.address[rid] else { return nil }
            let gens = ids.gens[rid] ?? Identities.Generations()
            return .init(
                id: rid, address: address, mac: macs[address] ?? MACAddress(bytes: [0, 0, 0, 0, 0, 0])!,
                recGen: gens.records, flowGen: gens.flows)
        }
        return DataplaneModel(services: services, reals: reals)
    }

    /// Every real address the model needs a MAC for.
    public var realAddresses: Set<IPAddress> {
        Set(config.services.flatMap { $0.reals.map(\.address) + ($0.sorry.map { [$0.address] } ?? []) })
    }

    public func serviceID(_ name: String) -> UInt32? { service(named: name).flatMap { ids.services[ServiceKey($0)] } }
    public func groupID(_ name: String) -> UInt32? { service(named: name).flatMap { ids.groups[ServiceKey($0)] } }
}

public struct ControlError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
