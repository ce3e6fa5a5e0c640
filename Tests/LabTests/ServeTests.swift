import Controller
import Foundation
import TestSupport
import Testing

extension LabSuites {
/// End to end through `tandem serve`: real clients and servers in the lab,
/// health checks deciding, the CLI driving, as an operator would.
@Suite("Lab end to end: tandem serve", .enabled(if: Privilege.enabled, Comment(rawValue: Privilege.reason)),
       .serialized)
struct ServeTests {
    static let clients = 1...24
    static let addresses = ["r1": "198.18.0.21", "r2": "198.18.0.22", "r3": "198.18.0.23"]

    /// shop-http :80, shop-https :443 and shop-quic udp :443 follow each
    /// other; api :8080 is on its own; shop6 :80/:443 on the IPv6 VIP.
    static func services(reals: [Int] = [21, 22, 23], dropOnFailure: Bool = false, sorry: Bool = false) -> String {
        func list(_ port: Int, v6: Bool = false) -> String {
            reals.map { "      - { address: \(v6 ? "2001:db8::\($0)" : "198.18.0.\($0)"), port: \(port) }" }
                .joined(separator: "\n")
        }
        let persist = "persistence: { mode: source-ip, timeout: 30m, netmask: 32 }"
        let drop = dropOnFailure ? "\n    drop-on-failure: true" : ""
        return """
              - name: shop-http
                vip: 198.18.0.100
                port: 80
                \(persist)
                follow: [shop-https, shop-quic]
                check: { type: http, path: /health }\(drop)
                reals:
            \(list(80))
              - name: shop-https
                vip: 198.18.0.100
                port: 443
                \(persist)
                follow: [shop-http, shop-quic]
                check: { type: tls }\(drop)
                reals:
            \(list(443))
              - name: shop-quic
                vip: 198.18.0.100
                port: 443
                protocol: udp
                \(persist)
                follow: [shop-http, shop-https]
                check: { type: tls, port: 443 }
                reals:
            \(list(443))
              - name: api
                vip: 198.18.0.100
                port: 8080
                \(persist)
                check: { type: http, path: /health }
                reals:
            \(sorry ? list(8080).split(separator: "\n").prefix(2).joined(separator: "\n") : list(8080))\(sorry ? "\n    sorry: { address: 198.18.0.23, port: 8080 }" : "")
              - name: shop6-http
                vip: 2001:db8::100
                port: 80
                persistence: { mode: source-ip, timeout: 30m, netmask: 128 }
                follow: [shop6-https]
                check: { type: http, path: /health }
                reals:
            \(list(80, v6: true))
              - name: shop6-https
                vip: 2001:db8::100
                port: 443
                persistence: { mode: source-ip, timeout: 30m, netmask: 128 }
                follow: [shop6-http]
                check: { type: tls }
                reals:
            \(list(443, v6: true))
            """
    }

    /// Which real each client reaches on :80 and on :443.
    static func survey(_ clients: ClosedRange<Int> = clients) async -> [Int: (http: String?, https: String?)] {
        var out: [Int: (String?, String?)] = [:]
        for i in clients {
            out[i] = await (Lab.ask(Lab.http(Lab.vip4, 80), from: Lab.client4(i)), Lab.ask(Lab.https(Lab.vip4), from: Lab.client4(i)))
        }
        return out
    }

