import Configuration
import Model
import TandemABI

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

    /// The dataplane's limits (tandem_abi.h): ids index arrays of this size.
    public static let maxServices = UInt32(TANDEM_MAX_SERVICES)
    public static let maxReals = UInt32(TANDEM_MAX_REALS)

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

    /// Moves `rid`'s generations on; call it through
    /// `ControlState.invalidate(real:flows:)`, the one place that invalidates.
    mutating func advanceGenerations(_ rid: UInt32, flows: Bool) {
        gens[rid, default: Generations()].records &+= 1
        if flows { gens[rid, default: Generations()].flows &+= 1 }
    }

    /// Gives every service, group and (group, address) of `config` an id,
    /// keeping the ids already held; drops ids no longer used. Returns the
    /// real ids that were given to a new owner after an earlier one: the
    /// caller must invalidate them, so nothing of the old owner matches.
    mutating func assign(_ validated: ValidatedConfig) throws -> [UInt32] {
        let config = validated.config, configGroups = validated.groups
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
                .max(by: { $0.value != $1.value ? $0.value < $1.value : $0.key > $1.key })?.key
            {
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
        var reused: [UInt32] = []
        for k in wanted where newReals[k] == nil {
            while newAddress[nextReal] != nil { nextReal += 1 }
            guard nextReal < Self.maxReals else {
                throw ControlError("more than \(Self.maxReals - 1) (group, real) pairs")
            }
            newReals[k] = nextReal
            newAddress[nextReal] = k.address
            if gens[nextReal] != nil {
                reused.append(nextReal)
            } else {
                gens[nextReal] = Generations()
            }
        }
        // Ids given up now keep their generations; the next owner's are new.
        services = newServices
        groups = newGroups
        reals = newReals
        address = newAddress
        return reused
    }
}
