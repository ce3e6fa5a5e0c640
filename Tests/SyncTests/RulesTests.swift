import Model
import Testing

@testable import Sync

@Suite("Sync receiver rules")
struct RulesTests {
    let rules = SyncRules(model: Fixture.model())

    @Test("a record for a real up here is installed under this node's group, real id and generation")
    func installs() {
        let verdict = rules.decide(Fixture.record(real: Fixture.realB, written: 42), local: nil)
        let expected = SyncRules.Install(
            group: 7, client: IPAddress("198.18.1.7")!, real: 4, recGen: 9, service: 2, writtenNs: 42)
        #expect(verdict == .install(expected))
    }

    @Test("a group unknown here (another VIP, port, or a group without persistence) is refused")
    func unknownGroup() {
        var r = Fixture.record()
        r.group = ServiceKey(vip: Fixture.vip, port: 8080, proto: .tcp)
        #expect(rules.decide(r, local: nil) == .reject(.unknownGroup))
        var m = Fixture.model()
        for i in m.services.indices { m.services[i].persistence = nil }
        #expect(SyncRules(model: m).decide(Fixture.record(), local: nil) == .reject(.unknownGroup))
    }

    @Test("a real down here, or not in the group here, gets no record: invalidation stays local")
    func realDownHere() {
        let down = SyncRules(model: Fixture.model(down: [Fixture.realA]))
        #expect(down.decide(Fixture.record(real: Fixture.realA), local: nil) == .reject(.realNotUsable))
        #expect(
            rules.decide(Fixture.record(real: IPAddress("198.18.0.99")!), local: nil) == .reject(.realNotUsable))
        // Draining here: no new clients from elsewhere either.
        var m = Fixture.model()
        m.services[1].backends[0].state = .draining
        #expect(SyncRules(model: m).decide(Fixture.record(), local: nil) == .reject(.realNotUsable))
    }

    @Test("a newer live local record is kept; an older or dead one is replaced; the same real is unchanged")
    func olderVersusNewer() {
        let incoming = Fixture.record(real: Fixture.realA, written: 2_000)
        let newer = SyncRules.Local(real: Fixture.realB, writtenNs: 3_000, live: true)
        #expect(rules.decide(incoming, local: newer) == .reject(.olderThanLocal))
        let older = SyncRules.Local(real: Fixture.realB, writtenNs: 1_000, live: true)
        guard case .install(let i) = rules.decide(incoming, local: older) else {
            Issue.record("an older local record was kept")
            return
        }
        #expect(i.real == 3 && i.writtenNs == 2_000)
        let dead = SyncRules.Local(real: Fixture.realB, writtenNs: 9_000, live: false)
        #expect(rules.decide(incoming, local: dead) != .reject(.olderThanLocal))
        let same = SyncRules.Local(real: Fixture.realA, writtenNs: 1_000, live: true)
        #expect(rules.decide(incoming, local: same) == .unchanged)
    }

    @Test("two writes at the same time converge on every node: the lower real wins")
    func ties() {
        let onA = rules.decide(
            Fixture.record(real: Fixture.realB, written: 5),
            local: .init(real: Fixture.realA, writtenNs: 5, live: true))
        let onB = rules.decide(
            Fixture.record(real: Fixture.realA, written: 5),
            local: .init(real: Fixture.realB, writtenNs: 5, live: true))
        #expect(onA == .reject(.olderThanLocal))
        guard case .install = onB else {
            Issue.record("the lower real lost the tie")
            return
        }
    }

    @Test("the client is masked with this node's netmask; records this node writes name the group by its key")
    func masksAndOutgoing() {
        let slash24 = SyncRules(model: Fixture.model(netmask: 24))
        #expect(slash24.place(Fixture.record(client: "198.18.1.7"))?.client == IPAddress("198.18.1.0"))
        let out = rules.outgoing(group: 7, service: 1, client: IPAddress("198.18.1.7")!, real: 4, writtenNs: 9)
        #expect(out?.group == Fixture.http && out?.service == Fixture.http && out?.real == Fixture.realB)
        #expect(rules.outgoing(group: 8, service: 1, client: IPAddress("198.18.1.7")!, real: 4, writtenNs: 9) == nil)
    }
}
