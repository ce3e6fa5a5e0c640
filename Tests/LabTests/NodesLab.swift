import ControlAPI
import Foundation
import Glibc
import TestSupport

/// The multi-node lab of tools/lab-nodes, driven from tests: three nodes
/// behind a BIRD router doing ECMP, clients 198.18.10.1-40 behind the router.
enum NodesLab {
    static let script = Lab.root + "/tools/lab-nodes"
    static let nodes = ["lb1", "lb2", "lb3"]
    static let clients = 1...40
    static let addresses = ["r1": "198.18.0.21", "r2": "198.18.0.22", "r3": "198.18.0.23"]

    static func up() async throws { try await Lab.run([script, "up"]) }
    static func down() async { _ = try? await Lab.run([script, "down"]) }

    /// Brings the lab up, runs `body`, and takes the lab down again, also
    /// when `body` throws.
    static func session<T>(_ body: () async throws -> T) async throws -> T {
        try await up()
        return try await withCleanup(body, cleanup: down)
    }

    static func startPort(_ real: String, _ port: Int) async throws {
        try await Lab.run([script, "start-port", real, "\(port)"])
    }

    static func stopPort(_ real: String, _ port: Int) async throws {
        try await Lab.run([script, "stop-port", real, "\(port)"])
    }

    /// The nodes the router forwards `vip` to (its nexthop group's members).
    static func routedNodes(_ vip: String = Lab.vip4) async throws -> [String] {
        let text = try await Lab.run([script, "routes", "--json"])
        let table = try JSONDecoder().decode([String: [String]].self, from: Data(text.utf8))
        return table[vip] ?? []
    }

    /// Polls the router until it sends the VIP to exactly `nodes`; false
    /// after `limit` seconds.
    static func routed(to nodes: [String], within limit: Double) async -> Bool {
        await TestClock.within(limit) { (try? await routedNodes()) == nodes } != nil
    }

    /// Wall-clock seconds, as the router's mirror logs its changes.
    static func wallClock() -> Double { Date().timeIntervalSince1970 }

    /// When the router's main table started sending `vip` to exactly
    /// `nodes`, after `start` (wall clock): seconds from `start`, read from
    /// the log of lab-nodes.py mirror (ms resolution, not a polling loop's).
    static func routerChange(since start: Double, to nodes: [String], vip: String = Lab.vip4 + "/32") -> Double? {
        guard let text = try? String(contentsOfFile: "/run/tandem-lab-nodes/mirror.log", encoding: .utf8) else {
            return nil
        }
        let wanted = nodes.isEmpty ? "\(vip) withdrawn by every node" : "\(vip) via \(nodes.joined(separator: " "))"
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, let time = Double(parts[0]), time >= start, parts[1] == wanted else { continue }
            return time - start
        }
        return nil
    }

    /// One client's two fresh connections, :80 and :443.
    struct Visit: Decodable {
        struct Hit: Decodable {
            var real: String?
            var node: String?
            var port: Int
        }
        var client: Int
        var address: String
        var http: Hit
        var https: Hit
        var agrees: Bool { http.real != nil && http.real == https.real }
        var crosses: Bool { http.node != nil && https.node != nil && http.node != https.node }
    }

    /// Every client's :80 and :443, each with the real that answered and
    /// the node whose flow table holds the connection.
    static func survey() async throws -> [Int: Visit] {
        let text = try await Lab.run([script, "survey", "\(clients.lowerBound)-\(clients.upperBound)"])
        let visits = try JSONDecoder().decode([Visit].self, from: Data(text.utf8))
        return Dictionary(uniqueKeysWithValues: visits.map { ($0.client, $0) })
    }

    struct Flow: Decodable, Hashable {
        var node: String
        var client: String
        var sport: Int
    }

    /// Which nodes hold a flow of (client, source port), over all nodes.
    static func flowNodes() async throws -> [String: Set<String>] {
        let text = try await Lab.run([script, "flows"])
        var out: [String: Set<String>] = [:]
        for flow in try JSONDecoder().decode([Flow].self, from: Data(text.utf8)) {
            out["\(flow.client):\(flow.sport)", default: []].insert(flow.node)
        }
        return out
    }

    /// Counts of a survey, printed and checked by the tests.
    struct Tally: CustomStringConvertible {
        var answered = 0
        var agree = 0
        var crossing = 0
        var kept = 0
        var clients = 0
        var compared = false
        var description: String {
            "\(agree)/\(clients) same real on :80 and :443, \(crossing) crossing nodes, "
                + (compared ? "\(kept)/\(clients) kept their real, " : "")
                + "\(answered)/\(2 * clients) connections answered"
        }
    }

    static func tally(_ visits: [Int: Visit], before: [Int: String] = [:]) -> Tally {
        var t = Tally(clients: visits.count, compared: !before.isEmpty)
        for visit in visits.values {
            t.answered += (visit.http.real != nil ? 1 : 0) + (visit.https.real != nil ? 1 : 0)
            t.agree += visit.agrees ? 1 : 0
            t.crossing += visit.crosses ? 1 : 0
            t.kept += before[visit.client].map { $0 == visit.http.real && $0 == visit.https.real } ?? false ? 1 : 0
        }
        return t
    }
}

