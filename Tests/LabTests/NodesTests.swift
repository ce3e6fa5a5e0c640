import Foundation
import TestSupport
import TestTraits
import Testing

extension LabSuites {
    /// Three nodes behind a BIRD router doing ECMP over L4 hashes
    /// (tools/lab-nodes): each node announces the VIP from table 100 by BGP
    /// with BFD; one client's :80 and :443 often land on different nodes,
    /// and port following must hold across them.
    @Suite(
        "Several nodes behind ECMP", .privileged,
        .serialized)
    struct NodesTests {
        /// Starts tandem serve on every node and waits until the router
        /// sends the VIP to all three.
        static func startNodes() async throws -> [Node] {
            var nodes: [Node] = []
            for name in NodesLab.nodes { nodes.append(try await Node(name)) }
            for node in nodes {
                #expect(await TestClock.within(10) { await node.announced() } != nil, "\(node.name) announces its VIPs")
            }
            try #require(
                await NodesLab.routed(to: NodesLab.nodes, within: 10), "the router sends the VIP to every node")
            return nodes
        }

        static func report(_ step: String, _ tally: NodesLab.Tally) {
            print("nodes: \(step): \(tally)")
        }

        /// A kept-alive :80 connection, the real that answered it and the
        /// node whose flow table held it then.
        struct Held {
            var connection: HeldConnection
            var client: String
            var real: String?
            var node: String?

            /// Every node holding a flow of this connection now.
            func nodes(_ flows: [String: Set<String>]) -> Set<String> {
                connection.sourcePort.flatMap { flows["\(client):\($0)"] } ?? []
            }
        }

        /// Opens one kept-alive :80 connection per client.
        static func hold() async throws -> [Held] {
            var held: [Held] = []
            for i in NodesLab.clients {
                let connection = try await HeldConnection(from: Lab.client4(i), namespace: "tdm-n-c")
                held.append(Held(connection: connection, client: Lab.client4(i), real: connection.first))
            }
            let flows = try await NodesLab.flowNodes()
            for index in held.indices {
                let nodes = held[index].nodes(flows)
                held[index].node = nodes.count == 1 ? nodes.first : nil
            }
            return held
        }

        /// Asks again on every held connection at once; the answers.
        static func askAll(_ held: [HeldConnection]) -> [String?] {
            held.forEach { $0.send() }
            return held.map { $0.answer() }
        }

        @Test(
            "steady state, a node drained (its open connections keep their real through the others), resumed, a real failing its :80 check: every client's :80 and :443 agree across nodes"
        )
        func drainAndFailure() async throws {
            try await NodesLab.session {
                let nodes = try await Self.startNodes()

                // Steady state.
                let steady = try await NodesLab.survey()
                let first = NodesLab.tally(steady)
                Self.report("steady state", first)
                #expect(first.agree == NodesLab.clients.count, "every client's :80 and :443 reach one real")
                #expect(first.crossing >= 10, "clients whose :80 and :443 crossed nodes: \(first.crossing)")
                #expect(
                    Set(steady.values.flatMap { [$0.http.node, $0.https.node] }.compactMap { $0 }).count == 3,
                    "every node serves")
                #expect(Set(steady.values.compactMap(\.http.real)).count == 3, "clients spread over the reals")
                let realOf = steady.mapValues { $0.http.real ?? "-" }

                // A node drained: its kept-alive connections go on through
                // the others, each to the real it had; the others' stay put.
                let held = try await Self.hold()
                #expect(held.allSatisfy { $0.real != nil && $0.node != nil }, "every held connection answered")
                let onDrained = held.filter { $0.node == "lb1" }
                #expect(!onDrained.isEmpty, "some held connections are on lb1")
                let start = NodesLab.wallClock()
                try await nodes[0].cli(["node", "drain"])
                #expect(
                    await NodesLab.routed(to: ["lb2", "lb3"], within: 3), "the router stops sending the VIP to lb1")
                let drainTime = NodesLab.routerChange(since: start, to: ["lb2", "lb3"])
                print(
                    "nodes: drain -> route gone at the router: \(drainTime.map { String(format: "%.3f s", $0) } ?? "?")"
                )
                #expect(drainTime != nil && drainTime! < 1, "withdrawn within the BFD time (300 ms) plus slack")
                #expect(await !nodes[0].announced(), "tandem status on lb1 shows the VIP not announced")

