import Model
import Testing

@testable import Controller

/// Reals that did not answer ARP/NDP at the start, found later.
@Suite("Neighbour refresh")
struct NeighbourRefreshTests {
    static let yaml = """
        interface: tdm-test0
        announce: { table: 100 }
        services:
          - name: api
            vip: 198.18.0.101
            port: 80
            check: { type: none }
            reals: [{ address: 198.18.0.31, port: 80 }]
        """

    @Test("a real silent at the start is out of service (VIP withdrawn) until it answers; then it serves")
    func silentRealComesBack() async throws {
        let neighbours = ListedNeighbours([:])
        let h = try await Harness.start(Self.yaml, answering: neighbours)
        #expect(await h.states(of: "198.18.0.31") == ["api": .down])
        #expect(h.announced(in: 100).isEmpty)

        await h.controller.refreshNeighbours(all: false)
        #expect(h.announced(in: 100).isEmpty, "still silent")

        neighbours.answer("198.18.0.31", "02:00:00:00:00:31")
        await h.controller.refreshNeighbours(all: false)
        #expect(await h.states(of: "198.18.0.31") == ["api": .up])
        #expect(h.dataplane.applied?.reals.first?.mac == MACAddress("02:00:00:00:00:31"))
        #expect(h.announced(in: 100) == [IPAddress("198.18.0.101")!])
    }

    @Test("a real whose MAC changed (a replaced server) gets its frames at the new MAC")
    func macChanges() async throws {
        let neighbours = ListedNeighbours(["198.18.0.31": "02:00:00:00:00:31"])
        let h = try await Harness.start(Self.yaml, answering: neighbours)
        neighbours.answer("198.18.0.31", "02:00:00:00:00:99")
        await h.controller.refreshNeighbours(all: true)
        #expect(h.dataplane.applied?.reals.first?.mac == MACAddress("02:00:00:00:00:99"))
    }
}