/// `tandem serve` on one node of tools/lab-nodes, with the config the lab
/// wrote for it (node: NAME, announce: { table: 100 }, its own pins and
/// socket), driven through the real CLI.
final class Node {
    let name: String
    var config: String { "/run/tandem-lab-nodes/\(name)/tandem.yaml" }
    var socket: String { "/run/tandem-lab-nodes/\(name)/tandem.sock" }
    var log: String { "/run/tandem-lab-nodes/\(name)/serve.log" }
    private var daemon: BackgroundProcess?

    init(_ name: String) async throws {
        self.name = name
        try await start()
    }

    /// Starts `tandem serve` in the node's namespace and waits until it answers.
    func start() async throws {
        let daemon = try await BackgroundProcess.start(
            "nsenter", ["--net=/run/netns/tdm-n-\(name)", Served.tandem, "serve", "-c", config], log: log)
        self.daemon = daemon
        for _ in 0..<100 {
            if (try? await status()) != nil { return }
            if !daemon.isRunning { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        throw LabError(
            description:
                "tandem serve on \(name) did not come up: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
    }

    /// SIGTERM; the exit status.
    @discardableResult
    func stop() async -> Int32? {
        guard let daemon else { return nil }
        self.daemon = nil
        return await daemon.stop()
    }

    /// `tandem down` for this node's config, in its namespace (where its
    /// announce table is), started in the background; its output goes to
    /// `output`.
    func downInBackground(output: String) async throws -> BackgroundProcess {
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        return try await BackgroundProcess.start(
            "nsenter", ["--net=/run/netns/tdm-n-\(name)", Served.tandem, "down", "-c", config], log: output)
    }

    @discardableResult
    func cli(_ args: [String]) async throws -> String {
        try await Lab.run([Served.tandem] + args + ["--socket", socket])
    }

    func status() async throws -> StatusReport {
        try JSONDecoder().decode(StatusReport.self, from: Data(try await cli(["status", "--json"]).utf8))
    }

    /// Whether `tandem status --json` shows every VIP announced (`vips`,
    /// each with `announced`).
    func announced() async -> Bool {
        guard let text = try? await cli(["status", "--json"]),
            let status = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
            let vips = status["vips"] as? [[String: Any]]
        else { return false }
        return !vips.isEmpty && vips.allSatisfy { $0["announced"] as? Bool == true }
    }

    func state(_ service: String, _ address: String) async -> String? {
        (try? await status())?.services.first { $0.name == service }?.reals.first { $0.address == address }?.state
    }

    deinit { daemon = nil }  // its deinit: SIGTERM; the lab's down removes the pins
}
