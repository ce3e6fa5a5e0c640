import ControlAPI
import Foundation
import TestSupport
import TestTraits
import Testing

extension LabSuites {
    /// Record sync in the multi-node lab (tools/lab-nodes configures `sync:`
    /// on every node): every change that leaves rings and records apart on
    /// nodes without sync — a rolling reload that adds a real, a failure
    /// and recovery, a drain, a cold restart — keeps each client's :80 and
    /// :443 on one real, the real it had.
    @Suite(
        "Record sync across nodes", .privileged,
        .serialized)
    struct ClusterSyncTests {
        static let clients = NodesLab.clients.count
        static let r3 = ["198.18.0.23", "2001:db8::23"]

        static func configPath(_ node: String) -> String { "/run/tandem-lab-nodes/\(node)/tandem.yaml" }

        /// A node's config with r3 left out of every service.
        static func withoutR3(_ text: String) -> String {
            text.split(separator: "\n", omittingEmptySubsequences: false)
                .filter { line in !r3.contains { line.contains("address: \($0),") } }
                .joined(separator: "\n")
        }

        /// One node's records of the shop group: client address -> real name.
        static func records(_ node: Node, client: String? = nil) async throws -> [String: String] {
            let filter = client.map { ["--client", $0] } ?? []
            let text = try await node.cli(["persistence", "list", "--service", "shop-http", "--json"] + filter)
            let rows = try JSONDecoder().decode([RecordReport].self, from: Data(text.utf8))
            var out: [String: String] = [:]
            for row in rows {
                let name = NodesLab.addresses.first { $0.value == row.real }?.key ?? row.real
                out[row.client.split(separator: "/").first.map(String.init) ?? row.client] = name
            }
            return out
        }

        /// Clients whose record names the same real on every node.
        static func tablesAgreeing(_ nodes: [Node]) async -> Int {
            var tables: [[String: String]] = []
            for node in nodes { tables.append((try? await records(node)) ?? [:]) }
            return NodesLab.clients.filter { i in
                let reals = tables.map { $0[Lab.client4(i)] }
                return reals[0] != nil && reals.allSatisfy { $0 == reals[0] }
            }.count
        }

        /// Every node's table holds each client's record, the same real on
        /// every node (the writes of the survey before it have travelled).
        static func expectTablesAgree(_ nodes: [Node], _ step: String) async {
            var agreeing = 0
            let settled = await TestClock.within(3) {
                agreeing = await tablesAgreeing(nodes)
                return agreeing == clients
            }
            print("sync: \(step): \(agreeing)/\(clients) clients have the same record on all \(nodes.count) nodes")
            #expect(
                settled != nil, "\(step): every node holds the same record for each client (\(agreeing)/\(clients))")
        }

        /// A survey after `step`: every client's :80 and :443 on one real,
        /// each the real it had in `before`.
        @discardableResult
        static func expectKept(_ step: String, before: [Int: String]) async throws -> [Int: NodesLab.Visit] {
            let visits = try await NodesLab.survey()
            let tally = NodesLab.tally(visits, before: before)
            print("sync: \(step): \(tally)")
            #expect(tally.agree == clients, "\(step): every client's :80 and :443 reach one real")
            #expect(tally.kept == clients, "\(step): every client kept its real")
            return visits
        }

