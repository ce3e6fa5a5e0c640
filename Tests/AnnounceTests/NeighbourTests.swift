import Foundation
import Model
import NIOPosix
import TestSupport
import Testing

@testable import Announce

/// The neighbour table and routes read over rtnetlink agree with what
/// `ip -j` shows of the same host, in the test's own network namespace
/// (reads only: no root, nothing changed).
@Suite("Neighbours over rtnetlink")
struct NeighbourTests {
    static func json(_ arguments: [String]) async throws -> [[String: Any]] {
        let output = try await Command.output("ip", ["-j"] + arguments)
        return try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [[String: Any]] ?? []
    }

    @Test(
        "every interface's entries: the same addresses and MACs as 'ip -j neigh show nud all', usable when ip lists them"
    )
    func sameAsIP() async throws {
        let listed = try await Self.json(["neigh", "show", "nud", "all"])
        let interfaces = Set(listed.compactMap { $0["dev"] as? String } + ["lo"])
        for interface in interfaces {
            let ours = try NeighbourTable.entries(interface: interface)
            let theirs = listed.filter { $0["dev"] as? String == interface }
            #expect(ours.count == theirs.count, "\(interface): \(ours) against \(theirs)")
            for entry in theirs {
                let address = try #require(IPAddress(entry["dst"] as? String ?? ""))
                let found = try #require(ours.first { $0.address == address }, "\(interface): \(address)")
                #expect(found.mac == (entry["lladdr"] as? String).flatMap(MACAddress.init))
                let states = entry["state"] as? [String] ?? []
                // `ip neigh show` leaves out NOARP and NONE entries; the old
                // lookup through it also skipped FAILED and INCOMPLETE ones.
                let skipped = ["FAILED", "INCOMPLETE", "NOARP", "NONE"]
                #expect(found.usable == !states.contains { skipped.contains($0) }, "\(states)")
            }
        }
    }

    @Test("an interface that does not exist is an error naming it")
    func noSuchInterface() throws {
        #expect {
            try NeighbourTable.entries(interface: "tdm-nothing9")
        } throws: { error in
            "\(error)".hasPrefix("cannot find interface tdm-nothing9:") && "\(error)".hasSuffix("(see 'ip link')")
        }
    }

    @Test("a real behind a router or on this host is refused, as 'ip route get' sees it")
    func onLink() async throws {
        let neighbours = Neighbours(interface: "lo", group: MultiThreadedEventLoopGroup.singleton)
        #expect {
            try neighbours.checkOnLink(IPAddress("127.0.0.1")!)
        } throws: { "\($0)" == "real 127.0.0.1 is an address of this host, not a real server" }

        // An address off every link: through the default route's gateway,
        // if the host has one; no route at all otherwise.
        let far = IPAddress("198.51.100.1")!
        let result = try await Command.run("ip", ["-j", "route", "get", "\(far)"])
        let route = (try? JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [[String: Any]])?.first
        if result.status == 0, let gateway = route?["gateway"] as? String, let dev = route?["dev"] as? String {
            #expect {
                try neighbours.checkOnLink(far)
            } throws: { "\($0)".contains("is not on-link: the kernel routes it via \(gateway) dev \(dev)") }
        } else if result.status != 0 {
            #expect {
                try neighbours.checkOnLink(far)
            } throws: { "\($0)" == "real \(far): no route (see 'ip route get \(far)')" }
        }
        let direct = try #require(try KernelRoute.get(IPAddress("127.0.0.1")!))
        #expect(direct.local && direct.interface == "lo" && direct.gateway == nil)
    }
}
