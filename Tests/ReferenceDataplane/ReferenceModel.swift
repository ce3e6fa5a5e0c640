import Model
import Frames
import Dataplane
import TandemABI

/// docs/design/packet-path.md written plainly in Swift, over the same desired state the maps
/// are programmed from. The differential test holds the XDP program to it;
/// `ModelDataplane` stands it in for the maps under the controller.
package struct ReferenceModel {
    package struct FlowKey: Hashable {
        package var src: [UInt8], dst: [UInt8], sport: UInt16, dport: UInt16, proto: UInt8
        package init(src: [UInt8], dst: [UInt8], sport: UInt16, dport: UInt16, proto: UInt8) {
            (self.src, self.dst, self.sport, self.dport, self.proto) = (src, dst, sport, dport, proto)
        }
    }
    package struct PersistKey: Hashable {
        package var group: UInt32, client: [UInt8]
        package init(group: UInt32, client: [UInt8]) { (self.group, self.client) = (group, client) }
    }
    package struct Record: Equatable {
        package var real: UInt32, recGen: UInt32, service: UInt32, lastSeen: UInt64
        /// 0: written here; else the peer's node id (record sync).
        package var origin: UInt32 = 0
        package var written: UInt64 = 0
        package init(
            real: UInt32, recGen: UInt32, service: UInt32, lastSeen: UInt64, origin: UInt32 = 0, written: UInt64 = 0
        ) {
            (self.real, self.recGen, self.service, self.lastSeen) = (real, recGen, service, lastSeen)
            (self.origin, self.written) = (origin, written)
        }
    }
    package struct RealSlot { package var active: Bool, mac: [UInt8], recGen: UInt32, flowGen: UInt32 }

    package init() {}

    package private(set) var model = DataplaneModel()
    private var rings: [UInt32: [UInt32]] = [:]
    package private(set) var realSlots: [UInt32: RealSlot] = [:]
    package struct Flow { package var real: UInt32, flowGen: UInt32, service: UInt32, svcGen: UInt32 }
    package var flows: [FlowKey: Flow] = [:]
    /// Bumped when a service id goes away or takes another VIP:port.
    var svcGens: [UInt32: UInt32] = [:]
    package var records: [PersistKey: Record] = [:]
    var wrrCursor: [UInt32: UInt32] = [:]
    /// Choices of SYNs that the first ACK could not derive again.
    package var synChoices: [FlowKey: UInt32] = [:]
    /// The ring live before each service's last change, and when it changed.
    private var previousRings: [UInt32: (ring: [UInt32], changedAt: UInt64)] = [:]
    static let graceNs: UInt64 = 5_000_000_000
    package var serviceCounters: [UInt32: Counters] = [:]
    package var reasons: [PacketReason: UInt64] = [:]

    /// Whether a record may be honoured: its real is active and of the
    /// generation the record was written under (not invalidated since).
    package func isValid(_ record: Record) -> Bool {
        guard let slot = realSlots[record.real] else { return false }
        return slot.active && slot.recGen == record.recGen
    }

    /// `changedAt`: when the maps' ring of each service last changed (the
    /// dataplane stamps it as it flips the ring; an input here, like `now`).
    package mutating func apply(_ next: DataplaneModel, changedAt: [UInt32: UInt64] = [:]) {
        for id in realSlots.keys where !next.reals.contains(where: { $0.id == id }) {
            realSlots[id]!.active = false
        }
        for r in next.reals {
            realSlots[r.id] = RealSlot(active: true, mac: r.mac.bytes, recGen: r.recGen, flowGen: r.flowGen)
        }
        func sameKey(_ a: DataplaneModel.Service, _ b: DataplaneModel.Service) -> Bool {
            a.vip == b.vip && a.port == b.port && a.proto == b.proto
        }
        for s in next.services where !model.services.contains(where: { $0.id == s.id && sameKey($0, s) }) {
            serviceCounters[s.id] = Counters()
            wrrCursor[s.id] = 0
            svcGens[s.id, default: 0] &+= 1
        }
        for s in model.services where !next.services.contains(where: { $0.id == s.id }) {
            svcGens[s.id, default: 0] &+= 1
        }
        let addresses = next.realAddresses
        let nextRings = Dictionary(
            uniqueKeysWithValues: next.services.map {
                ($0.id, next.ring(for: $0, size: Dataplane.ringSize, addresses: addresses))
            })
        for (id, ring) in nextRings {
            if let old = rings[id], old != ring {
                previousRings[id] = (old, changedAt[id] ?? 0)
            } else if rings[id] == nil {
                previousRings[id] = nil
            }
        }
        rings = nextRings
        model = next
    }

    func isVIP(_ address: [UInt8]) -> Bool { model.services.contains { $0.vip.bytes == address } }

    struct Parsed {
        var src: [UInt8], dst: [UInt8], proto: UInt8, sport: UInt16 = 0, dport: UInt16 = 0, tcpFlags: UInt8 = 0
    }

    /// Returns the verdict and the frame as it leaves.
    package mutating func process(_ f: [UInt8], now: UInt64) -> (Verdict, [UInt8]) {
        switch parse(f) {
        case .failure(let error):
            reasons[error.reason, default: 0] += 1
            return (Self.isDrop(error.reason) ? .drop : .pass, f)
        case .success(let p):
            return serve(f, p, now: now)
        }
    }

    static func isDrop(_ r: PacketReason) -> Bool {
        [.dropMalformed, .dropFragment, .dropIPv6Ext, .dropNoReal].contains(r)
    }

    func parse(_ f: [UInt8]) -> Result<Parsed, ReasonError> {
        func be16(_ i: Int) -> Int { Int(f[i]) << 8 | Int(f[i + 1]) }
        guard f.count >= 14 else { return .failure(.init(.passMalformed)) }
        switch be16(12) {
        case 0x0800:
            let l3 = 14
            guard f.count >= l3 + 20 else { return .failure(.init(.passMalformed)) }
            let version = f[l3] >> 4, ihl = Int(f[l3] & 0x0F)
            guard version == 4, ihl >= 5 else { return .failure(.init(.passMalformed)) }
            let hlen = ihl * 4, total = be16(l3 + 2)
            guard l3 + hlen <= f.count, total >= hlen, l3 + total <= f.count else {
                return .failure(.init(.passMalformed))
            }
            let p = Parsed(src: Array(f[l3 + 12..<l3 + 16]), dst: Array(f[l3 + 16..<l3 + 20]), proto: f[l3 + 9])
            guard p.proto == 6 || p.proto == 17 else { return .failure(.init(.passOtherProto)) }
            if be16(l3 + 6) & 0x3FFF != 0 { return .failure(.init(isVIP(p.dst) ? .dropFragment : .passNotVIP)) }
            return l4(f, p, at: l3 + hlen, length: total - hlen)
        case 0x86DD:
            let l3 = 14
            guard f.count >= l3 + 40 else { return .failure(.init(.passMalformed)) }
            guard f[l3] >> 4 == 6 else { return .failure(.init(.passMalformed)) }
            let payload = be16(l3 + 4)
            guard l3 + 40 + payload <= f.count else { return .failure(.init(.passMalformed)) }
            let p = Parsed(src: Array(f[l3 + 8..<l3 + 24]), dst: Array(f[l3 + 24..<l3 + 40]), proto: f[l3 + 6])
            if p.proto == 6 || p.proto == 17 { return l4(f, p, at: l3 + 40, length: payload) }
            if [0, 43, 44, 50, 51, 60, 135, 139, 140].contains(p.proto) {
                return .failure(.init(isVIP(p.dst) ? .dropIPv6Ext : .passNotVIP))
            }
            return .failure(.init(.passOtherProto))
        case 0x8100, 0x88A8:
            return .failure(.init(.passVLAN))
        default:
            return .failure(.init(.passNotIP))
        }
    }

    struct ReasonError: Error { var reason: PacketReason; init(_ r: PacketReason) { reason = r } }

    func l4(_ f: [UInt8], _ parsed: Parsed, at off: Int, length: Int) -> Result<Parsed, ReasonError> {
        var p = parsed
        let need = p.proto == 6 ? 20 : 8
        let bad = ReasonError(isVIP(p.dst) ? .dropMalformed : .passMalformed)
        guard off + need <= f.count, length >= need else { return .failure(bad) }
        if p.proto == 6 && f[off + 12] >> 4 < 5 { return .failure(bad) }
        p.sport = UInt16(f[off]) << 8 | UInt16(f[off + 1])
        p.dport = UInt16(f[off + 2]) << 8 | UInt16(f[off + 3])
        if p.proto == 6 { p.tcpFlags = f[off + 13] }
        return .success(p)
    }

    /// The packet path with state written by the first packet after a SYN (docs/design/floods.md): a SYN
    /// ignores the flow table and writes nothing but, for wrr or a ring
    /// changed less than 5 s ago, its choice.
    mutating func serve(_ f: [UInt8], _ p: Parsed, now: UInt64) -> (Verdict, [UInt8]) {
        let key = FlowKey(src: p.src, dst: p.dst, sport: p.sport, dport: p.dport, proto: p.proto)
        let syn = p.proto == 6 && p.tcpFlags & 0x12 == 0x02
        var id: UInt32 = 0
        if !syn, let flow = flows[key], let slot = realSlots[flow.real], slot.active, slot.flowGen == flow.flowGen,
            svcGens[flow.service, default: 0] == flow.svcGen
        {
            id = flow.real
            serviceCounters[flow.service]!.packets += 1
            serviceCounters[flow.service]!.bytes += UInt64(f.count)
        } else {
            guard
                let svc = model.services.first(where: {
                    $0.vip.bytes == p.dst && $0.port == p.dport && $0.proto.rawValue == p.proto
                })
            else {
                reasons[.passNotVIP, default: 0] += 1
                return (.pass, f)
            }
            serviceCounters[svc.id]!.packets += 1
            serviceCounters[svc.id]!.bytes += UInt64(f.count)
            id = syn ? synReal(svc, p, key, now: now) : newFlowReal(svc, p, key, now: now)
            guard id != 0 else {
                serviceCounters[svc.id]!.drops += 1
                reasons[.dropNoReal, default: 0] += 1
                return (.drop, f)
            }
            if !syn {
                flows[key] = Flow(
                    real: id, flowGen: realSlots[id]!.flowGen, service: svc.id,
                    svcGen: svcGens[svc.id, default: 0])
                serviceCounters[svc.id]!.newFlows += 1
            }
        }
        var out = f
        out.replaceSubrange(6..<12, with: f[0..<6])
        out.replaceSubrange(0..<6, with: realSlots[id]!.mac)
        return (.tx, out)
    }

    func persistKey(_ svc: DataplaneModel.Service, _ p: Parsed) -> PersistKey? {
        svc.persistence.map {
            PersistKey(group: svc.group, client: IPAddress(bytes: p.src)!.masked(prefix: $0.netmask).bytes)
        }
    }

    /// A live record usable on `svc` (refreshed at most once a second), or nil.
    mutating func liveRecord(_ svc: DataplaneModel.Service, _ k: PersistKey?, now: UInt64) -> Record? {
        guard let k, let persistence = svc.persistence, var rec = records[k], let slot = realSlots[rec.real],
            slot.active, rec.recGen == slot.recGen, now &- rec.lastSeen < persistence.timeoutNs,
            keepsClients(svc, rec.real)
        else { return nil }
        if now &- rec.lastSeen >= 1_000_000_000 {
            rec.lastSeen = now
            records[k] = rec
        }
        return rec
    }

    func keepsClients(_ svc: DataplaneModel.Service, _ real: UInt32) -> Bool {
        svc.backends.first(where: { $0.real == real })?.state.keepsClients == true
    }

    func inGrace(_ svc: DataplaneModel.Service, now: UInt64) -> Bool {
        now &- (previousRings[svc.id]?.changedAt ?? 0) < Self.graceNs
    }

    /// A SYN: the record's real, else the ring's; remembered where the
    /// first ACK could not find it again.
    mutating func synReal(_ svc: DataplaneModel.Service, _ p: Parsed, _ key: FlowKey, now: UInt64) -> UInt32 {
        let pkey = persistKey(svc, p)
        if let rec = liveRecord(svc, pkey, now: now) {
            return realSlots[rec.real]?.active == true ? rec.real : 0
        }
        let id = pick(svc, p, pkey, ring: rings[svc.id]!)
        guard id != 0, realSlots[id]?.active == true else { return 0 }
        if svc.scheduler == .wrr || inGrace(svc, now: now) { synChoices[key] = id }
        return id
    }

    /// The first packet after a SYN (or of a UDP flow): the SYN's choice,
    /// else a live record, else the previous ring (a ring changed moments
    /// ago), else the ring; the record is written when none was live.
    mutating func newFlowReal(_ svc: DataplaneModel.Service, _ p: Parsed, _ key: FlowKey, now: UInt64) -> UInt32 {
        let tcp = p.proto == 6, grace = inGrace(svc, now: now)
        var id: UInt32 = 0
        if tcp && (grace || svc.scheduler == .wrr), let choice = synChoices.removeValue(forKey: key) {
            if choice == svc.sorryReal || keepsClients(svc, choice) { id = choice }
        }
        let pkey = persistKey(svc, p)
        let rec = liveRecord(svc, pkey, now: now)
        let ring = rings[svc.id]!
        if id == 0, let rec {
            id = rec.real
            serviceCounters[svc.id]!.persistHits += 1
            if rec.service != svc.id { serviceCounters[svc.id]!.followHits += 1 }
        } else {
            if id == 0 && tcp && grace && svc.scheduler != .wrr, let previous = previousRings[svc.id]?.ring,
                !previous.isEmpty
            {
                let candidate = pick(svc, p, pkey, ring: previous)
                if keepsClients(svc, candidate) { id = candidate }
            }
            if id == 0 { id = pick(svc, p, pkey, ring: ring) }
        }
        guard id != 0, let slot = realSlots[id], slot.active else { return 0 }
        if let pkey, rec == nil, !ring.isEmpty, id != svc.sorryReal {
            records[pkey] = Record(real: id, recGen: slot.recGen, service: svc.id, lastSeen: now, written: now)
        }
        return id
    }

    /// The scheduler's pick from `ring` (the sorry server when it is empty).
    mutating func pick(_ svc: DataplaneModel.Service, _ p: Parsed, _ pkey: PersistKey?, ring: [UInt32]) -> UInt32 {
        if ring.isEmpty { return svc.sorryReal ?? 0 }
        let slot: Int
        if svc.scheduler == .wrr {
            slot = Int(wrrCursor[svc.id]! % UInt32(ring.count))
            wrrCursor[svc.id] = UInt32(slot + 1)
        } else if let pkey {
            // The group id stays out of the hash: it is node-local.
            var k = tandem_persist_key()
            withUnsafeMutableBytes(of: &k.client) { $0.copyBytes(from: pkey.client) }
            k.af = pkey.client.count == 4 ? 4 : 6
            slot = Int(tandem_hash_client(svc.hashSeed, &k) % UInt32(ring.count))
        } else {
            var k = tandem_flow_key()
            withUnsafeMutableBytes(of: &k.src) { $0.copyBytes(from: p.src) }
            withUnsafeMutableBytes(of: &k.dst) { $0.copyBytes(from: p.dst) }
            k.sport = p.sport
            k.dport = p.dport
            k.proto = p.proto
            k.af = p.src.count == 4 ? 4 : 6
            slot = Int(tandem_hash_flow(&k) % UInt32(ring.count))
        }
        return ring[slot]
    }
}
