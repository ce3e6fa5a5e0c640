import Control
import ControlAPI
import Dataplane
import Model
import Testing

@testable import Controller

/// Health verdicts through the controller, as a user sees them: the
/// dataplane's backend states, the records, the VIP routes.
@Suite("Health verdicts to dataplane and announcements")
struct HealthCommitTests {
    static let yaml = """
        interface: tdm-test0
        announce: { table: 100 }
        services:
          - name: shop-http
            vip: 198.18.0.100
            port: 80
            persistence: { mode: source-ip, timeout: 30m, netmask: 32 }
            follow: [shop-https]
            check: { type: tcp }
            reals: [{ address: 198.18.0.21, port: 80 }, { address: 198.18.0.22, port: 80 }]
          - name: shop-https
            vip: 198.18.0.100
            port: 443
            persistence: { mode: source-ip, timeout: 30m, netmask: 32 }
            follow: [shop-http]
            check: { type: tcp }
            reals: [{ address: 198.18.0.21, port: 443 }, { address: 198.18.0.22, port: 443 }]
          - name: api
            vip: 198.18.0.101
            port: 80
            check: { type: tcp }
            reals: [{ address: 198.18.0.31, port: 80 }]
        """
    static let shop = IPAddress("198.18.0.100")!
    static let api = IPAddress("198.18.0.101")!

    @Test("a real failing its check is down in every service of its follow group; its clients' records stop counting")
    func failureFollowsTheGroup() async throws {
        let h = try await Harness.start(Self.yaml)
        #expect(await h.states(of: "198.18.0.21") == ["shop-http": .up, "shop-https": .up])
        let state = await h.controller.state
        let group = state.groupID("shop-http")!
        let real = state.ids.reals[RealKey(group: group, address: IPAddress("198.18.0.21")!)]!
        let client = IPAddress("198.18.10.1")!
        h.dataplane.clientWrites(group: group, client: client, real: real, service: state.serviceID("shop-http")!)
        #expect(h.dataplane.record(group: group, client: client)?.valid == true)

        // Only shop-https's probe fails: the group follows.
        await h.check("shop-https", "198.18.0.21", up: false)
        #expect(await h.states(of: "198.18.0.21") == ["shop-http": .down, "shop-https": .down])
        #expect(await h.states(of: "198.18.0.22") == ["shop-http": .up, "shop-https": .up])
        #expect(
            h.dataplane.record(group: group, client: client)?.valid == false, "rescheduled, not sent to a dead real")
        #expect(h.announced(in: 100) == [Self.shop, Self.api], "198.18.0.22 still serves the VIP")

        await h.check("shop-https", "198.18.0.21", up: true)
        #expect(await h.states(of: "198.18.0.21") == ["shop-http": .up, "shop-https": .up])
    }

    @Test("the VIP is withdrawn when its last usable real fails, with the reason, and announced when one is back")
    func withdrawWhenNoRealIsUsable() async throws {
        let h = try await Harness.start(Self.yaml)
        #expect(h.announced(in: 100) == [Self.shop, Self.api])

        await h.check("api", "198.18.0.31", up: false)
        #expect(h.announced(in: 100) == [Self.shop], "api's only real is down")
        let status = try #require(await h.controller.handle(.status).status)
        #expect(status.vips.first { $0.vip == "198.18.0.101" }?.reason == "no usable real")
        #expect(status.vips.first { $0.vip == "198.18.0.100" }?.announced == true)

        await h.check("api", "198.18.0.31", up: true)
        #expect(h.announced(in: 100) == [Self.shop, Self.api])
    }

    @Test("nothing is announced before the first round of checks; a route someone else holds is left alone")
    func startingAndForeignRoutes() async throws {
        let h = try await Harness.start(Self.yaml, firstChecksDone: false)
        h.routing.memoryTable(100).addForeign(Self.api)
        await h.check("shop-http", "198.18.0.22", up: true)
        #expect(h.announced(in: 100).isEmpty)
        await h.controller.firstRoundDone()
        #expect(h.announced(in: 100) == [Self.shop])
        #expect(h.announcer.report(Self.api).announced == false)
        #expect(h.announcer.report(Self.api).reason?.contains("already has a route") == true)
    }

    @Test("a change the dataplane refuses is not kept: routes and states stay as the maps are")
    func refusedApply() async throws {
        let h = try await Harness.start(Self.yaml)
        let version = h.dataplane.appliedVersion
        h.dataplane.failNextApply()
        await h.check("api", "198.18.0.31", up: false)
        #expect(h.dataplane.appliedVersion == version)
        #expect(await h.states(of: "198.18.0.31") == ["api": .up])
        #expect(h.announced(in: 100) == [Self.shop, Self.api], "the VIP follows the maps, not the refused change")
        #expect(await h.controller.state.isHealthy(service: "api", address: IPAddress("198.18.0.31")!))

        // The next verdict is applied as usual.
        await h.check("api", "198.18.0.31", up: false)
        #expect(await h.states(of: "198.18.0.31") == ["api": .down])
        #expect(h.announced(in: 100) == [Self.shop])
    }

    @Test("an operator's disable takes the real out of the group and the VIP follows")
    func operatorDisable() async throws {
        let h = try await Harness.start(Self.yaml)
        let reply = await h.controller.handle(
            .setReal(RealCommand(action: .disable, address: "198.18.0.31", service: nil)))
        #expect(reply.error == nil && reply.message == "198.18.0.31: disabled in api")
        #expect(await h.states(of: "198.18.0.31") == ["api": .disabled])
        #expect(h.announced(in: 100) == [Self.shop])
    }
}
