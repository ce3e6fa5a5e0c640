import BPF
import Configuration
import Control
import Model
import Dataplane
import Foundation
import Glibc
import TestSupport

struct LabError: Error, CustomStringConvertible { var description: String }

/// The network-namespace lab of tools/lab, driven from tests.
enum Lab {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path
    static let vip4 = "198.18.0.100"
    static let vip6 = "2001:db8::100"
    static let names = ["r1", "r2", "r3"]

    /// Runs a command; its output (stdout and stderr), trimmed.
    @discardableResult
    static func run(_ args: [String], check: Bool = true) async throws -> String {
        let result = try await Command.run(args[0], Array(args.dropFirst()))
        let text = result.output.trimmingCharacters(in: .whitespacesAndNewlines)
        if check && result.status != 0 {
            throw LabError(description: "\(args.joined(separator: " ")): exit \(result.status): \(text)")
        }
        return text
    }

    static func up() async throws { try await run([root + "/tools/lab", "up"]) }
    static func down() async { _ = try? await run([root + "/tools/lab", "down"]) }
    static func startPort(_ real: String, _ port: Int) async throws {
        try await run([root + "/tools/lab", "start-port", real, "\(port)"])
    }
    static func stopPort(_ real: String, _ port: Int) async throws {
        try await run([root + "/tools/lab", "stop-port", real, "\(port)"])
    }

    /// Brings the lab up, runs `body`, and takes the lab down again, also
    /// when `body` throws.
    static func session<T>(_ body: () async throws -> T) async throws -> T {
        try await up()
        return try await withCleanup(body, cleanup: down)
    }

    static func client4(_ i: Int) -> String { "198.18.10.\(i)" }
    static func client6(_ i: Int) -> String { "2001:db8::10:\(i)" }

    /// Which real answered `url` for a client source address (nil: no answer).
    static func ask(_ url: String, from source: String) async -> String? {
        let text = try? await run(
            [
                "ip", "netns", "exec", "tdm-client", "curl", "-sk", "-m", "3",
                "--interface", source, url
            ], check: false)
        return names.contains(text ?? "") ? text : nil
    }

    static func askUDP(port: Int, from source: String, vip: String = vip4) async -> String? {
        let text = try? await run(
            [
                "ip", "netns", "exec", "tdm-client", "/usr/bin/python3",
                root + "/tools/lab-server.py", "query", vip, "\(port)", source
            ], check: false)
        return names.contains(text ?? "") ? text : nil
    }

    static func http(_ vip: String, _ port: Int) -> String {
        vip.contains(":") ? "http://[\(vip)]:\(port)/" : "http://\(vip):\(port)/"
    }

    static func https(_ vip: String) -> String {
        vip.contains(":") ? "https://[\(vip)]/" : "https://\(vip)/"
    }
}

/// The load balancer of the lab: Tandem's XDP program on tdm-lb's eth0,
/// programmed the way the controller does: a `ControlState` from a config,
/// changed through its own calls, its model written by Dataplane.
final class LabBalancer {
    let dataplane: Dataplane
    let link: XDPLink
    private(set) var state: ControlState

    init(tables: TableSizes = .default) throws {
        let made = try NetworkNamespace.inside("tdm-lb") { () throws -> (Dataplane, ControlState, XDPLink) in
            let dataplane = try Dataplane(pinRoot: "/sys/fs/bpf/tandem-test-\(getpid())-lab", tables: tables)
            let state = try ControlState(ConfigParser.parseValidated(Self.yaml, file: "lab.yaml"))
            try dataplane.apply(state.model(macs: Self.macs))
            return (dataplane, state, try XDPLink.attach(dataplane.program, interface: "eth0", mode: .native))
        }
        (dataplane, state, link) = made
    }

    deinit {
        try? link.detach()
        dataplane.removePins()
    }

    /// The lab's fixed MACs: 02:00:c6:12:00:NN, NN the last address byte.
    /// r1 has 198.18.0.21 and 2001:db8::21, both behind 02:00:c6:12:00:15.
    static let macs: [IPAddress: MACAddress] = Dictionary(
        uniqueKeysWithValues: (21...23).flatMap { byte in
            let mac = MACAddress(bytes: [2, 0, 0xC6, 0x12, 0, UInt8(byte)])!
            return [(IPAddress("198.18.0.\(byte)")!, mac), (IPAddress("2001:db8::\(byte)")!, mac)]
        })

    /// Group 1: shop :80, :443/tcp, :443/udp; group 2: :8080, not linked;
    /// group 3: IPv6 :80 and :443 (service ids 0-5 in this order).
    static let yaml = """
        interface: eth0
        services:
          - { name: shop-http, vip: \(Lab.vip4), port: 80, follow: [shop-https, shop-quic], check: { type: none },
              persistence: { mode: source-ip, timeout: 30m, netmask: 32 }, reals: [\(reals(4, port: 80))] }
          - { name: shop-https, vip: \(Lab.vip4), port: 443, follow: [shop-http, shop-quic], check: { type: none },
              persistence: { mode: source-ip, timeout: 30m, netmask: 32 }, reals: [\(reals(4, port: 443))] }
          - { name: shop-quic, vip: \(Lab.vip4), port: 443, protocol: udp, follow: [shop-http, shop-https],
              check: { type: none }, persistence: { mode: source-ip, timeout: 30m, netmask: 32 }, reals: [\(reals(4, port: 443))] }
          - { name: alt, vip: \(Lab.vip4), port: 8080, check: { type: none },
              persistence: { mode: source-ip, timeout: 30m, netmask: 32 }, reals: [\(reals(4, port: 8080))] }
        \(Configs.followPair(names: ("shop6-http", "shop6-https"), vip: Lab.vip6, reals: (1...3).map { "2001:db8::2\($0)" }, netmask: 128))
        """

    static func reals(_ family: Int, port: Int) -> String {
        (1...3).map {
            family == 4
                ? "{ address: 198.18.0.2\($0), port: \(port) }" : "{ address: \"2001:db8::2\($0)\", port: \(port) }"
        }
        .joined(separator: ", ")
    }

    /// What a failed health check of `name`'s `service` does: the
    /// controller takes it out of the follow group and invalidates its
    /// records.
    func fail(_ name: String, service: String) throws {
        try setHealth(name, service: service, up: false)
    }

    /// Its checks pass again: back in the ring (its old records stay invalid).
    func recover(_ name: String, service: String) throws {
        try setHealth(name, service: service, up: true)
    }

    private func setHealth(_ name: String, service: String, up: Bool) throws {
        let index = Lab.names.firstIndex(of: name)!
        let address = IPAddress("198.18.0.2\(index + 1)")!
        var next = state
        next.setHealth(service: service, address: address, up: up)
        try dataplane.apply(next.model(macs: Self.macs))
        state = next
    }
}

extension Sequence {
    /// `map` with an async transform, one element after the other.
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for element in self { out.append(try await transform(element)) }
        return out
    }
}
