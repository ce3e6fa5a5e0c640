import ArgumentParser
import Configuration
import Control
import Model
import Foundation

/// `tandem check --config F`: validate and show what would be served.
struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a config; print its services and follow groups, or every error (exit 1).")

    @Option(name: .shortAndLong, help: "The config file (YAML).")
    var config: String

    @Flag(help: "Print the resolved services as JSON.")
    var json = false

    func run() throws {
        let validated: ValidatedConfig
        do {
            validated = try ConfigParser.loadValidated(path: config)
        } catch let errors as ConfigErrors {
            if json {
                // The same errors, as data: {"errors": [{"file", "line", "key", "message"}]}.
                let list = errors.errors
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                print(String(decoding: try encoder.encode(["errors": list]), as: UTF8.self))
            } else {
                var stderr = StandardError()
                print(errors.description, to: &stderr)
                print(
                    "\(config): \(errors.errors.count) error\(errors.errors.count == 1 ? "" : "s"), nothing applied",
                    to: &stderr)
            }
            throw ExitCode(1)
        }
        print(json ? try Self.json(validated) : Self.text(validated), terminator: "")
    }

    static func text(_ validated: ValidatedConfig) -> String {
        let c = validated.config, groups = validated.groups
        let byName = Dictionary(c.services.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var out = "interface \(c.interface) (\(c.xdpMode.rawValue) XDP), pins \(c.pinDirectory), socket \(c.socket)\n"
        out += "node \(c.nodeName)\(c.node == nil ? " (the hostname)" : ""), announce "
        out += c.announce.map { "into routing table \($0.table) (proto 250)\n" } ?? "off\n"
        if let sync = c.sync {
            out +=
                "sync on \(sync.listen) with \(sync.peers.map(\.description).joined(separator: ", ")), secret \(sync.secretFile)\n"
        }
        out += tablesLine(c.tables) + "\n"
        for (i, group) in groups.enumerated() {
            out +=
                "\n"
                + (group.count > 1
                    ? "follow group \(i + 1): \(group.joined(separator: " <-> "))\n" : "service (not linked)\n")
            for name in group {
                guard let s = byName[name] else { continue }
                let vip = s.vip.family == .inet ? "\(s.vip):\(s.port)" : "[\(s.vip)]:\(s.port)"
                var line = "  \(s.proto == .tcp ? "TCP" : "UDP")  \(vip)  \(s.scheduler.rawValue)"
                if let p = s.persistence {
                    line += "  persistent \(DurationText.format(p.timeoutNs)) mask /\(p.netmask)"
                }
                line += "  check \(s.check.summary)  (\(s.name))\n"
                out += line
                for r in s.reals {
                    out += "    -> \(r.address.family == .inet ? "\(r.address):\(r.port)" : "[\(r.address)]:\(r.port)")"
                    out += "  weight \(r.weight)\(r.state == .enabled ? "" : "  \(r.state.rawValue)")\n"
                }
                if let sorry = s.sorry { out += "    sorry \(sorry.address)\n" }
            }
        }
        return out
    }

    /// The tables and the kernel memory they take (allocated in full at start).
    static func tablesLine(_ t: TableSizes) -> String {
        let flows = TableMemory.flows(t.flows), records = TableMemory.records(t.records)
        return "tables: flows \(t.flows) (\(TableMemory.text(flows))), records \(t.records) "
            + "(\(TableMemory.text(records))): \(TableMemory.text(flows + records)) of kernel memory"
    }

    static func json(_ validated: ValidatedConfig) throws -> String {
        let c = validated.config, groups = validated.groups
        let groupOf = Dictionary(
            groups.enumerated().flatMap { i, g in g.map { ($0, i + 1) } }, uniquingKeysWith: { a, _ in a })
        let services: [[String: Any]] = c.services.map { s in
            var d: [String: Any] = [
                "name": s.name, "vip": s.vip.description, "port": Int(s.port),
                "protocol": s.proto == .tcp ? "tcp" : "udp", "scheduler": s.scheduler.rawValue,
                "group": groupOf[s.name] ?? 0, "follow": s.follow, "failover": s.failover.rawValue,
                "drop-on-failure": s.dropOnFailure, "check": s.check.summary,
                "reals": s.reals.map {
                    [
                        "address": $0.address.description, "port": Int($0.port),
                        "weight": Int($0.weight), "state": $0.state.rawValue
                    ] as [String: Any]
                }
            ]
            if let p = s.persistence {
                d["persistence"] = [
                    "mode": "source-ip", "timeout": DurationText.format(p.timeoutNs), "netmask": p.netmask
                ]
            }
            return d
        }
        let doc: [String: Any] = [
            "interface": c.interface, "xdp-mode": c.xdpMode.rawValue, "node": c.nodeName,
            "announce": c.announce.map { ["table": Int($0.table)] as Any } ?? NSNull(),
            "sync": c.sync.map {
                [
                    "listen": $0.listen.description, "peers": $0.peers.map(\.description),
                    "secret-file": $0.secretFile
                ] as Any
            } ?? NSNull(),
            "groups": groups, "services": services,
            "tables": [
                "flows": c.tables.flows, "records": c.tables.records,
                "flows-bytes": TableMemory.flows(c.tables.flows), "records-bytes": TableMemory.records(c.tables.records)
            ]
        ]
        let data = try JSONSerialization.data(withJSONObject: doc, options: [.prettyPrinted, .sortedKeys])
        return String(decoding: data, as: UTF8.self) + "\n"
    }
}

struct StandardError: TextOutputStream {
    mutating func write(_ string: String) { FileHandle.standardError.write(Data(string.utf8)) }
}
