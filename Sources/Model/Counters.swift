/// Counters of a service or a real, summed over CPUs.
public struct Counters: Equatable, Sendable, Codable {
    public var packets: UInt64 = 0
    public var bytes: UInt64 = 0
    public var newFlows: UInt64 = 0
    public var persistHits: UInt64 = 0
    public var followHits: UInt64 = 0
    public var drops: UInt64 = 0

    public init() {}

    /// Adds `other`'s counts: a real's counters summed over its services.
    public mutating func add(_ other: Counters) {
        packets += other.packets
        bytes += other.bytes
        newFlows += other.newFlows
        persistHits += other.persistHits
        followHits += other.followHits
        drops += other.drops
    }
}

/// Why a packet was passed, dropped or sent: the pkt_stats map's index.
public enum PacketReason: UInt32, CaseIterable, Sendable, CustomStringConvertible {
    case passNotIP, passVLAN, passNotVIP, passMalformed, passOtherProto
    case dropMalformed, dropFragment, dropIPv6Ext, dropNoReal
    case flowMissNotSYN

    public var description: String {
        switch self {
        case .passNotIP: "pass_not_ip"
        case .passVLAN: "pass_vlan"
        case .passNotVIP: "pass_not_vip"
        case .passMalformed: "pass_malformed"
        case .passOtherProto: "pass_other_proto"
        case .dropMalformed: "drop_malformed"
        case .dropFragment: "drop_fragment"
        case .dropIPv6Ext: "drop_ipv6_ext"
        case .dropNoReal: "drop_no_real"
        case .flowMissNotSYN: "flow_miss_not_syn"
        }
    }
}

/// The table_stats map, summed over CPUs: what SYNs and first packets
/// wrote, and how often a write landed in a full table (pushing out the
/// least recently used entry, live or not).
public struct TableCounters: Equatable, Sendable, Codable {
    /// SYNs forwarded without writing anything.
    public var synStateless: UInt64 = 0
    /// SYNs whose choice went into syn_choices (wrr; a ring that had just changed).
    public var synRemembered: UInt64 = 0
    public var flowsWritten: UInt64 = 0
    /// Flows written while the flow table was full.
    public var flowsWrittenFull: UInt64 = 0
    public var recordsWritten: UInt64 = 0
    /// Records written while the record table was full.
    public var recordsWrittenFull: UInt64 = 0
    /// First ACKs placed by their SYN's remembered choice.
    public var synChoicesUsed: UInt64 = 0
    /// First ACKs placed by the ring live before a change moments ago.
    public var previousRingUsed: UInt64 = 0

    public init(
        synStateless: UInt64 = 0, synRemembered: UInt64 = 0, flowsWritten: UInt64 = 0, flowsWrittenFull: UInt64 = 0,
        recordsWritten: UInt64 = 0, recordsWrittenFull: UInt64 = 0, synChoicesUsed: UInt64 = 0,
        previousRingUsed: UInt64 = 0
    ) {
        self.synStateless = synStateless
        self.synRemembered = synRemembered
        self.flowsWritten = flowsWritten
        self.flowsWrittenFull = flowsWrittenFull
        self.recordsWritten = recordsWritten
        self.recordsWrittenFull = recordsWrittenFull
        self.synChoicesUsed = synChoicesUsed
        self.previousRingUsed = previousRingUsed
    }
}
