/// The desired dataplane state, in Swift terms: what the XDP program's maps
/// must say. The controller builds it from the config and health state; the
/// Dataplane module writes it; tests model packets against it.
public struct DataplaneModel: Equatable, Sendable {
    public var services: [Service]
    public var reals: [Real]

    public init(services: [Service] = [], reals: [Real] = []) {
        self.services = services
        self.reals = reals
    }

    /// State of a real in one service.
    public enum BackendState: UInt32, Sendable, Codable, CaseIterable {
        /// Scheduled and keeps its persistence records.
        case up = 0
        /// Not scheduled for new clients; keeps records and flows.
        case draining = 1
        /// Failed its health check.
        case down = 2
        /// Taken out by the operator.
        case disabled = 3

        /// Whether a persistence record pointing at it may be honoured.
        public var keepsClients: Bool { self == .up || self == .draining }
    }

    public struct Backend: Equatable, Sendable {
        public var real: UInt32
        public var weight: UInt32
        public var state: BackendState

        public init(real: UInt32, weight: UInt32, state: BackendState = .up) {
            self.real = real
            self.weight = weight
            self.state = state
        }
    }

    public struct Service: Equatable, Sendable {
        /// Dense id < TANDEM_MAX_SERVICES; indexes counters and rings.
        public var id: UInt32
        /// Follow group: services with the same group share records. A
        /// node-local id: it names records, never enters a hash.
        public var group: UInt32
        /// Seed of the client hash (`tandem_hash_client`), the same for
        /// every service of the group: from the config alone (see
        /// `ClientHash`), so that every node picks the same real for a client.
        public var hashSeed: UInt32
        public var vip: IPAddress
        public var port: UInt16
        public var proto: L4Protocol
        public var scheduler: Scheduler
        public var persistence: Persistence?
        public var dropOnFailure: Bool
        /// Real id used only while no backend is up.
        public var sorryReal: UInt32?
        public var backends: [Backend]

        public init(
            id: UInt32, group: UInt32, vip: IPAddress, port: UInt16, proto: L4Protocol,
            scheduler: Scheduler = .maglev, persistence: Persistence? = nil,
            dropOnFailure: Bool = false, sorryReal: UInt32? = nil, backends: [Backend] = [],
            hashSeed: UInt32? = nil
        ) {
            self.id = id
            self.group = group
            // A service alone is a group of one.
            self.hashSeed = hashSeed ?? ClientHash.seed(group: [ServiceKey(vip: vip, port: port, proto: proto)])
            self.vip = vip
            self.port = port
            self.proto = proto
            self.scheduler = scheduler
            self.persistence = persistence
            self.dropOnFailure = dropOnFailure
            self.sorryReal = sorryReal
            self.backends = backends
        }
    }

    public struct Real: Equatable, Sendable {
        /// Dense id in 1..<TANDEM_MAX_REALS; 0 means none. One id per
        /// (follow group, address).
        public var id: UInt32
        public var address: IPAddress
        public var mac: MACAddress
        /// Bumped to invalidate every persistence record of this real.
        public var recGen: UInt32
        /// Bumped to move every established flow off this real.
        public var flowGen: UInt32

        public init(id: UInt32, address: IPAddress, mac: MACAddress, recGen: UInt32 = 0, flowGen: UInt32 = 0) {
            self.id = id
            self.address = address
            self.mac = mac
            self.recGen = recGen
            self.flowGen = flowGen
        }
    }

    public func real(_ id: UInt32) -> Real? { reals.first { $0.id == id } }

    /// The scheduler table of `service`: its UP backends, by weight.
    public func ring(for service: Service, size: Int) -> [UInt32] {
        ring(for: service, size: size, addresses: realAddresses)
    }

    /// Real id -> address, for building many rings at once.
    public var realAddresses: [UInt32: IPAddress] {
        Dictionary(reals.map { ($0.id, $0.address) }, uniquingKeysWith: { a, _ in a })
    }

    public func ring(for service: Service, size: Int, addresses: [UInt32: IPAddress]) -> [UInt32] {
        let members = service.backends.compactMap { backend -> RingMember? in
            guard backend.state == .up, let address = addresses[backend.real] else { return nil }
            return RingMember(id: backend.real, key: address.bytes, weight: backend.weight)
        }
        return service.scheduler.ring(members, size: size)
    }
}

/// The transport protocol of a service.
public enum L4Protocol: UInt8, Sendable, Codable, CaseIterable {
    case tcp = 6
    case udp = 17
}

/// Source-IP persistence: the same options in the config and the maps.
public struct Persistence: Equatable, Sendable {
    /// Idle time after which a record no longer counts.
    public var timeoutNs: UInt64
    /// Prefix length applied to the client address.
    public var netmask: Int

    public init(timeoutNs: UInt64, netmask: Int) {
        self.timeoutNs = timeoutNs
        self.netmask = netmask
    }
}

/// How the XDP program is attached to the NIC.
public enum XDPMode: String, Sendable, CaseIterable {
    /// In the driver, before an skb exists: the fast path.
    case native
    /// After the skb is built: works on any NIC, slower.
    case generic
}
