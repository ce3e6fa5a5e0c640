import Control
import ControlAPI
import Model
import Testing

@testable import Controller

/// `tandem reload` and `tandem node drain|resume` through the controller.
@Suite("Reload and drain")
struct ReloadDrainTests {
    static let yaml = HealthCommitTests.yaml
    static let shop = HealthCommitTests.shop
    static let api = HealthCommitTests.api

    @Test("reload applies the difference: a new real in service, a removed service gone with its VIP")
    func reloadApplies() async throws {
        let h = try await Harness.start(Self.yaml)
        var next = Self.yaml.replacingOccurrences(
            of: "reals: [{ address: 198.18.0.31, port: 80 }]",
            with: "reals: [{ address: 198.18.0.31, port: 80 }, { address: 198.18.0.32, port: 80 }]")
        try h.edit(next)
        var reply = await h.controller.handle(.reload)
        #expect(reply.error == nil, "\(reply.error ?? "")")
        #expect(reply.message?.contains("3 services (0 added, 0 removed), reals 1 added, 0 removed") == true)
        #expect(await h.states(of: "198.18.0.32") == ["api": .up])

        // Without shop-https, and shop-http no longer following it.
        next = """
            interface: tdm-test0
            announce: { table: 100 }
            services:
              - name: api
                vip: 198.18.0.101
                port: 80
                check: { type: tcp }
                reals: [{ address: 198.18.0.31, port: 80 }]
            """
        try h.edit(next)
        reply = await h.controller.handle(.reload)
        #expect(reply.error == nil, "\(reply.error ?? "")")
        #expect(h.dataplane.applied?.services.count == 1)
        #expect(h.announced(in: 100) == [Self.api], "the VIP of the removed services is withdrawn")
    }

    @Test("a reload changing a restart-only setting is refused whole and changes nothing")
    func reloadRefusesRestartOnly() async throws {
        let h = try await Harness.start(Self.yaml)
        let version = h.dataplane.appliedVersion
        try h.edit(
            Self.yaml.replacingOccurrences(of: "interface: tdm-test0", with: "interface: tdm-test1")
                .replacingOccurrences(
                    of: "reals: [{ address: 198.18.0.31, port: 80 }]",
                    with: "reals: [{ address: 198.18.0.31, port: 80, weight: 5 }]"))
        let reply = await h.controller.handle(.reload)
        #expect(reply.error?.contains("interface changed; these take effect only when tandem serve restarts") == true)
        #expect(h.dataplane.appliedVersion == version, "nothing applied")
        #expect(h.dataplane.applied?.services.flatMap(\.backends).allSatisfy { $0.weight == 1 } == true)
    }

    @Test(
        "a reload with other table sizes is refused with what to do: the pinned maps keep theirs through restarts too")
    func reloadRefusesTables() async throws {
        let h = try await Harness.start(Self.yaml)
        let version = h.dataplane.appliedVersion
        try h.edit("tables: { flows: 65536, records: 300000 }\n" + Self.yaml)
        let reply = await h.controller.handle(.reload)
        let error = try #require(reply.error)
        #expect(error.contains("tables changed, but the pinned maps keep their sizes (flows 262144, records 1048576)"))
        #expect(error.contains("set tables back; a new size needs 'tandem down'"), "\(error)")
        #expect(!error.contains("take effect only when tandem serve restarts"), "a restart would be refused too")
        #expect(h.dataplane.appliedVersion == version, "nothing applied")
    }

    @Test("a reload moving announce to another table moves the routes; removing it withdraws them")
    func reloadMovesAnnouncements() async throws {
        let h = try await Harness.start(Self.yaml)
        try h.edit(Self.yaml.replacingOccurrences(of: "announce: { table: 100 }", with: "announce: { table: 200 }"))
        #expect(await h.controller.handle(.reload).error == nil)
        #expect(h.announced(in: 100).isEmpty)
        #expect(h.announced(in: 200) == [Self.shop, Self.api])
        #expect(h.dataplane.nodeState.announceTable == 200, "recorded in the pins for tandem down")

        try h.edit(Self.yaml.replacingOccurrences(of: "announce: { table: 100 }\n", with: ""))
        #expect(await h.controller.handle(.reload).error == nil)
        #expect(h.announced(in: 200).isEmpty)
        let status = try #require(await h.controller.handle(.status).status)
        #expect(status.announceTable == nil)
    }

    @Test("a config that fails validation changes nothing and says how many errors")
    func reloadRefusesInvalid() async throws {
        let h = try await Harness.start(Self.yaml)
        let version = h.dataplane.appliedVersion
        try h.edit(Self.yaml.replacingOccurrences(of: "vip: 198.18.0.101", with: "vip: 198.18.0.999"))
        let reply = await h.controller.handle(.reload)
        #expect(reply.error?.contains("1 error, nothing applied") == true, "\(reply.error ?? "")")
        #expect(h.dataplane.appliedVersion == version)
    }

    @Test("drain withdraws every VIP and is kept in the pins; resume announces them again")
    func drainAndResume() async throws {
        let h = try await Harness.start(Self.yaml)
        await h.check("api", "198.18.0.31", up: false)
        var reply = await h.controller.handle(.node(NodeCommand(action: .drain)))
        #expect(reply.message == "node \(h.config.nodeName): draining; withdrew 198.18.0.100")
        #expect(h.announced(in: 100).isEmpty)
        #expect(h.dataplane.nodeState.drained)

        // A real coming back while drained announces nothing.
        await h.check("api", "198.18.0.31", up: true)
        #expect(h.announced(in: 100).isEmpty)
        reply = await h.controller.handle(.node(NodeCommand(action: .drain)))
        #expect(reply.message == "node \(h.config.nodeName): already draining")

        reply = await h.controller.handle(.node(NodeCommand(action: .resume)))
        #expect(reply.message == "node \(h.config.nodeName): resumed; announced 198.18.0.100, 198.18.0.101")
        #expect(h.announced(in: 100) == [Self.shop, Self.api])
        #expect(!h.dataplane.nodeState.drained)
    }

    @Test("a node started drained announces nothing until resumed, and says why")
    func startDrained() async throws {
        let h = try await Harness.start(Self.yaml, drained: true)
        #expect(h.announced(in: 100).isEmpty)
        let status = try #require(await h.controller.handle(.status).status)
        #expect(status.drained && status.vips.allSatisfy { $0.reason == "draining (tandem node drain)" })
    }
}
