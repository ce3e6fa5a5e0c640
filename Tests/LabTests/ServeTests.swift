import ControlAPI
import Dataplane
import Foundation
import Model
import TestSupport
import TestTraits
import Testing

extension LabSuites {
    /// End to end through `tandem serve`: real clients and servers in the lab,
    /// health checks deciding, the CLI driving, as an operator would.
    @Suite(
        "Lab end to end: tandem serve", .privileged,
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
                out[i] = await (
                    Lab.ask(Lab.http(Lab.vip4, 80), from: Lab.client4(i)),
                    Lab.ask(Lab.https(Lab.vip4), from: Lab.client4(i))
                )
            }
            return out
        }

        @Test(
            "following on TCP, TLS and UDP, an unlinked service, IPv6; a real failing its :80 check moves its clients on every port within fall x interval + 1 s; recovery"
        )
        func failoverByHealthCheck() async throws {
            try await Lab.session {
                let lb = try await Served(services: Self.services())

                let before = await Self.survey()
                for (i, answer) in before {
                    #expect(
                        answer.http != nil && answer.http == answer.https,
                        "client \(i): :80 \(answer.http ?? "-") :443 \(answer.https ?? "-")")
                }
                #expect(Set(before.values.compactMap(\.http)).count == 3, "clients spread over the three reals")
                for i in Self.clients.prefix(6) {
                    #expect(
                        await Lab.askUDP(port: 443, from: Lab.client4(i)) == before[i]?.http,
                        "UDP :443 follows for client \(i)")
                }
                let unlinked = await Self.clients.asyncMap {
                    await Lab.ask(Lab.http(Lab.vip4, 8080), from: Lab.client4($0))
                }
                #expect(
                    zip(Self.clients, unlinked).contains { before[$0.0]?.http != $0.1 },
                    ":8080 is not linked and schedules on its own")
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
                if let moved {
                    print(
                        "failover: first rescheduled connection \(String(format: "%.2f", moved)) s after the server stopped"
                    )
                }
                #expect(await lb.state("shop-http", Self.addresses[failed]!) == "down")
                #expect(await lb.state("shop-https", Self.addresses[failed]!) == "group-down")

                let after = await Self.survey()
                for i in Self.clients {
                    let a = after[i]!
                    #expect(
                        a.http != nil && a.http == a.https,
                        "client \(i) after the failure: :80 \(a.http ?? "-") :443 \(a.https ?? "-")")
                    if affected.contains(i) {
                        #expect(a.https != failed, "client \(i) left \(failed) on :443 too")
                    } else {
                        #expect(a.http == before[i]?.http, "client \(i) kept \(before[i]?.http ?? "-")")
                    }
                }

                // Recovery: the real rejoins after `rise` passes; moved clients stay.
                try await Lab.startPort(failed, 80)
                #expect(
                    await TestClock.within(3) { await lb.state("shop-http", Self.addresses[failed]!) == "up" } != nil,
                    "\(failed) recovered")
                #expect(await lb.state("shop-https", Self.addresses[failed]!) == "up")
                let recovered = await Self.survey()
                for i in affected {
                    #expect(
                        recovered[i]?.http == after[i]?.http && recovered[i]?.https == after[i]?.https,
                        "client \(i) stays where it moved (records are not moved back)")
                }
                let newcomers = await (25...40).asyncMap {
                    await Lab.ask(Lab.http(Lab.vip4, 80), from: Lab.client4($0))
                }
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
                #expect(
                    !newcomers.values.contains { $0.http == drained || $0.https == drained },
                    "no new client reaches \(drained)")

                try await lb.cli(["real", "enable", address])
                #expect(await lb.state("shop-http", address) == "up")

                // Disable on one service acts like a failure: the whole group moves.
                try await lb.cli(["real", "disable", "--service", "shop-https", address])
                #expect(await lb.state("shop-https", address) == "disabled")
                #expect(await lb.state("shop-http", address) == "group-down")
                let moved = await Self.survey(1...16)
                for i in 1...16 {
                    #expect(moved[i]?.http == moved[i]?.https, "client \(i) follows after disable")
                    if before[i]?.http == drained {
                        #expect(moved[i]?.http != drained, "client \(i) moved off \(drained)")
                    }
                }
                try await lb.cli(["real", "enable", "--service", "shop-https", address])
                #expect(await lb.state("shop-http", address) == "up")

                // Bad arguments: a clear error and nothing changed.
                let unknown = await lb.attempt(["real", "disable", "--service", "nope", address])
                #expect(unknown.status == 1 && unknown.output.contains("no service named nope"), "\(unknown.output)")
                let stranger = await lb.attempt(["real", "drain", "198.18.0.99"])
                #expect(
                    stranger.status == 1 && stranger.output.contains("no service has a real 198.18.0.99"),
                    "\(stranger.output)")
                #expect(await lb.state("shop-http", address) == "up")

                // Requests that are not Tandem's on the socket: an error each, the daemon carries on.
                for junk in [
                    "hello", "{\"setReal\":{\"_0\":{\"action\":\"explode\",\"address\":\"x\"}}}",
                    "{\"listRecords\":{\"_0\":{\"client\":\"198.18.10.0/99\"}}}", String(repeating: "x", count: 70_000)
                ] {
                    let reply = try await Lab.run([
                        "/usr/bin/python3", "-c",
                        """
                        import socket, sys
                        s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
                        try: s.sendall(sys.argv[2].encode() + b"\\n")
                        except OSError: pass
                        print(s.makefile().readline())
                        """, lb.socket, junk
                    ])
                    #expect(reply.hasPrefix("{\"error\":"), "\(junk.prefix(40)): \(reply)")
                }
                #expect(await lb.state("shop-http", address) == "up")
                #expect(try await lb.status().services.count == 6)
            }
        }

        @Test(
            "a full record table: the listing arrives whole with bounded daemon memory, and neither it nor status delays a failover"
        )
        func fullTable() async throws {
            try await Lab.session {
                let lb = try await Served(services: Self.services())
                let address = Self.addresses["r1"]!

                // Fill the record table: a million clients of r1 in the shop group.
                let status = try await lb.status()
                let group = UInt32(try #require(status.services.first { $0.name == "shop-http" }).group)
                let dataplane = try Dataplane(pinRoot: lb.pins)
                let pinned = dataplane.pinnedState()
                let r1 = try #require(
                    pinned.reals.first { real in
                        real.address == IPAddress(address)! && real.active
                            && Self.group(of: real.id, in: pinned) == group
                    })
                let present = try dataplane.fillRecords(
                    count: 1_048_576, group: group, real: r1.id, firstClient: 0xC613_0000)
                #expect(present > 1_000_000)

                // A listing of every record, as JSON, while r1 fails its :80 check.
                let listing = lb.dir + "/records.json"
                let lister = try await lb.background(["persistence", "list", "--json"], output: listing)
                // The server stops listening at once but takes a moment to
                // exit; the bound runs from when stop-port returned.
                let stopping = TestClock.nowNs()
                try await Lab.stopPort("r1", 80)
                let stopTook = TestClock.seconds(since: stopping)
                let seen = await TestClock.within(2 * 0.3 + 1) { await lb.state("shop-http", address) == "down" }
                let failedAfter = TestClock.seconds(since: stopping)
                #expect(
                    seen != nil && failedAfter < stopTook + 2 * 0.3 + 1,
                    "the failure is applied within fall x interval + 1 s while the listing runs (\(failedAfter) s, stop-port \(stopTook) s)"
                )
                print(
                    "full table: failure applied \(String(format: "%.2f", failedAfter)) s after the server was told to stop, during a listing"
                )
                let statusStart = TestClock.nowNs()
                _ = try? await lb.status()
                let statusTime = TestClock.seconds(since: statusStart)
                #expect(statusTime < 2, "status during a listing of a full table: \(statusTime) s")
                print("full table: status took \(String(format: "%.3f", statusTime)) s during the listing")
                let listed = await lister.wait()
                let text = try String(contentsOfFile: listing, encoding: .utf8)
                #expect(
                    listed == 0,
                    "persistence list exit \(listed); its words: \(text.split(separator: "\n").filter { $0.hasPrefix("tandem") }.joined(separator: " | ")); last bytes: \(text.suffix(200).replacingOccurrences(of: "\n", with: "⏎"))"
                )
                let records = try JSONDecoder().decode([RecordReport].self, from: Data(text.utf8))
                // The failure invalidated r1's records in the middle of the listing:
                // what was listed before it counts, what came after does not.
                #expect(records.count > 4096, "more than one batch arrived")
                #expect(records.count <= present)
                let peak = lb.peakMemoryMB()
                #expect(peak < 400, "daemon peak memory \(peak) MB while listing a full table")
                print("full table: \(records.count) records listed; daemon peak RSS \(peak) MB")

                // A daemon that dies mid-reply: the CLI says so and exits 1.
                try await Lab.startPort("r1", 80)
                #expect(await TestClock.within(3) { await lb.state("shop-http", address) == "up" } != nil)
                _ = try dataplane.fillRecords(count: 1_048_576, group: group, real: r1.id, firstClient: 0xC613_0000)
                let cut = try await lb.background(["persistence", "list"], output: lb.dir + "/cut.txt")
                usleep(300_000)
                await lb.crash()
                #expect(await cut.wait() == 1)
                let said = (try? String(contentsOfFile: lb.dir + "/cut.txt", encoding: .utf8)) ?? ""
                #expect(said.contains("closed the connection"), "\(said.suffix(300))")
            }
        }

        @Test("the most services the dataplane holds: status arrives whole, as text and as JSON")
        func largestStatus() async throws {
            try await Lab.session {
                // 1,024 services of three reals each: a status reply of about 1 MB.
                let services = (0..<1024).map { i in
                    let port = 20_000 + i
                    return """
                          - name: svc-\(i)
                            vip: 198.18.0.100
                            port: \(port)
                            check: { type: none }
                            reals:
                              - { address: 198.18.0.21, port: \(port) }
                              - { address: 198.18.0.22, port: \(port) }
                              - { address: 198.18.0.23, port: \(port) }
                        """
                }
                let lb = try await Served(services: services.joined(separator: "\n"))
                let report = try await lb.status()
                #expect(report.services.count == 1024)
                #expect(report.services.allSatisfy { $0.reals.count == 3 })
                #expect(report.services.last?.name == "svc-1023")
                let text = try await lb.cli(["status"])
                #expect(text.utf8.count > 200_000, "a reply beyond the size that used to be cut")
                #expect(text.contains("198.18.0.100:21023"), "the last service is in the text")
                print("status of 1,024 services: \(text.utf8.count) bytes of text, all 1,024 services in the JSON")
            }
        }

        @Test(
            "a real that does not answer ARP/NDP: serve starts without it, the rest forward; it joins once it answers; a changed MAC is picked up"
        )
        func unreachableReal() async throws {
            try await Lab.session {
                // r3 is cut off before the daemon starts: no ARP or NDP answer.
                try await Lab.run(["ip", "-n", "tdm-r3", "link", "set", "eth0", "down"])
                let lb = try await Served(services: Self.services())
                #expect(await lb.state("shop-http", Self.addresses["r3"]!) == "unreachable")
                #expect(await lb.state("shop-https", Self.addresses["r3"]!) == "unreachable")
                let during = await Self.survey(1...16)
                for (i, a) in during {
                    #expect(
                        a.http != nil && a.http != "r3" && a.http == a.https,
                        "client \(i) served by r1/r2 on both ports: \(a)")
                }

                // r3 answers again: in service after its checks pass, without a restart.
                try await Lab.run(["ip", "-n", "tdm-r3", "link", "set", "eth0", "up"])
                let joined = await TestClock.within(2 + 2 * 0.3 + 3) {
                    await lb.state("shop-http", Self.addresses["r3"]!) == "up"
                }
                #expect(joined != nil, "r3 joins once it answers ARP")
                let newcomers = await Self.survey(17...24)
                #expect(newcomers.values.contains { $0.http == "r3" }, "new clients reach r3: \(newcomers)")

                // r3 gets a new MAC (a replaced server): picked up without a restart.
                try await Lab.run(["ip", "-n", "tdm-r3", "link", "set", "eth0", "address", "02:00:c6:12:00:99"])
                try await Lab.run(["ip", "-n", "tdm-lb", "neigh", "flush", "dev", "eth0"])
                let r3Client = try #require(newcomers.first { $0.value.http == "r3" }?.key)
                let reached = await TestClock.within(12) {
                    await Lab.ask(Lab.http(Lab.vip4, 80), from: Lab.client4(r3Client)) == "r3"
                }
                #expect(reached != nil, "r3's client reaches it at its new MAC")
                let log = (try? String(contentsOfFile: lb.log, encoding: .utf8)) ?? ""
                #expect(log.contains("MAC changed"), "\(log.suffix(400))")
            }
        }

        @Test(
            "one daemon per pin directory; down refuses while it runs; a start that cannot work changes nothing and leaves nothing"
        )
        func guards() async throws {
            try await Lab.session {
                let lb = try await Served(services: Self.services())
                let answer = await Lab.ask(Lab.http(Lab.vip4, 80), from: Lab.client4(1))
                #expect(answer != nil)
                let tag = UUID().uuidString.prefix(8).lowercased()

                /// `tandem serve` on a config like lb's with `changes` applied; its exit and output.
                func serve(_ name: String, pins: String, socket: String) async throws -> (status: Int32, output: String)
                {
                    let config = lb.dir + "/\(name).yaml"
                    let text = try String(contentsOfFile: lb.configPath, encoding: .utf8)
                        .replacingOccurrences(of: "pin-directory: \(lb.pins)", with: "pin-directory: \(pins)")
                        .replacingOccurrences(of: "socket: \(lb.socket)", with: "socket: \(socket)")
                    try text.write(toFile: config, atomically: true, encoding: .utf8)
                    let out = try await Command.run(
                        "timeout", ["30", "nsenter", "--net=/run/netns/tdm-lb", Served.tandem, "serve", "-c", config])
                    return (out.status, out.output)
                }

                // A second daemon on the same pins (its own socket): refused, naming the first.
                let second = try await serve("second", pins: lb.pins, socket: lb.dir + "/second.sock")
                #expect(second.status == 1)
                #expect(
                    second.output.contains(
                        "already used by another tandem serve (pid \(lb.pid ?? -1), socket \(lb.socket)"),
                    "\(second.output)")

                // tandem down while the daemon runs: refused, forwarding untouched.
                let down = await lb.attemptPlain([Served.tandem, "down", "--pin-directory", lb.pins])
                #expect(down.status == 1 && down.output.contains("owned by a running tandem serve"), "\(down.output)")
                #expect(await Lab.ask(Lab.http(Lab.vip4, 80), from: Lab.client4(1)) == answer, "still forwarding")
                #expect(try await lb.status().services.count == 6)

                // A socket directory others can write: refused before anything changes.
                let open = "/tmp/tandem-test-\(getpid())-open-\(tag)"
                try await Lab.run(["mkdir", "-p", "-m", "1777", open])
                defer { try? FileManager.default.removeItem(atPath: open) }
                let pinsA = "/sys/fs/bpf/tandem-test-\(getpid())-a-\(tag)"
                let unsafeSocket = try await serve("open", pins: pinsA, socket: open + "/tandem.sock")
                #expect(
                    unsafeSocket.status == 1 && unsafeSocket.output.contains("is writable by others"),
                    "\(unsafeSocket.output)")
                #expect(!FileManager.default.fileExists(atPath: pinsA), "no pins made")

                // A pin directory that is not on bpffs: refused; nothing mounted over it, its files still there.
                let plain = "/tmp/tandem-test-\(getpid())-plain-\(tag)"
                try await Lab.run(["mkdir", "-p", plain])
                try "mine".write(toFile: plain + "/keep.txt", atomically: true, encoding: .utf8)
                defer { try? FileManager.default.removeItem(atPath: plain) }
                let offBPFFS = try await serve("plain", pins: plain + "/pins", socket: lb.dir + "/plain.sock")
                #expect(
                    offBPFFS.status == 1 && offBPFFS.output.contains("not on a BPF filesystem"), "\(offBPFFS.output)")
                #expect(!(try await Lab.run(["cat", "/proc/mounts"])).contains(plain), "nothing mounted")
                #expect((try? String(contentsOfFile: plain + "/keep.txt", encoding: .utf8)) == "mine")

                // A start that fails after making its maps (XDP is already attached
                // to eth0 by lb): those maps are removed again.
                let pinsB = "/sys/fs/bpf/tandem-test-\(getpid())-b-\(tag)"
                let busy = try await serve("busy", pins: pinsB, socket: lb.dir + "/busy.sock")
                #expect(busy.status == 1, "\(busy.output)")
                #expect(!FileManager.default.fileExists(atPath: pinsB), "the failed start left no pins: \(busy.output)")
                #expect(await Lab.ask(Lab.http(Lab.vip4, 80), from: Lab.client4(1)) == answer, "lb still forwarding")

                // Not root: told so, not "not running".
                let user = await lb.attemptPlain([
                    "su", "nobody", "-s", "/bin/sh", "-c", "'\(Served.tandem)' status --socket '\(lb.socket)'"
                ])
                #expect(user.status == 1 && user.output.contains("permission denied"), "\(user.output)")

                // SIGTERM: exit 0, the stop logged, the socket removed.
                await lb.stop()
                #expect(lb.exitStatus == 0)
                let log = (try? String(contentsOfFile: lb.log, encoding: .utf8)) ?? ""
                #expect(log.contains("stopped"), "\(log.suffix(500))")
                #expect(!FileManager.default.fileExists(atPath: lb.socket))
            }
        }

        static func group(of real: UInt32, in pinned: PinnedState) -> UInt32? {
            guard let service = pinned.backends.first(where: { $0.real == real })?.service else { return nil }
            return pinned.services.first { $0.id == service }?.group
        }

        @Test(
            "reload adds a real without dropping a flow; only the shared record keeps :443 with :80; a broken reload changes nothing"
        )
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
                    #expect(
                        await Lab.ask(Lab.https(Lab.vip4), from: Lab.client4(i)) == cart[i],
                        "client \(i): :443 follows :80 after r3 joined")
                }
                let newcomers = await (31...40).asyncMap {
                    await Lab.ask(Lab.http(Lab.vip4, 80), from: Lab.client4($0))
                }
                #expect(newcomers.contains("r3"), "the new real takes new clients")

                // A config that fails validation: every error, exit 1, nothing applied.
                let records = try await lb.records().count
                try "interface: eth0\nservices:\n  - name: x\n    vip: 198.18.0.300\n    port: 99999\n"
                    .write(toFile: lb.configPath, atomically: true, encoding: .utf8)
                let refused = await lb.attempt(["reload"])
                #expect(refused.status == 1)
                #expect(
                    refused.output.contains("services.x.vip") && refused.output.contains("services.x.port"),
                    "\(refused.output)")
                #expect(refused.output.contains("nothing applied"))
                #expect(try await lb.status().services.count == 6)
                #expect(try await lb.records().count == records)
                #expect(held.ask() == heldReal)
            }
        }

        @Test(
            "controller restart with an open connection: forwarding goes on, the new daemon adopts every flow and record"
        )
        func restart() async throws {
            try await Lab.session {
                let lb = try await Served(services: Self.services())
                let before = await Self.survey(1...12)
                let held = try await HeldConnection(from: Lab.client4(30))
                let heldReal = try #require(held.first)
                let records = try await lb.records()
                let digests = try await lb.status().services.map(\.ringDigest)
                #expect(digests.allSatisfy { $0?.count == 16 }, "status --json carries a ring digest per service")

                await lb.stop()
                #expect(held.ask() == heldReal, "forwarding goes on with no daemon")
                #expect(await lb.attempt(["status"]).output.contains("tandem serve is not running"))
                #expect(
                    await Lab.ask(Lab.https(Lab.vip4), from: Lab.client4(3)) == before[3]?.http,
                    "records still serve with no daemon")

                try await lb.start()
                #expect(held.ask() == heldReal, "the open connection survives the restart")
                let adopted = try await lb.records()
                #expect(
                    Set(adopted.map { "\($0.client)->\($0.real)" }).isSuperset(
                        of: records.map { "\($0.client)->\($0.real)" }),
                    "every record is still there")
                #expect(
                    await Self.survey(1...12).allSatisfy {
                        before[$0.key]?.http == $0.value.http && $0.value.http == $0.value.https
                    })
                let log = (try? String(contentsOfFile: lb.log, encoding: .utf8)) ?? ""
                #expect(log.contains("adopted pinned dataplane"), "the second daemon adopted the pins")
                #expect(try await lb.status().services.map(\.ringDigest) == digests, "the same rings after the restart")
            }
        }

        @Test("sorry server only while every real is down; drop-on-failure moves an established connection")
        func sorryAndDrop() async throws {
            try await Lab.session {
                let lb = try await Served(services: Self.services(dropOnFailure: true, sorry: true))
                #expect(
                    await Lab.ask(Lab.http(Lab.vip4, 8080), from: Lab.client4(1)) != "r3",
                    "the sorry server is idle while a real is up")
                try await Lab.stopPort("r1", 8080)
                try await Lab.stopPort("r2", 8080)
                #expect(
                    await TestClock.within(2) {
                        let r1 = await lb.state("api", "198.18.0.21"), r2 = await lb.state("api", "198.18.0.22")
                        return r2 == "down" && r1 == "down"
                    } != nil)
                #expect(
                    await Lab.ask(Lab.http(Lab.vip4, 8080), from: Lab.client4(1)) == "r3",
                    "every real down: the sorry server answers")
                try await Lab.startPort("r2", 8080)
                #expect(await TestClock.within(2) { await lb.state("api", "198.18.0.22") == "up" } != nil)
                #expect(
                    await Lab.ask(Lab.http(Lab.vip4, 8080), from: Lab.client4(2)) == "r2",
                    "back to the real once one is up")

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
