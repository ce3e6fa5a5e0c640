import BPF
import Control
@testable import Announce
import Foundation
import Glibc
import Logging
import Model
import TestSupport
import TestTraits
import Testing

/// The announce table written over rtnetlink, checked with `ip -j route`
/// in a network namespace of the test's own.
@Suite(
    "Announce routes over rtnetlink", .privileged,
    .serialized)
struct RouteTests {
    static let vip4 = IPAddress("198.18.0.100")!
    static let vip6 = IPAddress("2001:db8::100")!
    static let other4 = IPAddress("198.18.0.101")!

    /// A namespace with two veth ends up, v0 and v1, removed after `body`.
    static func withNamespace(_ body: (String) async throws -> Void) async throws {
        let name = "tdm-routes-\(getpid())"
        try await Command.output("ip", ["netns", "add", name])
        try await withCleanup {
            try await Command.output("ip", ["-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1"])
            for link in ["lo", "v0", "v1"] { try await Command.output("ip", ["-n", name, "link", "set", link, "up"]) }
            try await body(name)
        } cleanup: {
            NetworkNamespace.delete(name)
        }
    }

    /// `ip -j route show table N`, both families: destination -> (device, protocol).
    static func show(_ namespace: String, table: UInt32) async throws -> [String: (dev: String, proto: String)] {
        var routes: [String: (String, String)] = [:]
        for family in ["-4", "-6"] {
            let result = try await Command.run(
                "ip", ["-n", namespace, family, "-j", "route", "show", "table", "\(table)"])
            // A table with no route of the family does not exist for ip: no routes.
            guard result.status == 0 else {
                #expect(result.output.contains("does not exist"), "\(result.output)")
                continue
            }
            let list = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [[String: Any]] ?? []
            for r in list {
                routes[r["dst"] as? String ?? "?"] = (r["dev"] as? String ?? "-", r["protocol"] as? String ?? "-")
            }
        }
        return routes
    }

    @Test("add and delete VIP/32 and /128 with proto 250, in tables below and above 255; others' routes stay")
    func addDelete() async throws {
        try await Self.withNamespace { ns in
            for id in [UInt32(100), 100_000] {
                let table = RouteTable(id: id)
                // Someone else's routes in the same table: a static one, and one to a VIP's prefix.
                try await Command.output(
                    "ip",
                    ["-n", ns, "route", "add", "198.18.0.101/32", "dev", "v1", "table", "\(id)", "proto", "static"])
                try await Command.output(
                    "ip", ["-n", ns, "route", "add", "198.18.5.0/24", "dev", "v1", "table", "\(id)", "proto", "250"])
                try NetworkNamespace.inside(ns) {
                    let index = try Interface.index("v0")
                    try table.add(Self.vip4, interfaceIndex: index)
                    try table.add(Self.vip6, interfaceIndex: index)
                }
                var routes = try await Self.show(ns, table: id)
                #expect(routes["198.18.0.100"]?.dev == "v0" && routes["198.18.0.100"]?.proto == "250", "\(routes)")
                #expect(routes["2001:db8::100"]?.dev == "v0" && routes["2001:db8::100"]?.proto == "250", "\(routes)")
                #expect(routes["198.18.0.101"]?.proto == "static")

                let listed = try NetworkNamespace.inside(ns) { try table.routes() }
                #expect(Set(listed.filter(\.isTandems).map(\.destination)) == [Self.vip4, Self.vip6], "\(listed)")
                #expect(listed.contains { $0.destination == Self.other4 && $0.proto == 4 }, "static is proto 4")

                // A prefix someone else holds is refused, not replaced; deleting it is not ours to do.
                let refused = try NetworkNamespace.inside(ns) { () throws -> String? in
                    do {
                        try table.add(Self.other4, interfaceIndex: try Interface.index("v0"))
                        return nil
                    } catch {
                        return "\(error)"
                    }
                }
                #expect(refused?.contains("already has a route") == true, "\(refused ?? "added")")
                #expect(try NetworkNamespace.inside(ns) { try table.delete(Self.other4) } == false)

                let deleted = try NetworkNamespace.inside(ns) { try table.deleteAll() }
                #expect(Set(deleted) == [Self.vip4, Self.vip6])
                routes = try await Self.show(ns, table: id)
                #expect(routes["198.18.0.100"] == nil && routes["2001:db8::100"] == nil, "\(routes)")
                #expect(routes["198.18.0.101"]?.proto == "static", "another protocol's route stays")
                #expect(routes["198.18.5.0/24"]?.proto == "250", "a route that is not a host route is not a VIP's")
                #expect(try NetworkNamespace.inside(ns) { try table.delete(Self.vip4) } == false, "already gone")
            }
            // Reading a table that does not exist is an empty table, not an error.
            #expect(try NetworkNamespace.inside(ns) { try RouteTable(id: 4242).routes() }.isEmpty)
        }
    }