    @Test("following on TCP, TLS and UDP, an unlinked service, IPv6; a real failing its :80 check moves its clients on every port within fall x interval + 1 s; recovery")
    func failoverByHealthCheck() async throws {
        try await Lab.session {
            let lb = try await Served(services: Self.services())

            let before = await Self.survey()
            for (i, answer) in before {
                #expect(answer.http != nil && answer.http == answer.https, "client \(i): :80 \(answer.http ?? "-") :443 \(answer.https ?? "-")")
            }
            #expect(Set(before.values.compactMap(\.http)).count == 3, "clients spread over the three reals")
            for i in Self.clients.prefix(6) {
                #expect(await Lab.askUDP(port: 443, from: Lab.client4(i)) == before[i]?.http, "UDP :443 follows for client \(i)")
            }
            let unlinked = await Self.clients.asyncMap { await Lab.ask(Lab.http(Lab.vip4, 8080), from: Lab.client4($0)) }
            #expect(zip(Self.clients, unlinked).contains { before[$0.0]?.http != $0.1 }, ":8080 is not linked and schedules on its own")
            for i in 1...8 {
                let a = await Lab.ask(Lab.http(Lab.vip6, 80), from: Lab.client6(i))
                let b = await Lab.ask(Lab.https(Lab.vip6), from: Lab.client6(i))
                #expect(a != nil && a == b, "IPv6 client \(i) follows")
            }

            // Stop :80 on the real of client 1; :443 stays up there.
            let failed = try #require(before[1]?.http)
            let affected = Self.clients.filter { before[$0]?.http == failed }
            try await Lab.stopPort(failed, 80)
            let moved = await TestClock.within(2 * 0.3 + 1) {
                await Lab.ask(Lab.http(Lab.vip4, 80), from: Lab.client4(1)).map { $0 != failed } ?? false
            }
            #expect(moved != nil, "client 1 moved within fall x interval + 1 s")
            if let moved { print("failover: first rescheduled connection \(String(format: "%.2f", moved)) s after the server stopped") }
            #expect(await lb.state("shop-http", Self.addresses[failed]!) == "down")
            #expect(await lb.state("shop-https", Self.addresses[failed]!) == "group-down")

            let after = await Self.survey()
            for i in Self.clients {
                let a = after[i]!
                #expect(a.http != nil && a.http == a.https, "client \(i) after the failure: :80 \(a.http ?? "-") :443 \(a.https ?? "-")")
                if affected.contains(i) {
                    #expect(a.https != failed, "client \(i) left \(failed) on :443 too")
                } else {
                    #expect(a.http == before[i]?.http, "client \(i) kept \(before[i]?.http ?? "-")")
                }
            }

            // Recovery: the real rejoins after `rise` passes; moved clients stay.
            try await Lab.startPort(failed, 80)
            #expect(await TestClock.within(3) { await lb.state("shop-http", Self.addresses[failed]!) == "up" } != nil, "\(failed) recovered")
            #expect(await lb.state("shop-https", Self.addresses[failed]!) == "up")
            let recovered = await Self.survey()
            for i in affected {
                #expect(recovered[i]?.http == after[i]?.http && recovered[i]?.https == after[i]?.https,
                        "client \(i) stays where it moved (records are not moved back)")
            }
            let newcomers = await (25...40).asyncMap { await Lab.ask(Lab.http(Lab.vip4, 80), from: Lab.client4($0)) }
            #expect(newcomers.contains(failed), "new clients reach \(failed) again")
        }
    }

