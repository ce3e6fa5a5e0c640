/// The shop example (examples/shop.yaml), and variations with one thing wrong each.
public enum Configs {
    public static let spec = """
        interface: eth0             # NIC whose XDP hook runs the dataplane
        xdp-mode: native            # native | generic
        defaults:
          check: { interval: 2s, timeout: 1s, rise: 2, fall: 3 }
        services:
          - name: shop-http
            vip: 198.18.0.100
            port: 80
            protocol: tcp
            scheduler: maglev
            persistence: { mode: source-ip, timeout: 30m, netmask: 32 }
            follow: [shop-https]
            check: { type: http, path: /health }
            reals:
              - { address: 198.18.0.21, port: 80 }
              - { address: 198.18.0.22, port: 80, weight: 2 }
          - name: shop-https
            vip: 198.18.0.100
            port: 443
            protocol: tcp
            scheduler: maglev
            persistence: { mode: source-ip, timeout: 30m, netmask: 32 }
            follow: [shop-http]
            check: { type: tls }
            reals:
              - { address: 198.18.0.21, port: 443 }
              - { address: 198.18.0.22, port: 443, weight: 2 }
        """
}

extension Configs {
    /// Two services linked by port following, the group most tests and
    /// benchmarks run: `names` on `ports` of `vip`, source-ip persistence
    /// (30m, `netmask`) and the same `reals` (addresses) on each, as two
    /// items of a `services:` list indented by `indent` spaces.
    public static func followPair(
        names: (String, String) = ("shop-http", "shop-https"), vip: String = "198.18.0.100",
        ports: (Int, Int) = (80, 443), reals: [String], netmask: Int = 32,
        checks: (String, String) = ("{ type: none }", "{ type: none }"), indent: Int = 2
    ) -> String {
        func item(_ name: String, _ port: Int, _ other: String, _ check: String) -> String {
            let list = reals.map { "{ address: \"\($0)\", port: \(port) }" }.joined(separator: ", ")
            return String(repeating: " ", count: indent)
                + "- { name: \(name), vip: \"\(vip)\", port: \(port), follow: [\(other)], check: \(check),\n"
                + String(repeating: " ", count: indent + 4)
                + "persistence: { mode: source-ip, timeout: 30m, netmask: \(netmask) }, reals: [\(list)] }\n"
        }
        return item(names.0, ports.0, names.1, checks.0) + item(names.1, ports.1, names.0, checks.1)
    }
}
