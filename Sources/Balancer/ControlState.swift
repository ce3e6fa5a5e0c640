/// Everything `tandem serve` decides, in pure Swift: the config, the stable
/// ids, health and operator states, and the `DataplaneModel` they produce.
///
/// Ids outlive reloads and restarts (they are recovered from the pinned
/// maps), because flows and records name services and reals by id. A real
/// id stands for one address in one follow group, so a generation bump on
/// it clears that real's records for the whole group in O(1).
public struct ControlState: Sendable {
    public private(set) var config: Config
    public private(set) var groups: [[String]]
    public private(set) var ids: Identities
    /// Health verdicts that are down, per service name (absent = up).
    public private(set) var healthDown: [String: Set<IPAddress>] = [:]
    /// Operator states that are not `enabled`, per service name.
    public private(set) var operatorState: [String: [IPAddress: Config.RealState]] = [:]
    /// Real ids out of scheduling for a failure, as of the last `model`.
    public private(set) var failed: Set<UInt32> = []
    /// Lookups by service name, rebuilt with the config.
    private var byName: [String: Config.Service] = [:]
    private var groupOf: [String: [String]] = [:]

    private mutating func index() {
        byName = Dictionary(config.services.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        groupOf = [:]
        for g in groups { for name in g { groupOf[name] = g } }
    }

    public init(config: Config, groups: [[String]], adopting pinned: PinnedState = PinnedState()) throws {
        self.config = config
        self.groups = groups
        ids = Identities(adopting: pinned)
        index()
        try ids.assign(config: config, groups: groups)
        for s in config.services {
            for r in s.reals where r.state != .enabled { operatorState[s.name, default: [:]][r.address] = r.state }
        }
        adoptStates(pinned)
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
            case .draining: if operatorState[s.name]?[addr] == nil { operatorState[s.name, default: [:]][addr] = .drain }
            case .disabled: if operatorState[s.name]?[addr] == nil { operatorState[s.name, default: [:]][addr] = .disabled }
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
    public mutating func reload(config: Config, groups: [[String]]) throws {
        var next = ids
        try next.assign(config: config, groups: groups)
        ids = next
        self.config = config
        self.groups = groups
        index()
        let present = Dictionary(config.services.map { ($0.name, Set($0.reals.map(\.address))) },
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
    }

    /// Records a health verdict; true when it changed anything.
    @discardableResult
    public mutating func setHealth(service: String, address: IPAddress, up: Bool) -> Bool {
        let was = healthDown[service]?.contains(address) ?? false
        if up == !was { return false }
        if up { healthDown[service]?.remove(address) } else { healthDown[service, default: []].insert(address) }
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
    public mutating func setOperator(_ state: Config.RealState, address: IPAddress, service: String?) throws -> [String] {
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
        return targets.map(\.name)
    }

    // MARK: The model

    /// Why a real is out of a service, if it is.
    public enum Reason: String, Sendable, Codable {
        case up, draining, down, disabled
        /// Down because it failed (or was disabled) in a linked service.
        case groupDown = "group-down"
    }

    /// The state of `address` in service `s`, with group failover applied.
    public func reason(service s: Config.Service, address: IPAddress) -> Reason {
        if operatorState(service: s.name, address: address) == .disabled { return .disabled }
        if !isHealthy(service: s.name, address: address) { return .down }
        // The failing service's `failover` decides whether the failure spreads.
        for name in group(of: s.name) where name != s.name {
            guard let other = service(named: name), other.failover == .group,
                  other.reals.contains(where: { $0.address == address }) else { continue }
            if operatorState(service: name, address: address) == .disabled || !isHealthy(service: name, address: address) {
                return .groupDown
            }
        }
        if operatorState(service: s.name, address: address) == .drain { return .draining }
        return .up
    }

    public func service(named name: String) -> Config.Service? { byName[name] }

    public func group(of name: String) -> [String] { groupOf[name] ?? [name] }

    /// The dataplane model for the current state. Reals that newly failed
    /// get their record generation bumped (and their flow generation when a
    /// service of theirs drops connections on failure).
    public mutating func model(macs: [IPAddress: MACAddress]) -> DataplaneModel {
        var services: [DataplaneModel.Service] = []
        var realIDs = Set<UInt32>()
        var nowFailed = Set<UInt32>()
        var dropping = Set<UInt32>()
        for s in config.services {
            let key = ServiceKey(s)
            guard let id = ids.services[key], let group = ids.groups[key] else { continue }
            var backends: [DataplaneModel.Backend] = []
            for r in s.reals {
                guard let rid = ids.reals[RealKey(group: group, address: r.address)] else { continue }
                realIDs.insert(rid)
                let state: DataplaneModel.BackendState
                switch reason(service: s, address: r.address) {
                case .up: state = .up
                case .draining: state = .draining
                case .down, .groupDown: state = .down
                case .disabled: state = .disabled
                }
                if state == .down || state == .disabled {
                    nowFailed.insert(rid)
                    if s.dropOnFailure { dropping.insert(rid) }
                }
                backends.append(.init(real: rid, weight: r.weight, state: state))
            }
            var sorry: UInt32?
            if let sr = s.sorry, let rid = ids.reals[RealKey(group: group, address: sr.address)] {
                realIDs.insert(rid)
                sorry = rid
            }
            services.append(.init(
                id: id, group: group, vip: s.vip, port: s.port, proto: s.proto, scheduler: s.scheduler,
                persistence: s.persistence.map { .init(timeoutNs: $0.timeoutNs, netmask: $0.netmask) },
                dropOnFailure: s.dropOnFailure, sorryReal: sorry, backends: backends))
        }
        for rid in nowFailed.subtracting(failed) {
            ids.bump(rid, flows: dropping.contains(rid))
        }
        failed = nowFailed
        let reals = realIDs.sorted().compactMap { rid -> DataplaneModel.Real? in
            guard let address = ids.address[rid] else { return nil }
            let gens = ids.gens[rid] ?? Identities.Generations()
            return .init(id: rid, address: address, mac: macs[address] ?? MACAddress(bytes: [0, 0, 0, 0, 0, 0])!,
                         recGen: gens.records, flowGen: gens.flows)
        }
        return DataplaneModel(services: services, reals: reals)
    }

    /// Every real address the model needs a MAC for.
    public var realAddresses: Set<IPAddress> {
        Set(config.services.flatMap { $0.reals.map(\.address) + ($0.sorry.map { [$0.address] } ?? []) })
    }

    /// Invalidates the records of `address` in `service`'s group (flush).
    public mutating func invalidateRecords(service: String, address: IPAddress) {
        guard let s = self.service(named: service), let g = ids.groups[ServiceKey(s)],
              let rid = ids.reals[RealKey(group: g, address: address)] else { return }
        ids.bump(rid, flows: false)
    }

    public func serviceID(_ name: String) -> UInt32? { service(named: name).flatMap { ids.services[ServiceKey($0)] } }
    public func groupID(_ name: String) -> UInt32? { service(named: name).flatMap { ids.groups[ServiceKey($0)] } }
}

public struct ControlError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A service as the dataplane keys it.
public struct ServiceKey: Hashable, Sendable, CustomStringConvertible {
    public var vip: IPAddress
    public var port: UInt16
    public var proto: DataplaneModel.L4Protocol

    public init(vip: IPAddress, port: UInt16, proto: DataplaneModel.L4Protocol) {
        self.vip = vip
        self.port = port
        self.proto = proto
    }

    public init(_ s: Config.Service) { self.init(vip: s.vip, port: s.port, proto: s.proto) }

    public var description: String {
        (vip.family == .inet ? "\(vip):\(port)" : "[\(vip)]:\(port)") + "/\(proto == .tcp ? "tcp" : "udp")"
    }
}

public struct RealKey: Hashable, Sendable {
    public var group: UInt32
    public var address: IPAddress
    public init(group: UInt32, address: IPAddress) {
        self.group = group
        self.address = address
    }
}

/// What the pinned maps say, for a restarted controller.
public struct PinnedState: Sendable {
    public struct Service: Sendable {
        public var key: ServiceKey
        public var id: UInt32
        public var group: UInt32
        public var sorryReal: UInt32
        public init(key: ServiceKey, id: UInt32, group: UInt32, sorryReal: UInt32) {
            self.key = key
            self.id = id
            self.group = group
            self.sorryReal = sorryReal
        }
    }
    public struct Backend: Sendable {
        public var service: UInt32
        public var real: UInt32
        public var state: DataplaneModel.BackendState
        public init(service: UInt32, real: UInt32, state: DataplaneModel.BackendState) {
            self.service = service
            self.real = real
            self.state = state
        }
    }
    public struct Real: Sendable {
        public var id: UInt32
        public var address: IPAddress
        public var recGen: UInt32
        public var flowGen: UInt32
        public var active: Bool
        public init(id: UInt32, address: IPAddress, recGen: UInt32, flowGen: UInt32, active: Bool) {
            self.id = id
            self.address = address
            self.recGen = recGen
            self.flowGen = flowGen
            self.active = active
        }
    }
    public var services: [Service] = []
    public var backends: [Backend] = []
    public var reals: [Real] = []
    public init(services: [Service] = [], backends: [Backend] = [], reals: [Real] = []) {
        self.services = services
        self.backends = backends
        self.reals = reals
    }
}

/// Stable ids: services by VIP:port/protocol, follow groups, and reals by
/// (group, address); plus the generations of every real id ever used, so
/// a reused id never revives the records or flows of its earlier owner.
public struct Identities: Sendable, Equatable {
    public struct Generations: Sendable, Equatable {
        public var records: UInt32 = 0
        public var flows: UInt32 = 0
        public init(records: UInt32 = 0, flows: UInt32 = 0) {
            self.records = records
            self.flows = flows
        }
    }

    public static let maxServices: UInt32 = 1024
    public static let maxReals: UInt32 = 65536

    public private(set) var services: [ServiceKey: UInt32] = [:]
    public private(set) var groups: [ServiceKey: UInt32] = [:]
    public private(set) var reals: [RealKey: UInt32] = [:]
    public private(set) var address: [UInt32: IPAddress] = [:]
    public private(set) var gens: [UInt32: Generations] = [:]

    public init() {}

    public init(adopting pinned: PinnedState) {
        let groupOf = Dictionary(pinned.services.map { ($0.id, $0.group) }, uniquingKeysWith: { a, _ in a })
        for s in pinned.services {
            services[s.key] = s.id
            groups[s.key] = s.group
        }
        let active = Dictionary(pinned.reals.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for r in pinned.reals { gens[r.id] = Generations(records: r.recGen, flows: r.flowGen) }
        let members = pinned.backends.map { ($0.service, $0.real) } + pinned.services.map { ($0.id, $0.sorryReal) }
        for (service, rid) in members where rid != 0 {
            guard let g = groupOf[service], let r = active[rid], r.active else { continue }
            reals[RealKey(group: g, address: r.address)] = rid
            address[rid] = r.address
        }
    }

    mutating func bump(_ rid: UInt32, flows: Bool) {
        gens[rid, default: Generations()].records &+= 1
        if flows { gens[rid, default: Generations()].flows &+= 1 }
    }

    /// Gives every service, group and (group, address) of `config` an id,
    /// keeping the ids already held; drops ids no longer used.
    mutating func assign(config: Config, groups configGroups: [[String]]) throws {
        let byName = Dictionary(config.services.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })

        // Services.
        var newServices: [ServiceKey: UInt32] = [:]
        for s in config.services { if let id = services[ServiceKey(s)] { newServices[ServiceKey(s)] = id } }
        var usedServiceIDs = Set(newServices.values)
        var nextService: UInt32 = 0
        for s in config.services where newServices[ServiceKey(s)] == nil {
            while usedServiceIDs.contains(nextService) { nextService += 1 }
            guard nextService < Self.maxServices else {
                throw ControlError("more than \(Self.maxServices) services")
            }
            newServices[ServiceKey(s)] = nextService
            usedServiceIDs.insert(nextService)
        }

        // Groups: a config group keeps the id most of its members had.
        var newGroups: [ServiceKey: UInt32] = [:]
        var usedGroups = Set<UInt32>()
        var pending: [[ServiceKey]] = []
        for names in configGroups {
            let keys = names.compactMap { byName[$0].map(ServiceKey.init) }
            var votes: [UInt32: Int] = [:]
            for k in keys { if let g = groups[k] { votes[g, default: 0] += 1 } }
            if let best = votes.filter({ !usedGroups.contains($0.key) })
                .max(by: { $0.value != $1.value ? $0.value < $1.value : $0.key > $1.key })?.key {
                usedGroups.insert(best)
                for k in keys { newGroups[k] = best }
            } else {
                pending.append(keys)
            }
        }
        // New groups take ids never used by a service still in the maps.
        var nextGroup: UInt32 = 1
        let reserved = usedGroups.union(groups.values)
        for keys in pending {
            while reserved.contains(nextGroup) || usedGroups.contains(nextGroup) { nextGroup += 1 }
            usedGroups.insert(nextGroup)
            for k in keys { newGroups[k] = nextGroup }
        }

        // Reals: one id per (group, address).
        var wanted: [RealKey] = []
        for s in config.services {
            guard let g = newGroups[ServiceKey(s)] else { continue }
            for a in s.reals.map(\.address) + (s.sorry.map { [$0.address] } ?? []) {
                wanted.append(RealKey(group: g, address: a))
            }
        }
        var newReals: [RealKey: UInt32] = [:]
        var newAddress: [UInt32: IPAddress] = [:]
        for k in wanted { if let id = reals[k] { newReals[k] = id; newAddress[id] = k.address } }
        var nextReal: UInt32 = 1
        for k in wanted where newReals[k] == nil {
            while newAddress[nextReal] != nil { nextReal += 1 }
            guard nextReal < Self.maxReals else { throw ControlError("more than \(Self.maxReals - 1) (group, real) pairs") }
            newReals[k] = nextReal
            newAddress[nextReal] = k.address
            if gens[nextReal] != nil {
                // The id had an earlier owner: nothing of theirs may match.
                bump(nextReal, flows: true)
            } else {
                gens[nextReal] = Generations()
            }
        }
        // Ids given up now keep their generations; the next owner bumps them.
        services = newServices
        groups = newGroups
        reals = newReals
        address = newAddress
    }
}
