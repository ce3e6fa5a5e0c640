import Testing
@testable import Model

/// Two nodes with the same config must hash and build rings alike, whatever
/// ids each allocated; the ring digest is how operators check it.
@Suite("Agreement between nodes")
struct AgreementTests {
    static let vip = IPAddress("198.18.0.100")!
    static let addresses = (21...24).map { IPAddress("198.18.0.\($0)")! }

    /// A model of one maglev service on `addresses` with the given weights,
    /// its reals numbered from `firstID` in `order`.
    static func model(
        weights: [UInt32] = [1, 1, 2, 3], firstID: UInt32 = 1, order: [Int] = [0, 1, 2, 3],
        scheduler: Scheduler = .maglev, netmask: Int? = 32
    ) -> DataplaneModel {
        let reals = order.enumerated().map { n, i in
            DataplaneModel.Real(
                id: firstID + UInt32(n), address: addresses[i], mac: MACAddress(bytes: [2, 0, 0, 0, 0, 1])!)
        }
        let backends = order.enumerated().map { n, i in
            DataplaneModel.Backend(real: firstID + UInt32(n), weight: weights[i])
        }
        let service = DataplaneModel.Service(
            id: firstID % 7, group: firstID, vip: vip, port: 80, proto: .tcp, scheduler: scheduler,
            persistence: netmask.map { Persistence(timeoutNs: 1_000_000_000, netmask: $0) }, backends: backends)
        return DataplaneModel(services: [service], reals: reals)
    }

    static func digest(_ m: DataplaneModel) -> RingDigest {
        let service = m.services[0]
        return m.ringDigest(for: service, ring: m.ring(for: service, size: 4093), addresses: m.realAddresses)
    }

    static func addressRing(_ m: DataplaneModel) -> [IPAddress] {
        let addresses = m.realAddresses
        return m.ring(for: m.services[0], size: 4093).map { addresses[$0]! }
    }

    @Test("other ids and member order: the same ring of addresses, the same digest")
    func idsDoNotMatter() {
        let a = Self.model()
        let b = Self.model(firstID: 40, order: [3, 1, 0, 2])
        #expect(a.services[0].group != b.services[0].group)
        #expect(
            a.services[0].hashSeed == b.services[0].hashSeed, "the seed comes from the service keys, not the group id")
        #expect(Self.addressRing(a) == Self.addressRing(b))
        #expect(Self.digest(a) == Self.digest(b))
    }

    @Test("the digest differs when one weight differs")
    func weightChangesDigest() {
        let a = Self.model(weights: [1, 1, 2, 3])
        let b = Self.model(weights: [1, 1, 2, 4])
        #expect(Self.addressRing(a) != Self.addressRing(b))
        #expect(Self.digest(a) != Self.digest(b))
    }

    @Test("the digest covers the scheduler, the netmask and the seed")
    func otherInputs() {
        let base = Self.digest(Self.model())
        #expect(Self.digest(Self.model(scheduler: .fixed)) != base)
        #expect(Self.digest(Self.model(netmask: 24)) != base)
        #expect(Self.digest(Self.model(netmask: nil)) != base)
        var reseeded = Self.model()
        reseeded.services[0].hashSeed &+= 1
        #expect(Self.digest(reseeded) != base)
        #expect(Self.digest(Self.model()).description.count == 16)
    }

    static func key(_ vip: String, _ port: UInt16, _ proto: L4Protocol = .tcp) -> ServiceKey {
        ServiceKey(vip: IPAddress(vip)!, port: port, proto: proto)
    }

    @Test("the seed: the group's lowest key, whatever the order; another group on the VIP, another seed")
    func seed() {
        let shop = [Self.key("198.18.0.100", 443), Self.key("198.18.0.100", 80)]
        #expect(ClientHash.seed(group: shop) == ClientHash.seed(group: shop.reversed()))
        #expect(
            ClientHash.seed(group: shop + [Self.key("198.18.0.100", 443, .udp)]) == ClientHash.seed(group: shop),
            "linking :443/udp moves no client")
        #expect(ClientHash.seed(group: [Self.key("198.18.0.100", 8080)]) != ClientHash.seed(group: shop))
        #expect(
            ClientHash.seed(group: [Self.key("198.18.0.101", 80)])
                != ClientHash.seed(group: [Self.key("198.18.0.100", 80)]))
        #expect(
            ClientHash.seed(group: [Self.key("198.18.0.100", 80, .udp)])
                != ClientHash.seed(group: [Self.key("198.18.0.100", 80)]))
        #expect(
            ClientHash.seed(group: [Self.key("2001:db8::100", 80)])
                != ClientHash.seed(group: [Self.key("198.18.0.100", 80)]))
    }

    /// Nodes of different versions must agree while an upgrade rolls: the
    /// seed and digest are fixed formulas (values computed independently).
    @Test("seed and digest keep their values from release to release")
    func fixedValues() {
        #expect(ClientHash.seed(group: [Self.key("198.18.0.100", 80)]) == 1_688_968_044)
        let a = IPAddress("198.18.0.21")!, b = IPAddress("198.18.0.22")!
        let digest = RingDigest(scheduler: .maglev, seed: 7, netmask: 32, ring: [a, b, a], sorry: nil)
        #expect(digest.description == "9c64f319ae382ecf")
    }

    @Test("FNV-1a 64 of the reference vectors")
    func fnv() {
        var empty = FNV64()
        empty.add([])
        #expect(empty.value == 0xCBF2_9CE4_8422_2325)
        var a = FNV64()
        a.add(Array("a".utf8))
        #expect(a.value == 0xAF63_DC4C_8601_EC8C)
    }
}
