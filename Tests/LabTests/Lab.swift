import BPF
import Configuration
import Control
import Model
import CTestSupport
import Dataplane
import Foundation
import Glibc

enum Privilege {
    static let enabled = geteuid() == 0 || ProcessInfo.processInfo.environment["TANDEM_REQUIRE_PRIVILEGED"] == "1"
}

struct LabError: Error, CustomStringConvertible { var description: String }

/// The network-namespace lab of tools/lab, driven from tests.
enum Lab {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path
    static let vip4 = "198.18.0.100"
    static let vip6 = "2001:db8::100"
    static let names = ["r1", "r2", "r3"]

    /// Runs a command (arguments single-quoted for /bin/sh); its output.
    @discardableResult
    static func run(_ args: [String], check: Bool = true) throws -> String {
        let command = args.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
            .joined(separator: " ")
        var buffer = [CChar](repeating: 0, count: 65536)
        let status = tandem_test_run(command, &buffer, buffer.count)
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        if check && status != 0 { throw LabError(description: "\(command): exit \(status): \(text)") }
        return text
    }

    static func up() throws { try run([root + "/tools/lab", "up"]) }
    static func down() { _ = try? run([root + "/tools/lab", "down"]) }
    static func startPort(_ real: String, _ port: Int) throws { try run([root + "/tools/lab", "start-port", real, "\(port)"]) }
    static func stopPort(_ real: String, _ port: Int) throws { try run([root + "/tools/lab", "stop-port", real, "\(port)"]) }

    static func client4(_ i: Int) -> String { "198.18.10.\(i)" }
    static func client6(_ i: Int) -> String { "2001:db8::10:\(i)" }

    /// Which real answered `url` for a client source address (nil: no answer).
    static func ask(_ url: String, from source: String) -> String? {
        let text = try? run(["ip", "netns", "exec", "tdm-client", "curl", "-sk", "-m", "3",
                             "--interface", source, url], check: false)
        return names.contains(text ?? "") ? text : nil
    }

    static func askUDP(port: Int, from source: String, vip: String = vip4) -> String? {
        let text = try? run(["ip", "netns", "exec", "tdm-client", "/usr/bin/python3",
                             root + "/tools/lab-server.py", "query", vip, "\(port)", source], check: false)
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
/// programmed through Dataplane the way the controller does.
final class LabBalancer {
    let dataplane: Dataplane
    let link: XDPLink
    var model: DataplaneModel

    init() throws {
        let saved = tandem_test_enter_netns("/run/netns/tdm-lb")
        guard saved >= 0 else { throw LabError(description: "cannot enter tdm-lb: errno \(-saved)") }
        defer { _ = tandem_test_leave_netns(saved) }
        dataplane = try Dataplane(pinRoot: "/sys/fs/bpf/tandem-test-\(getpid())-lab")
        model = Self.model
        try dataplane.apply(model)
        link = try XDPLink.attach(dataplane.program, interface: "eth0", mode: .native)
    }

    deinit {
        try? link.detach()
        dataplane.removePins()
    }

    static func real(_ id: UInt32, _ address: String, byte: UInt8) -> DataplaneModel.Real {
        .init(id: id, address: IPAddress(address)!, mac: MACAddress(bytes: [2, 0, 0xC6, 0x12, 0, byte])!)
    }

    /// Real ids: group 1 (shop :80, :443/tcp, :443/udp) 1-3; group 2 (:8080,
    /// not linked) 4-6; group 3 (IPv6 :80, :443) 7-9.
    static var model: DataplaneModel {
        let persist = Persistence(timeoutNs: 1_800_000_000_000, netmask: 32)
        let persist6 = Persistence(timeoutNs: 1_800_000_000_000, netmask: 128)
        func backends(_ ids: [UInt32]) -> [DataplaneModel.Backend] { ids.map { .init(real: $0, weight: 1) } }
        let v4 = IPAddress(Lab.vip4)!, v6 = IPAddress(Lab.vip6)!
        return DataplaneModel(
            services: [
                .init(id: 0, group: 1, vip: v4, port: 80, proto: .tcp, persistence: persist, backends: backends([1, 2, 3])),
                .init(id: 1, group: 1, vip: v4, port: 443, proto: .tcp, persistence: persist, backends: backends([1, 2, 3])),
                .init(id: 2, group: 1, vip: v4, port: 443, proto: .udp, persistence: persist, backends: backends([1, 2, 3])),
                .init(id: 3, group: 2, vip: v4, port: 8080, proto: .tcp, persistence: persist, backends: backends([4, 5, 6])),
                .init(id: 4, group: 3, vip: v6, port: 80, proto: .tcp, persistence: persist6, backends: backends([7, 8, 9])),
                .init(id: 5, group: 3, vip: v6, port: 443, proto: .tcp, persistence: persist6, backends: backends([7, 8, 9])),
            ],
            reals: [
                real(1, "198.18.0.21", byte: 0x15), real(2, "198.18.0.22", byte: 0x16), real(3, "198.18.0.23", byte: 0x17),
                real(4, "198.18.0.21", byte: 0x15), real(5, "198.18.0.22", byte: 0x16), real(6, "198.18.0.23", byte: 0x17),
                real(7, "2001:db8::21", byte: 0x15), real(8, "2001:db8::22", byte: 0x16), real(9, "2001:db8::23", byte: 0x17),
            ])
    }

    /// What the controller does when `name` fails in group `group`: down in
    /// every service of the group, records invalidated.
    func fail(_ name: String, group: UInt32) throws {
        let index = Lab.names.firstIndex(of: name)!
        let address = ["198.18.0.21", "198.18.0.22", "198.18.0.23"][index]
        // Real ids are per (group, address): the group's id for that address.
        let ids = Set(model.services.filter { $0.group == group }.flatMap { $0.backends.map(\.real) })
        for real in model.reals where ids.contains(real.id) && real.address.description == address {
            model.fail(real: real.id)
        }
        try dataplane.apply(model)
    }
}