    @Test("drain keeps clients and takes no new ones; disable moves clients on every port; enable restores")
    func operatorStates() async throws {
        try await Lab.session {
            let lb = try await Served(services: Self.services())
            let before = await Self.survey(1...16)
            let drained = try #require(before[1]?.http)
            let address = Self.addresses[drained]!

            let message = try await lb.cli(["real", "drain", address])
            #expect(message.contains("draining in shop-http, shop-https, shop-quic, api"), "\(message)")
            #expect(await lb.state("shop-http", address) == "draining")
            let kept = await Self.survey(1...16)
            for i in 1...16 where before[i]?.http == drained {
                #expect(kept[i]?.http == drained && kept[i]?.https == drained, "client \(i) keeps its drained real")
            }
            let newcomers = await Self.survey(17...40)
            #expect(!newcomers.values.contains { $0.http == drained || $0.https == drained }, "no new client reaches \(drained)")

            try await lb.cli(["real", "enable", address])
            #expect(await lb.state("shop-http", address) == "up")

            // Disable on one service acts like a failure: the whole group moves.
            try await lb.cli(["real", "disable", "--service", "shop-https", address])
            #expect(await lb.state("shop-https", address) == "disabled")
            #expect(await lb.state("shop-http", address) == "group-down")
            let moved = await Self.survey(1...16)
            for i in 1...16 {
                #expect(moved[i]?.http == moved[i]?.https, "client \(i) follows after disable")
                if before[i]?.http == drained { #expect(moved[i]?.http != drained, "client \(i) moved off \(drained)") }
            }
            try await lb.cli(["real", "enable", "--service", "shop-https", address])
            #expect(await lb.state("shop-http", address) == "up")

            // Bad arguments: a clear error and nothing changed.
            let unknown = await lb.attempt(["real", "disable", "--service", "nope", address])
            #expect(unknown.status == 1 && unknown.output.contains("no service named nope"), "\(unknown.output)")
            let stranger = await lb.attempt(["real", "drain", "198.18.0.99"])
            #expect(stranger.status == 1 && stranger.output.contains("no service has a real 198.18.0.99"), "\(stranger.output)")
            #expect(await lb.state("shop-http", address) == "up")

            // Requests that are not Tandem's on the socket: an error each, the daemon carries on.
            for junk in ["hello", "{\"setReal\":{\"_0\":{\"action\":\"explode\",\"address\":\"x\"}}}",
                         "{\"listRecords\":{\"_0\":{\"client\":\"198.18.10.0/99\"}}}", String(repeating: "x", count: 70_000)] {
                let reply = try await Lab.run(["/usr/bin/python3", "-c", """
                    import socket, sys
                    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
                    try: s.sendall(sys.argv[2].encode() + b"\\n")
                    except OSError: pass
                    print(s.makefile().readline())
                    """, lb.socket, junk])
                #expect(reply.hasPrefix("{\"error\":"), "\(junk.prefix(40)): \(reply)")
            }
            #expect(await lb.state("shop-http", address) == "up")
            #expect(try await lb.status().services.count == 6)
        }
    }

    @Test("reload adds a real without dropping a flow; only the shared record keeps :443 with :80; a broken reload changes nothing")
    func reload() async throws {
        try await Lab.session {
            let lb = try await Served(services: Self.services(reals: [21, 22]))
            // Clients make their records on :80 only, and one keeps a connection open.
            var cart: [Int: String] = [:]
            for i in Self.clients { cart[i] = await Lab.ask(Lab.http(Lab.vip4, 80), from: Lab.client4(i)) }
            let held = try await HeldConnection(from: Lab.client4(30))
            let heldReal = try #require(held.first)

            try lb.write(services: Self.services(reals: [21, 22, 23]))
            let message = try await lb.cli(["reload"])
            #expect(message.contains("reloaded"), "\(message)")
            #expect(held.ask() == heldReal, "the open connection survives the reload")
            for i in Self.clients {
                #expect(await Lab.ask(Lab.https(Lab.vip4), from: Lab.client4(i)) == cart[i], "client \(i): :443 follows :80 after r3 joined")
            }
            let newcomers = await (31...40).asyncMap { await Lab.ask(Lab.http(Lab.vip4, 80), from: Lab.client4($0)) }
            #expect(newcomers.contains("r3"), "the new real takes new clients")

            // A config that fails validation: every error, exit 1, nothing applied.
            let records = try await lb.records().count
            try "interface: eth0\nservices:\n  - name: x\n    vip: 198.18.0.300\n    port: 99999\n"
                .write(toFile: lb.configPath, atomically: true, encoding: .utf8)
            let refused = await lb.attempt(["reload"])
            #expect(refused.status == 1)
            #expect(refused.output.contains("services.x.vip") && refused.output.contains("services.x.port"), "\(refused.output)")
            #expect(refused.output.contains("nothing applied"))
            #expect(try await lb.status().services.count == 6)
            #expect(try await lb.records().count == records)
            #expect(held.ask() == heldReal)
        }
    }

    @Test("controller restart with an open connection: forwarding goes on, the new daemon adopts every flow and record")
    func restart() async throws {
        try await Lab.session {
            let lb = try await Served(services: Self.services())
            let before = await Self.survey(1...12)
            let held = try await HeldConnection(from: Lab.client4(30))
            let heldReal = try #require(held.first)
            let records = try await lb.records()

            await lb.stop()
            #expect(held.ask() == heldReal, "forwarding goes on with no daemon")
            #expect(await lb.attempt(["status"]).output.contains("tandem serve is not running"))
            #expect(await Lab.ask(Lab.https(Lab.vip4), from: Lab.client4(3)) == before[3]?.http, "records still serve with no daemon")

            try await lb.start()
            #expect(held.ask() == heldReal, "the open connection survives the restart")
            let adopted = try await lb.records()
            #expect(Set(adopted.map { "\($0.client)->\($0.real)" }).isSuperset(of: records.map { "\($0.client)->\($0.real)" }),
                    "every record is still there")
            #expect(await Self.survey(1...12).allSatisfy { before[$0.key]?.http == $0.value.http && $0.value.http == $0.value.https })
            let log = (try? String(contentsOfFile: lb.log, encoding: .utf8)) ?? ""
            #expect(log.contains("adopted pinned dataplane"), "the second daemon adopted the pins")
        }
    }

    @Test("sorry server only while every real is down; drop-on-failure moves an established connection")
    func sorryAndDrop() async throws {
        try await Lab.session {
            let lb = try await Served(services: Self.services(dropOnFailure: true, sorry: true))
            #expect(await Lab.ask(Lab.http(Lab.vip4, 8080), from: Lab.client4(1)) != "r3", "the sorry server is idle while a real is up")
            try await Lab.stopPort("r1", 8080)
            try await Lab.stopPort("r2", 8080)
            #expect(await TestClock.within(2) {
                let r1 = await lb.state("api", "198.18.0.21"), r2 = await lb.state("api", "198.18.0.22")
                return r2 == "down" && r1 == "down"
            } != nil)
            #expect(await Lab.ask(Lab.http(Lab.vip4, 8080), from: Lab.client4(1)) == "r3", "every real down: the sorry server answers")
            try await Lab.startPort("r2", 8080)
            #expect(await TestClock.within(2) { await lb.state("api", "198.18.0.22") == "up" } != nil)
            #expect(await Lab.ask(Lab.http(Lab.vip4, 8080), from: Lab.client4(2)) == "r2", "back to the real once one is up")

            // shop-http drops connections on failure: the open one is moved (and reset).
            let held = try await HeldConnection(from: Lab.client4(5))
            let real = try #require(held.first)
            try await lb.cli(["real", "disable", "--service", "shop-http", Self.addresses[real]!])
            let after = held.ask()
            #expect(after != real, "the established connection left \(real): \(after ?? "-")")
            #expect(await Lab.ask(Lab.http(Lab.vip4, 80), from: Lab.client4(5)).map { $0 != real } ?? false)
        }
    }
}
}
