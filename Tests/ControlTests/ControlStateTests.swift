import Testing
import TestSupport
@testable import Control
import Configuration
import Model

/// What `tandem serve` decides from config, health and operator states.
@Suite("Control state")
struct ControlStateTests {
    static let macs: [IPAddress: MACAddress] = Dictionary(
        uniqueKeysWithValues: (21...24).map {
            (IPAddress("198.18.0.\($0)")!, MACAddress(bytes: [2, 0, 0xC6, 0x12, 0, UInt8($0)])!)
        })
    static let r1 = IPAddress("198.18.0.21")!
    static let r2 = IPAddress("198.18.0.22")!

    /// The shop example (examples/shop.yaml) plus an unlinked :8080 on the same reals.
    static func config(_ extra: String = "", failover: String = "group", drop: Bool = false) throws -> ValidatedConfig {
        let yaml =
            Configs.spec.replacingOccurrences(
                of: "    check: { type: tls }\n",
                with: "    check: { type: tls }\n    failover: \(failover)\n    drop-on-failure: \(drop)\n") + """

                  - name: api
                    vip: 198.18.0.100
                    port: 8080
                    reals:
                      - { address: 198.18.0.21, port: 8080 }
                      - { address: 198.18.0.22, port: 8080 }
                """ + extra
        return try ConfigParser.parseValidated(yaml, file: "t.yaml")
    }

    static func state(_ extra: String = "", failover: String = "group", drop: Bool = false) throws -> ControlState {
        try ControlState(config(extra, failover: failover, drop: drop))
    }

    func backend(_ m: DataplaneModel, _ service: UInt32, _ address: IPAddress) -> DataplaneModel.Backend? {
        let real = m.reals.filter { $0.address == address }.map(\.id)
        return m.services.first { $0.id == service }?.backends.first { real.contains($0.real) }
    }

    @Test("linked services share a group and real ids; an unlinked one has its own")
    func ids() throws {
        let s = try Self.state()
        let m = s.model(macs: Self.macs)
        #expect(m.services.count == 3)
        #expect(m.services[0].group == m.services[1].group)
        #expect(m.services[2].group != m.services[0].group)
        #expect(m.services[0].backends.map(\.real) == m.services[1].backends.map(\.real))
        #expect(Set(m.services[2].backends.map(\.real)).isDisjoint(with: m.services[0].backends.map(\.real)))
        #expect(m.reals.count == 4, "two addresses in two groups")
    }

    @Test("a failure on one linked service takes the real out of the group and clears its records once")
    func groupFailover() throws {
        var s = try Self.state()
        let before = s.model(macs: Self.macs)
        let rid = before.reals.first {
            $0.address == Self.r1 && before.services[0].backends.map(\.real).contains($0.id)
        }!.id
        let changed = s.setHealth(service: "shop-http", address: Self.r1, up: false)
        #expect(changed)
        let after = s.model(macs: Self.macs)
        #expect(backend(after, 0, Self.r1)?.state == .down)
        #expect(backend(after, 1, Self.r1)?.state == .down, "linked shop-https follows the failure")
        #expect(s.reason(service: s.service(named: "shop-https")!, address: Self.r1) == .groupDown)
        #expect(backend(after, 2, Self.r1)?.state == .up, "unlinked api is untouched")
        #expect(after.real(rid)!.recGen == before.real(rid)!.recGen + 1, "records invalidated")
        #expect(after.real(rid)!.flowGen == before.real(rid)!.flowGen, "flows stay without drop-on-failure")
        // A second failing service of the group does not clear again.
        s.setHealth(service: "shop-https", address: Self.r1, up: false)
        let again = s.model(macs: Self.macs)
        #expect(again.real(rid)!.recGen == after.real(rid)!.recGen)
        // Recovery needs every service of the group to pass again.
        s.setHealth(service: "shop-http", address: Self.r1, up: true)
        let half = s.model(macs: Self.macs)
        #expect(backend(half, 0, Self.r1)?.state == .down)
        s.setHealth(service: "shop-https", address: Self.r1, up: true)
        let recovered = s.model(macs: Self.macs)
        #expect(backend(recovered, 0, Self.r1)?.state == .up && backend(recovered, 1, Self.r1)?.state == .up)
        #expect(recovered.real(rid)!.recGen == after.real(rid)!.recGen, "recovery does not move records")
    }