        static func waitState(_ nodes: [Node], real: String, _ state: String) async {
            let address = NodesLab.addresses[real] ?? real
            for node in nodes {
                #expect(
                    await TestClock.within(5) { await node.state("shop-http", address) == state } != nil,
                    "\(node.name) sees \(real) \(state)")
            }
        }

        @Test(
            "a real added by reload node after node, a real failed and recovered, a node drained with 80 open connections, a node restarted cold: each client keeps one real on :80 and :443 across nodes"
        )
        func acrossChanges() async throws {
            try await NodesLab.session {
                // The nodes start without r3; it comes by reload, one node after another.
                var full: [String: String] = [:]
                for name in NodesLab.nodes {
                    let text = try String(contentsOfFile: Self.configPath(name), encoding: .utf8)
                    full[name] = text
                    try Self.withoutR3(text).write(toFile: Self.configPath(name), atomically: true, encoding: .utf8)
                }
                let nodes = try await NodesTests.startNodes()
                for node in nodes {
                    #expect(
                        await TestClock.within(5) { (try? await node.status())?.sync?.filter(\.up).count == 2 } != nil,
                        "\(node.name) hears both peers")
                }

                let steady = try await NodesLab.survey()
                let first = NodesLab.tally(steady)
                print("sync: steady state (r1 and r2): \(first)")
                #expect(first.agree == Self.clients)
                #expect(first.crossing >= 10, "clients whose :80 and :443 crossed nodes: \(first.crossing)")
                #expect(!steady.values.contains { $0.http.real == "r3" || $0.https.real == "r3" })
                var realOf = steady.mapValues { $0.http.real ?? "-" }
                await Self.expectTablesAgree(nodes, "steady state")

                // A real added by reload on each node in turn: between two
                // reloads the nodes' rings differ; the records decide.
                for node in nodes {
                    try full[node.name]!.write(toFile: Self.configPath(node.name), atomically: true, encoding: .utf8)
                    try await node.cli(["reload"])
                    #expect(
                        await TestClock.within(5) { await node.state("shop-http", "198.18.0.23") == "up" } != nil,
                        "\(node.name) has r3 up after its reload")
                    try await Self.expectKept("r3 added by reload on \(node.name)", before: realOf)
                }

                // A real fails its :80 check: its clients move, on both
                // ports, to one real; then it recovers and they stay where
                // they went, whichever node they reach.
                let failed = try #require(realOf[1])
                try await NodesLab.stopPort(failed, 80)
                await Self.waitState(nodes, real: failed, "down")
                let afterFailure = try await NodesLab.survey()
                let failure = NodesLab.tally(afterFailure, before: realOf)
                print("sync: \(failed) failed its :80 check: \(failure)")
                let affected = realOf.values.filter { $0 == failed }.count
                #expect(failure.agree == Self.clients)
                #expect(failure.kept == Self.clients - affected, "only \(failed)'s \(affected) clients moved")
                #expect(!afterFailure.values.contains { $0.http.real == failed || $0.https.real == failed })
                realOf = afterFailure.mapValues { $0.http.real ?? "-" }
                try await Self.expectKept("\(failed) failed, asked again", before: realOf)
                await Self.expectTablesAgree(nodes, "\(failed) failed")

                try await NodesLab.startPort(failed, 80)
                await Self.waitState(nodes, real: failed, "up")
                try await Self.expectKept("\(failed) recovered", before: realOf)
                await Self.expectTablesAgree(nodes, "\(failed) recovered")

                // A node drained with two kept-alive connections per client
                // open: lb1's go on through lb2 and lb3, which hold no flow
                // for them, only the records.
                let held = try await NodesTests.hold() + NodesTests.hold()
                #expect(held.allSatisfy { $0.real != nil && $0.node != nil }, "every held connection answered")
                let onDrained = held.filter { $0.node == "lb1" }.count
                #expect(onDrained > 0, "some held connections are on lb1")
                try await nodes[0].cli(["node", "drain"])
                #expect(
                    await NodesLab.routed(to: ["lb2", "lb3"], within: 3), "the router stops sending the VIP to lb1")
                let answers = NodesTests.askAll(held.map(\.connection))
                let kept = zip(held, answers).filter { $0.1 != nil && $0.1 == $0.0.real }.count
                print(
                    "sync: lb1 drained: \(kept)/\(held.count) open connections kept their real (\(onDrained) were on lb1)"
                )
                #expect(kept == held.count, "every open connection kept its real through the drain")
                try await Self.expectKept("lb1 drained", before: realOf)
                withExtendedLifetime(held) {}
                try await nodes[0].cli(["node", "resume"])
                #expect(await NodesLab.routed(to: NodesLab.nodes, within: 3), "lb1 routed again after resume")

                // A node restarted cold: its daemon stopped, `tandem down`
                // (withdrawn, detached), its pins removed, started again. It
                // takes the peers' tables before it announces.
                let cold = nodes[2]
                #expect(await cold.stop() == 0)
                try await Lab.run(["nsenter", "--net=/run/netns/tdm-n-lb3", Served.tandem, "down", "-c", cold.config])
                #expect(await NodesLab.routed(to: ["lb1", "lb2"], within: 3), "lb3 withdrawn")
                try? FileManager.default.removeItem(atPath: "/sys/fs/bpf/tdm-n-lb3")
                #expect(!FileManager.default.fileExists(atPath: "/sys/fs/bpf/tdm-n-lb3"), "lb3's pins are gone")
                try await Self.expectKept("lb3 down", before: realOf)
                try await cold.start()
                #expect(await NodesLab.routed(to: NodesLab.nodes, within: 10), "lb3 routed again after its restart")
                let log = ((try? String(contentsOfFile: cold.log, encoding: .utf8)) ?? "").split(separator: "\n")
                // (the log holds both starts: the restart's lines are the last)
                let pulled = log.lastIndex { $0.contains("pulled the peers' tables") }
                let announced = log.lastIndex { $0.contains("VIP announced") }
                let installed = pulled.flatMap { line in
                    log[line].split(separator: " ").first { $0.hasPrefix("installed=") }.flatMap {
                        Int($0.dropFirst(10))
                    }
                }
                print("sync: lb3 restarted cold: \(pulled.map { String(log[$0]) } ?? "no pull logged")")
                #expect(pulled != nil, "lb3 logs the pull: \(log.suffix(8).joined(separator: " | "))")
                #expect((installed ?? 0) >= Self.clients, "lb3 installed every client's record from the pull")
                #expect(pulled != nil && announced != nil && pulled! < announced!, "lb3 announced after the pull")
                await Self.expectTablesAgree(nodes, "lb3 restarted cold")
                let last = try await Self.expectKept("lb3 restarted cold", before: realOf)
                let servedByCold = last.values.filter { $0.http.node == "lb3" || $0.https.node == "lb3" }.count
                print("sync: lb3 restarted cold: \(servedByCold) clients reached lb3 in the survey after it")
                for node in nodes {
                    let status = try await node.status()
                    #expect(status.syncUnsent == 0, "\(node.name) sent every record write it made")
                    #expect(status.sync?.allSatisfy(\.up) == true, "\(node.name) hears both peers")
                }
                withExtendedLifetime(nodes) {}
            }
        }

        struct Captured: Decodable {
            var from: String
            var hex: String
        }

        static func bytes(_ hex: String) -> [UInt8] {
            var out: [UInt8] = []
            var index = hex.startIndex
            while index < hex.endIndex {
                let next = hex.index(index, offsetBy: 2)
                out.append(UInt8(hex[index..<next], radix: 16)!)
                index = next
            }
            return out
        }

        static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

        static func rejected(_ node: Node, peer: String) async throws -> [String: UInt64] {
            try await node.status().sync?.first { $0.node == peer }?.rejected ?? [:]
        }

        @Test(
            "a peer's record datagram replayed, and the same with its real changed (MAC kept): both refused and counted, the table unchanged"
        )
        func replayAndForgery() async throws {
            try await NodesLab.session {
                let nodes = try await NodesTests.startNodes()
                // lb1 started first, while no peer ran: it announced anyway, and said so.
                let firstLog = (try? String(contentsOfFile: nodes[0].log, encoding: .utf8)) ?? ""
                let alone = firstLog.split(separator: "\n").first { $0.contains("no peer's table could be pulled") }
                print("sync: lb1 started alone: \(alone.map(String.init) ?? "-")")
                #expect(alone?.contains("announcing anyway") == true, "lb1 says it announces without a pull")
                #expect(
                    alone?.contains("198.18.0.12:7946 (cannot connect: Connection refused)") == true,
                    "and why, for each peer, in a few words")
                _ = try await NodesLab.survey()
                await Self.expectTablesAgree(nodes, "steady state")
                let target = nodes[0]
                let client = Lab.client4(40)

                // A record another node writes and sends lb1, read off lb1's
                // wire: client 40's records flushed everywhere, then a new
                // connection; the node that takes its first ACK writes it.
                var captured: Captured?
                let file = "/run/tandem-lab-nodes/capture.json"
                for _ in 0..<10 where captured == nil {
                    for node in nodes { try await node.cli(["persistence", "flush", "--client", client]) }
                    let capture = try await BackgroundProcess.start(
                        NodesLab.script, ["capture-sync", "lb1", "3"], log: file)
                    try await Task.sleep(nanoseconds: 300_000_000)
                    try await Lab.run([NodesLab.script, "survey", "40-40"])
                    if await capture.wait() == 0, let data = FileManager.default.contents(atPath: file) {
                        captured = try? JSONDecoder().decode(Captured.self, from: data)
                    }
                }
                let message = try #require(captured, "a peer's datagram with client 40's record reached lb1")
                let original = try await Self.records(target, client: client)
                print("sync: captured \(message.hex.count / 2) bytes from \(message.from); lb1 installed \(original)")
                #expect(original[client] != nil, "lb1 installed the genuine datagram's record")

                // lb1 forgets it; neither the replay nor the forgery may bring it back.
                try await target.cli(["persistence", "flush", "--client", client])
                let table = try await Self.records(target)
                let before = try await Self.rejected(target, peer: message.from)

                let genuine = Self.bytes(message.hex)
                try await Lab.run([NodesLab.script, "send-sync", message.from, "lb1", message.hex])
                var forged = genuine
                let realAt = 38 + Int(forged[6]) + 40 + 3  // the last byte of record 0's IPv4 real
                forged[realAt] = forged[realAt] == 0x15 ? 0x16 : 0x15  // .21 <-> .22
                try await Lab.run([NodesLab.script, "send-sync", message.from, "lb1", Self.hex(forged)])

                var after: [String: UInt64] = [:]
                let counted = await TestClock.within(3) {
                    after = (try? await Self.rejected(target, peer: message.from)) ?? [:]
                    return after["replay", default: 0] > before["replay", default: 0]
                        && after["bad-mac", default: 0] > before["bad-mac", default: 0]
                }
                print("sync: rejected by lb1 from \(message.from): before \(before), after \(after)")
                #expect(counted != nil, "the replay is counted as replay and the forgery as bad-mac")
                #expect(after["replay", default: 0] == before["replay", default: 0] + 1)
                #expect(after["bad-mac", default: 0] == before["bad-mac", default: 0] + 1)
                #expect(try await Self.records(target, client: client).isEmpty, "client 40 has no record on lb1")
                #expect(try await Self.records(target) == table, "lb1's other records are as they were")

                // The genuine path still works: client 40's next connections
                // write a record that every node holds.
                for node in nodes { try await node.cli(["persistence", "flush", "--client", client]) }
                try await Lab.run([NodesLab.script, "survey", "40-40"])
                await Self.expectTablesAgree(nodes, "client 40 asked again")
                withExtendedLifetime(nodes) {}
            }
        }
    }
}