    @Test(
        "the announcer: announce, withdraw with the reason, replace a route through the wrong device, remove a stray one"
    )
    func announcer() async throws {
        try await Self.withNamespace { ns in
            try await Command.output(
                "ip", ["-n", ns, "route", "add", "198.18.0.101/32", "dev", "v1", "table", "100", "proto", "static"])
            // Left by an earlier run: a VIP that is no longer configured, and one through v1.
            try await Command.output(
                "ip", ["-n", ns, "route", "add", "198.18.0.102/32", "dev", "v0", "table", "100", "proto", "250"])
            try await Command.output(
                "ip", ["-n", ns, "-6", "route", "add", "2001:db8::100/128", "dev", "v1", "table", "100", "proto", "250"]
            )
            var announcer = Announcer(table: 100, interface: "v0", logger: Logger(label: "test"))
            try NetworkNamespace.inside(ns) {
                announcer.reconcile([Self.vip4: .announce, Self.vip6: .announce])
            }
            var routes = try await Self.show(ns, table: 100)
            #expect(routes["198.18.0.100"]?.dev == "v0" && routes["198.18.0.100"]?.proto == "250", "\(routes)")
            #expect(routes["2001:db8::100"]?.dev == "v0", "moved to the configured interface: \(routes)")
            #expect(routes["198.18.0.102"] == nil, "a stray Tandem route goes")
            #expect(routes["198.18.0.101"]?.proto == "static")
            #expect(announcer.announced == [Self.vip4, Self.vip6])

            // Starting: keep leaves it; withdraw deletes it and says why.
            try NetworkNamespace.inside(ns) {
                announcer.reconcile([Self.vip4: .keep(.starting), Self.vip6: .withdraw(.noUsableReal)])
            }
            routes = try await Self.show(ns, table: 100)
            #expect(routes["198.18.0.100"] != nil && routes["2001:db8::100"] == nil, "\(routes)")
            #expect(announcer.report(Self.vip6) == (false, "no usable real"))
            #expect(announcer.report(Self.vip4).announced)

            // Someone deletes the route: the next reconcile writes it again.
            try await Command.output("ip", ["-n", ns, "route", "del", "198.18.0.100/32", "table", "100"])
            try NetworkNamespace.inside(ns) {
                announcer.reconcile([Self.vip4: .announce, Self.vip6: .withdraw(.draining)])
            }
            routes = try await Self.show(ns, table: 100)
            #expect(routes["198.18.0.100"]?.proto == "250", "\(routes)")

            // A VIP whose prefix another protocol holds: not announced, with the reason.
            try NetworkNamespace.inside(ns) { announcer.reconcile([Self.other4: .announce]) }
            #expect(announcer.report(Self.other4).announced == false)
            #expect(announcer.report(Self.other4).reason?.contains("already has a route") == true)
            routes = try await Self.show(ns, table: 100)
            #expect(routes["198.18.0.101"]?.proto == "static" && routes["198.18.0.100"] == nil, "\(routes)")

            try NetworkNamespace.inside(ns) { announcer.withdrawAll(reason: "test") }
            routes = try await Self.show(ns, table: 100)
            #expect(routes.keys.sorted() == ["198.18.0.101"], "only the static route is left: \(routes)")
        }
    }

    @Test("the neighbour table read over rtnetlink: every state as ip sets it, usable only where frames can go")
    func neighbourStates() async throws {
        try await Self.withNamespace { ns in
            try await Command.output("ip", ["-n", ns, "addr", "add", "198.18.99.1/24", "dev", "v0"])
            try await Command.output("ip", ["-n", ns, "addr", "add", "2001:db8:99::1/64", "dev", "v0", "nodad"])
            // (address, nud, usable): each with its own MAC.
            let entries: [(String, String, Bool)] = [
                ("198.18.99.2", "permanent", true), ("198.18.99.3", "reachable", true),
                ("198.18.99.4", "stale", true), ("198.18.99.5", "noarp", false),
                ("198.18.99.6", "failed", false), ("2001:db8:99::2", "stale", true),
                ("2001:db8:99::3", "noarp", false)
            ]
            for (i, (address, nud, _)) in entries.enumerated() {
                try await Command.output(
                    "ip",
                    [
                        "-n", ns, "neigh", "replace", address, "lladdr", "02:00:00:00:99:\(10 + i)", "dev", "v0", "nud",
                        nud
                    ])
            }
            let read = try NetworkNamespace.inside(ns) { try NeighbourTable.entries(interface: "v0") }
            for (i, (address, nud, usable)) in entries.enumerated() {
                let entry = try #require(
                    read.first { $0.address == IPAddress(address)! }, "\(address) (\(nud)) was read")
                #expect(entry.usable == usable, "\(address) nud \(nud): state \(entry.state)")
                // The kernel keeps no MAC for a FAILED entry.
                #expect(entry.mac == (nud == "failed" ? nil : MACAddress("02:00:00:00:99:\(10 + i)")), "\(address)")
            }
            // Only v0's entries: none of them is read as v1's.
            let other = try NetworkNamespace.inside(ns) { try NeighbourTable.entries(interface: "v1") }
            #expect(!other.contains { entry in entries.contains { IPAddress($0.0) == entry.address } }, "\(other)")
            // An interface that is not there is named in the error, with errno's words.
            #expect {
                try NetworkNamespace.inside(ns) { try NeighbourTable.entries(interface: "v9") }
            } throws: { "\($0)" == "cannot find interface v9: No such device (see 'ip link')" }
        }
    }
}
