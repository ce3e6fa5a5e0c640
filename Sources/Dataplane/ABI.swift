import Model
import TandemABI

/// 16 address bytes in network order, as the ABI stores addresses.
public typealias ABIAddress = (
    UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
    UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8
)

extension IPAddress {
    /// The address as the ABI stores it: IPv4 in bytes 0-3, the rest zero.
    public var abiAddress: ABIAddress {
        var out: ABIAddress = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &out) { $0.copyBytes(from: bytes) }
        return out
    }

    public var abiFamily: UInt8 { UInt8(family == .inet ? TANDEM_AF_INET.rawValue : TANDEM_AF_INET6.rawValue) }

    public init?(abiAddress address: ABIAddress, family: UInt8) {
        let all = withUnsafeBytes(of: address) { Array($0) }
        self.init(bytes: family == UInt8(TANDEM_AF_INET.rawValue) ? Array(all.prefix(4)) : all)
    }
}

extension MACAddress {
    var abiBytes: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) {
        (bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5])
    }

    init(abiBytes m: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)) {
        self.init(bytes: [m.0, m.1, m.2, m.3, m.4, m.5])!
    }
}

extension tandem_service_key {
    init(_ service: DataplaneModel.Service) {
        self.init()
        vip = service.vip.abiAddress
        port = service.port
        proto = service.proto.rawValue
        af = service.vip.abiFamily
    }
}

extension tandem_vip_key {
    init(_ address: IPAddress) {
        self.init()
        addr = address.abiAddress
        af = address.abiFamily
    }
}

extension tandem_real {
    init(_ real: DataplaneModel.Real) {
        self.init()
        addr = real.address.abiAddress
        mac = real.mac.abiBytes
        af = real.address.abiFamily
        flags = UInt8(TANDEM_REAL_ACTIVE.rawValue)
        rec_gen = real.recGen
        flow_gen = real.flowGen
    }
}

extension tandem_service {
    init(_ service: DataplaneModel.Service, ringID: UInt32, ringLength: Int) {
        self.init()
        id = service.id
        group = service.group
        ring_id = ringID
        ring_len = UInt32(ringLength)
        scheduler = UInt8(Self.schedulerCode(service.scheduler))
        var flagBits: UInt32 = 0
        if let persistence = service.persistence {
            flagBits |= TANDEM_SVC_PERSIST.rawValue
            netmask = UInt8(persistence.netmask)
            mask =
                IPAddress(
                    bytes: IPAddress.mask(
                        prefix: persistence.netmask,
                        count: service.vip.bytes.count))!.abiAddress
            persist_timeout_ns = persistence.timeoutNs
        }
        if service.dropOnFailure { flagBits |= TANDEM_SVC_DROP_ON_FAILURE.rawValue }
        flags = UInt8(flagBits)
        sorry_real = service.sorryReal ?? 0
        hash_seed = service.hashSeed
    }

    static func schedulerCode(_ scheduler: Scheduler) -> UInt32 {
        switch scheduler {
        case .maglev: TANDEM_SCHED_MAGLEV.rawValue
        case .wrr: TANDEM_SCHED_WRR.rawValue
        case .fixed: TANDEM_SCHED_FIXED.rawValue
        }
    }
}

extension tandem_ring {
    init(_ reals: [UInt32]) {
        self.init()
        precondition(reals.count <= Int(TANDEM_RING_SIZE))
        withUnsafeMutableBytes(of: &self.reals) { raw in
            reals.withUnsafeBytes { raw.copyMemory(from: $0) }
        }
    }

    func prefix(_ count: Int) -> [UInt32] {
        withUnsafeBytes(of: reals) { Array($0.bindMemory(to: UInt32.self).prefix(count)) }
    }
}

extension Counters {
    init(summing perCPU: [tandem_counters]) {
        self.init()
        for c in perCPU {
            packets += c.packets
            bytes += c.bytes
            newFlows += c.new_flows
            persistHits += c.persist_hits
            followHits += c.follow_hits
            drops += c.drops
        }
    }
}
