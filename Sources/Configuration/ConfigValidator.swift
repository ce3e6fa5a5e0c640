import Model

/// Rules that span services (docs/design/port-following.md): unique names and VIP:port/protocol,
/// mutual follow links, and what linked services must share. Every
/// violation is reported, each naming the services, the rule and the values.
public enum ConfigValidator {
    /// The config with its follow groups (service names, in config order),
    /// or every problem. `unparsed`: services dropped for errors of their
    /// own; links to them are not reported again.
    public static func validate(_ config: Config, file: String, unparsed: Set<String> = []) throws -> ValidatedConfig {
        var errors: [ConfigError] = []
        func fail(_ s: Config.Service, _ key: String, _ message: String) {
            errors.append(ConfigError(file: file, line: s.line, key: "services.\(s.name)\(key)", message: message))
        }

        var byName: [String: Config.Service] = [:]
        var byKey: [String: Config.Service] = [:]
        for s in config.services {
            if let first = byName[s.name] {
                fail(s, ".name", "\(s.name) is already the name of the service at line \(first.line)")
            } else {
                byName[s.name] = s
            }
            let key = "\(s.vip):\(s.port)/\(s.proto)"
            if let first = byKey[key] {
                fail(s, "", "\(key) is already served by \(first.name) (line \(first.line))")
            } else {
                byKey[key] = s
            }
            var seen = Set<IPAddress>()
            for r in s.reals where !seen.insert(r.address).inserted {
                fail(s, ".reals", "real \(r.address) is listed twice (line \(r.line))")
            }
        }

        // Links: known, not to itself, mutual.
        var edges: [String: Set<String>] = [:]
        for s in config.services {
            for target in s.follow {
                guard let other = byName[target] else {
                    if !unparsed.contains(target) { fail(s, ".follow", "follows \(target), which is not a service") }
                    continue
                }
                if target == s.name {
                    fail(s, ".follow", "a service cannot follow itself")
                    continue
                }
                if !other.follow.contains(s.name) {
                    fail(
                        s, ".follow",
                        "\(s.name) follows \(target) but \(target) does not follow \(s.name): links must be mutual (add \(s.name) to the follow list of \(target))"
                    )
                }
                edges[s.name, default: []].insert(target)
                edges[target, default: []].insert(s.name)
            }
        }

        // Groups: connected sets, in config order.
        var groupOf: [String: Int] = [:]
        var groups: [[String]] = []
        for s in config.services where groupOf[s.name] == nil && byName[s.name] == s {
            var members: [String] = []
            var stack = [s.name]
            groupOf[s.name] = groups.count
            while let name = stack.popLast() {
                members.append(name)
                for next in edges[name, default: []] where groupOf[next] == nil {
                    groupOf[next] = groups.count
                    stack.append(next)
                }
            }
            let order = Dictionary(config.services.enumerated().map { ($1.name, $0) }, uniquingKeysWith: { a, _ in a })
            groups.append(members.sorted { order[$0, default: 0] < order[$1, default: 0] })
        }

        // What linked services must share, each compared with the group's first.
        for group in groups where group.count > 1 {
            let first = byName[group[0]]!
            for name in group {
                let s = byName[name]!
                if s.persistence == nil {
                    fail(
                        s, ".persistence",
                        "\(s.name) follows \(group.filter { $0 != name }.joined(separator: ", ")) but has no persistence: linked services share persistence records"
                    )
                }
                guard name != first.name else { continue }
                if s.vip != first.vip {
                    fail(
                        s, ".vip",
                        "\(s.name) has VIP \(s.vip) but \(first.name), which it follows, has \(first.vip): linked services share the VIP"
                    )
                }
                let mine = Set(s.reals.map(\.address)), theirs = Set(first.reals.map(\.address))
                if mine != theirs {
                    let extra = mine.subtracting(theirs).sorted().map(\.description)
                    let missing = theirs.subtracting(mine).sorted().map(\.description)
                    var diff: [String] = []
                    if !extra.isEmpty { diff.append("only \(s.name) has \(extra.joined(separator: ", "))") }
                    if !missing.isEmpty { diff.append("only \(first.name) has \(missing.joined(separator: ", "))") }
                    fail(
                        s, ".reals",
                        "\(s.name) and \(first.name) are linked but their real servers differ (\(diff.joined(separator: "; "))): linked services have the same real addresses"
                    )
                }
                if let p = s.persistence, let q = first.persistence, p != q {
                    fail(
                        s, ".persistence",
                        "\(s.name) has persistence \(describe(p)) but \(first.name), which it follows, has \(describe(q)): linked services use the same persistence options"
                    )
                }
            }
        }
        if !errors.isEmpty { throw ConfigErrors(errors: errors) }
        return ValidatedConfig(config: config, groups: groups)
    }

    static func describe(_ p: Persistence) -> String {
        "source-ip /\(p.netmask) \(DurationText.format(p.timeoutNs))"
    }
}
