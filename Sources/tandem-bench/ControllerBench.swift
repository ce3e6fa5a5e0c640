import Configuration
import Control
import Model
import Dataplane
import Foundation
import Glibc
import TestSupport

/// The controller's costs: writing a large config into the maps (health
/// checks: HealthBench).
enum ControllerBench {
    /// `services` services in linked pairs (:80 and :443 on one VIP), each
    /// with `reals` reals of its own address range, as YAML.
    static func config(services: Int, reals: Int) -> String {
        var yaml = "interface: eth0\nservices:\n"
        for s in 0..<services {
            let pair = s / 2, port = s % 2 == 0 ? 80 : 443
            let vip = "198.18.\(200 + pair / 250).\(pair % 250 + 1)"
            yaml += "  - name: s\(s)\n    vip: \(vip)\n    port: \(port)\n"
            yaml += "    persistence: { mode: source-ip, timeout: 30m, netmask: 32 }\n"
            yaml += "    follow: [s\(s % 2 == 0 ? s + 1 : s - 1)]\n    check: { type: none }\n    reals:\n"
            for r in 0..<reals {
                let n = pair * reals + r
                yaml += "      - { address: 198.19.\(n / 250).\(n % 250 + 1), port: \(port) }\n"
            }
        }
        return yaml
    }

    /// Parse + validate, build the model, write it all; then a reload that
    /// changes one weight.
    static func apply(services: Int, reals: Int, pinRoot: String, into table: inout ResultTable) throws {
        let yaml = config(services: services, reals: reals)
        var parsed: ValidatedConfig!
        let parse = try TestClock.measure { parsed = try ConfigParser.parseValidated(yaml, file: "bench.yaml") }
        var state = try ControlState(parsed)
        let macs = Dictionary(
            uniqueKeysWithValues: state.realAddresses.map { ($0, MACAddress(bytes: [2, 0, 0, 0, 0, 1])!) })
        var model: DataplaneModel!
        let build = TestClock.measure { model = state.model(macs: macs) }
        let dataplane = try Dataplane(pinRoot: pinRoot)
        defer { dataplane.removePins() }
        let write = try TestClock.measure { try dataplane.apply(model) }
        let label = "\(services) services x \(reals) reals"
        table.add(
            "controller: apply \(label)",
            value: String(format: "%.0f ms", (parse + build + write) * 1000),
            method: String(
                format: "first apply: parse+validate %.0f ms, model (ids, %d maglev rings) %.0f ms, map writes %.0f ms",
                parse * 1000, services, build * 1000, write * 1000))

        var changed = parsed.config
        changed.services[0].reals[0].weight = 2
        let reload = try TestClock.measure {
            try state.reload(ConfigValidator.validate(changed, file: "bench.yaml"))
            try dataplane.apply(state.model(macs: macs))
        }
        table.add(
            "controller: reload one changed weight", value: String(format: "%.1f ms", reload * 1000),
            method: "model of all \(services) services rebuilt, only the changed service's ring rewritten")
    }
}
