import Model

/// What a receiver does with a synced record, from its own state only:
/// the dataplane model it runs (groups, reals, their states here) and the
/// record it holds for that client. Invalidation stays local: a real down
/// here gets no record, whatever the sender thinks of it.
public struct SyncRules: Sendable {
    /// A follow group with persistence here.
    struct Group {
        var id: UInt32
        var netmask: Int
        var services: [ServiceKey: DataplaneModel.Service]
    }

    private var groups: [ServiceKey: Group] = [:]
    private var reals: [UInt32: DataplaneModel.Real] = [:]
    private var realIds: [RealKey: UInt32] = [:]
    /// group id -> the group's key, for records this node writes.
    private var keys: [UInt32: ServiceKey] = [:]
    private var serviceKeys: [UInt32: ServiceKey] = [:]

    public init(model: DataplaneModel) {
        var byGroup: [UInt32: [DataplaneModel.Service]] = [:]
        for s in model.services { byGroup[s.group, default: []].append(s) }
        for (id, services) in byGroup {
            let keyed = services.map { (ServiceKey(vip: $0.vip, port: $0.port, proto: $0.proto), $0) }
            guard let persistence = services.first(where: { $0.persistence != nil })?.persistence,
                let key = SyncRecord.groupKey(keyed.map(\.0))
            else { continue }
            groups[key] = Group(
                id: id, netmask: persistence.netmask, services: Dictionary(keyed, uniquingKeysWith: { a, _ in a }))
            keys[id] = key
            for (k, s) in keyed { serviceKeys[s.id] = k }
        }
        for r in model.reals { reals[r.id] = r }
        for s in model.services {
            for b in s.backends {
                if let r = reals[b.real] { realIds[RealKey(group: s.group, address: r.address)] = r.id }
            }
        }
    }

    /// What this node holds for the record's group and client.
    public struct Local: Sendable, Equatable {
        public var real: IPAddress
        public var writtenNs: UInt64
        /// Still good here: real active, same generation, not timed out.
        public var live: Bool
        public init(real: IPAddress, writtenNs: UInt64, live: Bool) {
            self.real = real
            self.writtenNs = writtenNs
            self.live = live
        }
    }

    /// A record to write into the persist map.
    public struct Install: Sendable, Equatable {
        public var group: UInt32
        public var client: IPAddress
        public var real: UInt32
        public var recGen: UInt32
        public var service: UInt32
        public var writtenNs: UInt64
    }

    public enum Verdict: Sendable, Equatable {
        case install(Install)
        /// This node holds the same: nothing to write.
        case unchanged
        case reject(Rejection)
    }

    /// The group id and masked client the record would be stored under, or nil
    /// for a group unknown here (to look up the local record first).
    public func place(_ r: SyncRecord) -> (group: UInt32, client: IPAddress)? {
        guard let g = groups[r.group], r.client.family == r.group.vip.family else { return nil }
        return (g.id, r.client.masked(prefix: g.netmask))
    }

    public func decide(_ r: SyncRecord, local: Local?) -> Verdict {
        guard let g = groups[r.group], let (group, client) = place(r) else { return .reject(.unknownGroup) }
        guard let id = realIds[RealKey(group: group, address: r.real)], let real = reals[id] else {
            return .reject(.realNotUsable)
        }
        // Up here in the service that wrote it (or, when that service is not
        // in the group here, in some service of the group).
        let candidates = g.services[r.service].map { [$0] } ?? Array(g.services.values)
        let up = candidates.contains { s in s.backends.contains { $0.real == id && $0.state == .up } }
        guard up else { return .reject(.realNotUsable) }
        if let local, local.live {
            if local.real == r.real { return .unchanged }
            // The later write wins on every node; equal times: the lower real.
            if local.writtenNs > r.writtenNs || (local.writtenNs == r.writtenNs && local.real < r.real) {
                return .reject(.olderThanLocal)
            }
        }
        let service = (g.services[r.service] ?? g.services.values.min { $0.id < $1.id })!.id
        return .install(
            Install(
                group: group, client: client, real: id, recGen: real.recGen, service: service,
                writtenNs: r.writtenNs))
    }

    /// A record this node wrote, as its peers get it; nil when the group or
    /// real is not (or no longer) in the model.
    public func outgoing(
        group: UInt32, service: UInt32, client: IPAddress, real: UInt32, writtenNs: UInt64
    )
        -> SyncRecord?
    {
        guard let key = keys[group], let realAddress = reals[real]?.address else { return nil }
        let serviceKey = serviceKeys[service] ?? key
        return SyncRecord(group: key, service: serviceKey, client: client, real: realAddress, writtenNs: writtenNs)
    }

    /// Real address by id, for turning local records into `Local`.
    public func realAddress(_ id: UInt32) -> IPAddress? { reals[id]?.address }
}
