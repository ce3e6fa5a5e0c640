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
        /// The MAC frames to it were sent to; nil when none was written.
        public var mac: MACAddress?
        public init(
            id: UInt32, address: IPAddress, recGen: UInt32, flowGen: UInt32, active: Bool,
            mac: MACAddress? = nil
        ) {
            self.id = id
            self.address = address
            self.recGen = recGen
            self.flowGen = flowGen
            self.active = active
            self.mac = mac
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

/// What a node keeps across controller restarts besides the dataplane:
/// whether the operator drained it, and the routing table its VIP routes
/// went into (so `tandem down` and the next `tandem serve` find them).
public struct NodeState: Sendable, Equatable {
    /// `tandem node drain` until `tandem node resume`: nothing announced.
    public var drained = false
    /// The table the last controller announced into; nil: none.
    public var announceTable: UInt32?
    public init(drained: Bool = false, announceTable: UInt32? = nil) {
        self.drained = drained
        self.announceTable = announceTable
    }
}