    @Test(
        "failover: service keeps the real in linked services but still clears its records group-wide; drop-on-failure bumps flows"
    )
    func serviceFailover() throws {
        var s = try Self.state(failover: "service", drop: true)
        let before = s.model(macs: Self.macs)
        s.setHealth(service: "shop-https", address: Self.r2, up: false)
        let after = s.model(macs: Self.macs)
        #expect(backend(after, 1, Self.r2)?.state == .down)
        #expect(backend(after, 0, Self.r2)?.state == .up)
        let rid = backend(after, 1, Self.r2)!.real
        #expect(after.real(rid)!.recGen == before.real(rid)!.recGen + 1)
        #expect(after.real(rid)!.flowGen == before.real(rid)!.flowGen + 1)
    }

    @Test("operator states: disable acts like a failure, drain only stops new clients, errors name the problem")
    func operatorStates() throws {
        var s = try Self.state()
        let before = s.model(macs: Self.macs)
        #expect(try s.setOperator(.drain, address: Self.r2, service: nil) == ["shop-http", "shop-https", "api"])
        var m = s.model(macs: Self.macs)
        #expect(backend(m, 0, Self.r2)?.state == .draining && backend(m, 2, Self.r2)?.state == .draining)
        #expect(m.reals == before.reals, "drain keeps records")
        _ = try s.setOperator(.disabled, address: Self.r2, service: "shop-http")
        m = s.model(macs: Self.macs)
        #expect(backend(m, 0, Self.r2)?.state == .disabled)
        #expect(backend(m, 1, Self.r2)?.state == .down)
        let unchanged = s.model(macs: Self.macs)
        #expect(throws: ControlError("no service named web (see 'tandem status')")) {
            _ = try s.setOperator(.drain, address: Self.r2, service: "web")
        }
        #expect(throws: ControlError("no service has a real 198.18.0.99")) {
            _ = try s.setOperator(.drain, address: IPAddress("198.18.0.99")!, service: nil)
        }
        #expect(throws: ControlError("service api has no real 198.18.0.23")) {
            _ = try s.setOperator(.drain, address: IPAddress("198.18.0.23")!, service: "api")
        }
        let afterRefusals = s.model(macs: Self.macs)
        #expect(afterRefusals == unchanged, "a refused command changes nothing")
    }

    @Test("reload keeps the ids of what stays; a freed real id is reused only with new generations")
    func reloadIDs() throws {
        var s = try Self.state()
        let first = s.model(macs: Self.macs)
        let api = first.services[2]
        // Remove api's r2, then add r4 to api: r4 takes the freed id.
        let yaml = try Self.config().config
        var smaller = yaml
        smaller.services[2].reals.removeLast()
        try s.reload(ConfigValidator.validate(smaller, file: "t"))
        let second = s.model(macs: Self.macs)
        #expect(second.services.map(\.id) == first.services.map(\.id))
        #expect(second.services.map(\.group) == first.services.map(\.group))
        let freed = Set(first.reals.map(\.id)).subtracting(second.reals.map(\.id))
        #expect(freed.count == 1)
        var bigger = smaller
        bigger.services[2].reals.append(Config.Real(address: IPAddress("198.18.0.24")!, port: 8080))
        try s.reload(ConfigValidator.validate(bigger, file: "t"))
        let third = s.model(macs: Self.macs)
        let r4 = third.reals.first { $0.address == IPAddress("198.18.0.24")! }!
        #expect(freed.contains(r4.id))
        let old = first.real(r4.id)!
        #expect(r4.recGen != old.recGen && r4.flowGen != old.flowGen, "records and flows of the old owner cannot match")
        #expect(third.services[2].id == api.id)
        // Removing a service keeps the others' ids; a new one takes a free id.
        var fewer = bigger
        fewer.services.remove(at: 0)
        fewer.services[0].follow = []
        try s.reload(ConfigValidator.validate(fewer, file: "t"))
        let fourth = s.model(macs: Self.macs)
        #expect(fourth.services.map(\.id) == [first.services[1].id, api.id])
    }

    @Test("a restarted controller takes ids, generations and states from the pinned maps")
    func adoption() throws {
        var s = try Self.state()
        s.setHealth(service: "shop-http", address: Self.r1, up: false)
        _ = try s.setOperator(.drain, address: Self.r2, service: "api")
        let m = s.model(macs: Self.macs)
        // What the maps would say after that model was written.
        let pinned = PinnedState(
            services: m.services.map {
                .init(
                    key: ServiceKey(vip: $0.vip, port: $0.port, proto: $0.proto), id: $0.id + 10,
                    group: $0.group + 5, sorryReal: 0)
            },
            backends: m.services.flatMap { svc in
                svc.backends.map { .init(service: svc.id + 10, real: $0.real, state: $0.state) }
            },
            reals: m.reals.map {
                .init(id: $0.id, address: $0.address, recGen: $0.recGen, flowGen: $0.flowGen, active: true)
            })
        let adopted = try ControlState(Self.config(), adopting: pinned)
        let again = adopted.model(macs: Self.macs)
        #expect(again.services.map(\.id) == m.services.map { $0.id + 10 })
        #expect(again.services.map(\.group) == m.services.map { $0.group + 5 })
        #expect(again.reals == m.reals, "same real ids and generations: no record is lost or cleared again")
        #expect(!adopted.isHealthy(service: "shop-http", address: Self.r1))
        #expect(adopted.operatorState(service: "api", address: Self.r2) == .drain)
    }

    @Test("the same config after another reload history: other ids, the same seeds, rings of addresses and digests")
    func sameChoiceWhateverTheHistory() throws {
        let final = try Self.config()
        let direct = try ControlState(final).model(macs: Self.macs)
        // Another node: first an unrelated service and api alone, then the
        // shop pair, then the final config; its ids come out otherwise.
        var first = final.config
        var other = Config.Service(name: "other", vip: IPAddress("198.18.0.110")!, port: 80)
        other.reals = (31...36).map { Config.Real(address: IPAddress("198.18.0.\($0)")!, port: 80) }
        first.services = [other, final.config.services[2]]
        var node = try ControlState(ConfigValidator.validate(first, file: "t"))
        var second = final.config
        second.services.insert(other, at: 0)
        try node.reload(ConfigValidator.validate(second, file: "t"))
        try node.reload(final)
        let replayed = node.model(macs: Self.macs)
        #expect(replayed.services.map(\.group) != direct.services.map(\.group))
        #expect(replayed.reals.map(\.id) != direct.reals.map(\.id))
        #expect(direct.services[0].hashSeed == direct.services[1].hashSeed, "one seed per follow group")
        #expect(direct.services[2].hashSeed != direct.services[0].hashSeed, "the unlinked api spreads on its own")
        for (a, b) in zip(direct.services, replayed.services) {
            #expect(a.hashSeed == b.hashSeed)
            let ringA = direct.ring(for: a, size: 4093), ringB = replayed.ring(for: b, size: 4093)
            #expect(ringA.map { direct.real($0)!.address } == ringB.map { replayed.real($0)!.address })
            #expect(
                direct.ringDigest(for: a, ring: ringA, addresses: direct.realAddresses)
                    == replayed.ringDigest(for: b, ring: ringB, addresses: replayed.realAddresses))
        }
    }
}