                let answers = Self.askAll(held.map(\.connection))
                let flows = try await NodesLab.flowNodes()
                var kept = 0
                var moved = 0
                var rehashed = 0
                for (h, answer) in zip(held, answers) {
                    if answer != nil && answer == h.real { kept += 1 }
                    let now = h.nodes(flows)
                    if h.node == "lb1" {
                        if now.contains(where: { $0 != "lb1" }) { moved += 1 }
                    } else if now.count > 1 {
                        rehashed += 1
                    }
                }
                print(
                    "nodes: drain: \(kept)/\(held.count) open connections kept their real, \(moved)/\(onDrained.count) of lb1's now through lb2 or lb3, \(rehashed) of the others moved between nodes"
                )
                #expect(kept == held.count, "every open connection kept its real")
                #expect(moved == onDrained.count, "lb1's connections go on through the other nodes")
                #expect(rehashed == 0, "connections on lb2 and lb3 stayed where they were (resilient nexthop group)")

                let drained = try await NodesLab.survey()
                let second = NodesLab.tally(drained, before: realOf)
                Self.report("lb1 drained", second)
                #expect(second.agree == NodesLab.clients.count)
                #expect(second.kept == NodesLab.clients.count, "every client kept its real")
                #expect(second.crossing >= 10)
                #expect(
                    !drained.values.contains { $0.http.node == "lb1" || $0.https.node == "lb1" }, "lb1 serves no one")
                withExtendedLifetime(held) {}

                let resumed = NodesLab.wallClock()
                try await nodes[0].cli(["node", "resume"])
                #expect(await NodesLab.routed(to: NodesLab.nodes, within: 3), "lb1 routed again after resume")
                let resumeTime = NodesLab.routerChange(since: resumed, to: NodesLab.nodes)
                print(
                    "nodes: resume -> route back at the router: \(resumeTime.map { String(format: "%.3f s", $0) } ?? "?")"
                )

                // A real fails its :80 check: every node takes it out, and
                // each of its clients moves, on both ports, to one real
                // whichever node its connections cross.
                let failed = try #require(steady[1]?.http.real)
                let address = try #require(NodesLab.addresses[failed])
                try await NodesLab.stopPort(failed, 80)
                for node in nodes {
                    #expect(
                        await TestClock.within(5) { await node.state("shop-http", address) == "down" } != nil,
                        "\(node.name) sees \(failed) down")
                }
                let afterFailure = try await NodesLab.survey()
                let third = NodesLab.tally(afterFailure, before: realOf)
                Self.report("\(failed) failed its :80 check", third)
                let affected = realOf.filter { $0.value == failed }.count
                #expect(third.agree == NodesLab.clients.count, "every client's :80 and :443 reach one real")
                #expect(third.kept == NodesLab.clients.count - affected, "only the failed real's clients moved")
                #expect(third.crossing >= 10)
                #expect(!afterFailure.values.contains { $0.http.real == failed || $0.https.real == failed })
                // Asked again (new connections, other nodes), each moved
                // client gets the same real: the nodes agree on where it went.
                let again = try await NodesLab.survey()
                let fourth = NodesLab.tally(again, before: afterFailure.mapValues { $0.http.real ?? "-" })
                Self.report("\(failed) failed, asked again", fourth)
                #expect(fourth.agree == NodesLab.clients.count)
                #expect(fourth.kept == NodesLab.clients.count, "every node sends each moved client to the same real")

                // The real recovers. The moved clients' records reached every
                // node (record sync): they stay on the real they moved to,
                // on whichever node their connections reach. (Without sync a
                // node that never saw a moved client sends it back to the
                // recovered real by the full ring: 36-39 of 40 agreed.)
                try await NodesLab.startPort(failed, 80)
                for node in nodes {
                    #expect(
                        await TestClock.within(5) { await node.state("shop-http", address) == "up" } != nil,
                        "\(node.name) sees \(failed) up again")
                }
                let recovered = NodesLab.tally(
                    try await NodesLab.survey(), before: afterFailure.mapValues { $0.http.real ?? "-" })
                Self.report("\(failed) recovered", recovered)
                #expect(recovered.agree == NodesLab.clients.count)
                #expect(recovered.kept == NodesLab.clients.count, "moved clients stay where they went")
            }
        }

        @Test(
            "a node's daemon stopped: forwarding and announcement go on; tandem down on it: withdrawn before detaching, no open connection black-holed"
        )
        func stopAndDown() async throws {
            try await NodesLab.session {
                let nodes = try await Self.startNodes()
                let steady = try await NodesLab.survey()
                Self.report("steady state", NodesLab.tally(steady))
                let realOf = steady.mapValues { $0.http.real ?? "-" }

                // Two kept-alive connections per client: 80 open connections.
                let held = try await Self.hold() + Self.hold()
                #expect(held.allSatisfy { $0.real != nil && $0.node != nil }, "every held connection answered")
                let onStopped = held.filter { $0.node == "lb2" }.count
                #expect(onStopped > 0, "some held connections are on lb2")

                // SIGTERM: the pinned dataplane forwards on and the route stays.
                #expect(await nodes[1].stop() == 0, "tandem serve on lb2 exits 0 on SIGTERM")
                try await Task.sleep(nanoseconds: 1_500_000_000)  // BFD 300 ms, BGP hold 3 s
                #expect(try await NodesLab.routedNodes() == NodesLab.nodes, "lb2's route stays after SIGTERM")
                let answers = Self.askAll(held.map(\.connection))
                let keptOpen = zip(held, answers).filter { $0.1 != nil && $0.1 == $0.0.real }.count
                let stopped = try await NodesLab.survey()
                let tally = NodesLab.tally(stopped, before: realOf)
                Self.report("lb2's daemon stopped", tally)
                print("nodes: lb2's daemon stopped: \(keptOpen)/\(held.count) open connections kept their real")
                #expect(keptOpen == held.count)
                #expect(tally.agree == NodesLab.clients.count)
                #expect(tally.kept == NodesLab.clients.count)
                #expect(
                    stopped.values.contains { $0.http.node == "lb2" || $0.https.node == "lb2" },
                    "lb2 still forwards new connections without its daemon")

                // tandem down on lb2 while every open connection is asked
                // again and again: the route goes before XDP does.
                let start = NodesLab.wallClock()
                let downLog = "/run/tandem-lab-nodes/lb2/down.log"
                let down = try await nodes[1].downInBackground(output: downLog)
                var rounds = 0
                var lost = Set<Int>()
                var changed = Set<Int>()
                var settled = false
                repeat {
                    for (index, answer) in Self.askAll(held.map(\.connection)).enumerated() {
                        if answer == nil || answer!.hasPrefix("error") {
                            lost.insert(index)
                        } else if answer != held[index].real {
                            changed.insert(index)
                        }
                    }
                    rounds += 1
                    // On until the route is gone and tandem down (which waits
                    // 2 s after withdrawing) has detached, or for 15 s.
                    let routed = try? await NodesLab.routedNodes()
                    settled = routed == ["lb1", "lb3"] && NodesLab.wallClock() - start > 3
                } while !settled && NodesLab.wallClock() - start < 15
                #expect(await down.wait() == 0, "tandem down exits 0")
                let output = (try? String(contentsOfFile: downLog, encoding: .utf8)) ?? ""
                let downTook = NodesLab.wallClock() - start
                let withdrawn = NodesLab.routerChange(since: start, to: ["lb1", "lb3"])
                // And once more after the detach.
                for (index, answer) in Self.askAll(held.map(\.connection)).enumerated() {
                    if answer == nil || answer!.hasPrefix("error") { lost.insert(index) }
                    if let answer, !answer.hasPrefix("error"), answer != held[index].real { changed.insert(index) }
                }
                print(
                    "nodes: tandem down on lb2: route gone at the router after \(withdrawn.map { String(format: "%.3f s", $0) } ?? "?"), tandem down took \(String(format: "%.2f s", downTook)); \(lost.count)/\(held.count) open connections black-holed (\(onStopped) were on lb2), \(changed.count) changed real, over \(rounds + 1) rounds of asking all"
                )
                #expect(withdrawn != nil, "the route is withdrawn")
                #expect(output.contains("withdrew \(Lab.vip4)"), "tandem down says it withdrew the route: \(output)")
                #expect(lost.isEmpty, "no open connection black-holed")
                #expect(changed.isEmpty, "every open connection kept its real")
                let after = try await NodesLab.survey()
                let last = NodesLab.tally(after, before: realOf)
                Self.report("tandem down on lb2", last)
                #expect(last.agree == NodesLab.clients.count)
                #expect(last.kept == NodesLab.clients.count)
                withExtendedLifetime(nodes) {}
            }
        }
    }
}
