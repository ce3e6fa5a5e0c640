import Configuration
import Control
import Model
import TestSupport
import Testing

/// When a VIP is announced (docs/design/several-nodes.md, "Announcing VIPs"), from the facts alone.
@Suite("Announcement rules")
struct AnnouncementTests {
    static let vip4 = IPAddress("198.18.0.100")!
    static let vip6 = IPAddress("2001:db8::100")!
    static let both: [IPAddress: Bool] = [vip4: true, vip6: false]

    static func facts(
        table: Bool = true, attached: Bool = true, firstChecksDone: Bool = true, drained: Bool = false,
        adopted: Bool = false, usable: [IPAddress: Bool] = both, pullDone: Bool = true
    ) -> Announcement.Facts {
        .init(
            table: table, attached: attached, firstChecksDone: firstChecksDone, drained: drained, adopted: adopted,
            usable: usable, pullDone: pullDone)
    }

    @Test("with record sync, a starting node waits for the peers' tables (or the pull's end) before announcing")
    func waitsForPull() {
        #expect(Announcement.decide(Self.facts(pullDone: false))[Self.vip4] == .withdraw(.pulling))
        #expect(Announcement.decide(Self.facts(pullDone: false))[Self.vip6] == .withdraw(.pulling))
        // Checks not done either: that is said first.
        #expect(
            Announcement.decide(Self.facts(firstChecksDone: false, pullDone: false))[Self.vip4] == .withdraw(.starting))
        // A route the previous run left on adopted pins stays while pulling.
        #expect(Announcement.decide(Self.facts(adopted: true, pullDone: false))[Self.vip4] == .keep(.pulling))
        #expect(Announcement.decide(Self.facts(drained: true, pullDone: false))[Self.vip4] == .withdraw(.draining))
        #expect(Announcement.decide(Self.facts(pullDone: true))[Self.vip4] == .announce)
    }

    @Test("announced once attached, checked once, not drained, with a usable real; otherwise withdrawn with the reason")
    func rules() {
        #expect(Announcement.decide(Self.facts()) == [Self.vip4: .announce, Self.vip6: .withdraw(.noUsableReal)])
        #expect(
            Announcement.decide(Self.facts(table: false))
                == [Self.vip4: .withdraw(.noTable), Self.vip6: .withdraw(.noTable)])
        #expect(Announcement.decide(Self.facts(attached: false))[Self.vip4] == .withdraw(.notAttached))
        #expect(Announcement.decide(Self.facts(firstChecksDone: false))[Self.vip4] == .withdraw(.starting))
        #expect(Announcement.decide(Self.facts(firstChecksDone: false))[Self.vip6] == .withdraw(.starting))
        #expect(Announcement.decide(Self.facts(drained: true))[Self.vip4] == .withdraw(.draining))
        #expect(Announcement.decide(Self.facts(usable: [:])).isEmpty, "no VIP, nothing decided")
    }

    @Test("drained and not attached win over everything but a missing table; draining holds while starting")
    func precedence() {
        #expect(
            Announcement.decide(Self.facts(attached: false, firstChecksDone: false, drained: true))[Self.vip4]
                == .withdraw(.notAttached))
        #expect(
            Announcement.decide(Self.facts(firstChecksDone: false, drained: true, adopted: true))[Self.vip4]
                == .withdraw(.draining))
        #expect(Announcement.decide(Self.facts(drained: true))[Self.vip6] == .withdraw(.draining))
    }

    @Test(
        "a restart on adopted pins keeps the routes it finds until the first checks, unless the VIP has no usable real")
    func restartKeeps() {
        let starting = Announcement.decide(Self.facts(firstChecksDone: false, adopted: true))
        #expect(starting == [Self.vip4: .keep(.starting), Self.vip6: .withdraw(.noUsableReal)])
        // A fresh start adds nothing and keeps nothing before its checks.
        #expect(
            Announcement.decide(Self.facts(firstChecksDone: false, adopted: false))[Self.vip4] == .withdraw(.starting))
        #expect(Announcement.decide(Self.facts(adopted: true))[Self.vip4] == .announce)
    }

    @Test("a usable real: up with weight above 0 in some service of the VIP, as the dataplane model says")
    func usable() throws {
        let yaml =
            Configs.spec + """

                  - name: api
                    vip: 198.18.0.101
                    port: 8080
                    check: { type: none }
                    reals:
                      - { address: 198.18.0.21, port: 8080, weight: 0 }
                      - { address: 198.18.0.22, port: 8080, state: drain }
                """
        var state = try ControlState(ConfigParser.parseValidated(yaml, file: "t.yaml"))
        let api = IPAddress("198.18.0.101")!
        let shop = IPAddress("198.18.0.100")!
        #expect(
            Announcement.usable(state.model(macs: [:])) == [shop: true, api: false],
            "weight 0 and draining are not usable")

        // Down on shop-http: the group follows, but one real is left.
        state.setHealth(service: "shop-http", address: IPAddress("198.18.0.21")!, up: false)
        #expect(Announcement.usable(state.model(macs: [:]))[shop] == true)
        // Both reals down in shop-http, group failover takes them out of shop-https too.
        state.setHealth(service: "shop-http", address: IPAddress("198.18.0.22")!, up: false)
        #expect(Announcement.usable(state.model(macs: [:]))[shop] == false)
        // One passes its checks again: the VIP has a usable real.
        state.setHealth(service: "shop-http", address: IPAddress("198.18.0.22")!, up: true)
        #expect(Announcement.usable(state.model(macs: [:]))[shop] == true)
        // Unreachable (no ARP answer) is not usable either.
        state.setReachable(IPAddress("198.18.0.22")!, false)
        #expect(Announcement.usable(state.model(macs: [:]))[shop] == false)
        _ = try state.setOperator(.disabled, address: IPAddress("198.18.0.22")!, service: nil)
        state.setReachable(IPAddress("198.18.0.22")!, true)
        #expect(Announcement.usable(state.model(macs: [:]))[shop] == false, "disabled is not usable")
    }
}
