import Foundation
import Model
import Yams

/// Reads a config from YAML. Every problem is collected with its file, line
/// and key (unknown keys included); nothing is returned unless all is well.
public enum ConfigParser {
    public static func load(path: String) throws -> Config {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigErrors(errors: [ConfigError(file: path, line: 0, key: "-", message: "cannot read the file")])
        }
        return try parse(String(decoding: data, as: UTF8.self), file: path)
    }

    /// Parses and validates: every problem of both stages in one error, or
    /// the config with its follow groups (service names, config order).
    public static func loadValidated(path: String) throws -> ValidatedConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigErrors(errors: [ConfigError(file: path, line: 0, key: "-", message: "cannot read the file")])
        }
        return try parseValidated(String(decoding: data, as: UTF8.self), file: path)
    }

    public static func parseValidated(_ text: String, file: String) throws -> ValidatedConfig {
        var reader = Reader(file: file)
        let config = reader.config(try compose(text, file: file))
        guard let config else { throw ConfigErrors(errors: reader.errors) }
        var errors = reader.errors
        do {
            let validated = try ConfigValidator.validate(config, file: file, unparsed: reader.failedServices)
            if errors.isEmpty { return validated }
        } catch let more as ConfigErrors {
            errors += more.errors
        }
        // By line; errors of one line keep the order they were found in.
        let ordered = errors.enumerated().sorted { ($0.element.line, $0.offset) < ($1.element.line, $1.offset) }
        throw ConfigErrors(errors: ordered.map(\.element))
    }

    static func compose(_ text: String, file: String) throws -> Node? {
        do {
            return try Yams.compose(yaml: text, .basic)
        } catch let error as YamlError {
            throw ConfigErrors(errors: [
                ConfigError(
                    file: file, line: yamlLine(error, text: text), key: "-",
                    message: "not valid YAML: \(yamlProblem(error))")
            ])
        }
    }

    public static func parse(_ text: String, file: String) throws -> Config {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text, .basic)
        } catch let error as YamlError {
            throw ConfigErrors(errors: [
                ConfigError(
                    file: file, line: yamlLine(error, text: text), key: "-",
                    message: "not valid YAML: \(yamlProblem(error))")
            ])
        }
        var reader = Reader(file: file)
        let config = reader.config(root)
        if let config, reader.errors.isEmpty { return config }
        throw ConfigErrors(errors: reader.errors)
    }

    static func yamlLine(_ error: YamlError, text: String) -> Int {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _):
            return mark.line
        case .duplicatedKeysInMapping(let keys, let context):
            return duplicateLine(of: keys.sorted().first ?? "", from: context.mark.line, in: text) ?? context.mark.line
        default: return 0
        }
    }

    static func yamlProblem(_ error: YamlError) -> String {
        switch error {
        case .scanner(_, let problem, _, _), .parser(_, let problem, _, _), .composer(_, let problem, _, _):
            return problem
        case .duplicatedKeysInMapping(let keys, _):
            return
                "key \(keys.sorted().map { Limits.printable($0) }.joined(separator: ", ")) given twice in one mapping"
        default: return "\(error)"
        }
    }

    /// The line (1-based) of the second `key:` at or after `line`.
    static func duplicateLine(of key: String, from line: Int, in text: String) -> Int? {
        var seen = 0
        for (i, row) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where i + 1 >= line {
            var rest = row.drop { $0 == " " }
            if rest.hasPrefix("- ") { rest = rest.dropFirst(2).drop { $0 == " " } }
            if rest.hasPrefix("{") { continue }
            if rest.hasPrefix(key + ":") || rest.hasPrefix("\"\(key)\":") {
                seen += 1
                if seen == 2 { return i + 1 }
            }
        }
        return nil
    }
}

enum ProtocolName: String, CaseIterable {
    case tcp, udp
    var l4: L4Protocol { self == .tcp ? .tcp : .udp }
}

/// Walks the YAML tree, converting and checking as it goes.
struct Reader {
    let file: String
    var errors: [ConfigError] = []
    /// Names of services left out for errors (not "unknown" to others).
    var failedServices: Set<String> = []

    mutating func fail(_ node: Node?, _ key: String, _ message: String) {
        errors.append(ConfigError(file: file, line: node?.mark?.line ?? 0, key: key, message: message))
    }

    /// The keys of a mapping; unknown ones are errors.
    mutating func mapping(_ node: Node?, _ key: String, allowed: [String]) -> [String: Node]? {
        guard let node else { return nil }
        guard let mapping = node.mapping else {
            fail(node, key, "must be a mapping of \(allowed.joined(separator: ", "))")
            return nil
        }
        var result: [String: Node] = [:]
        for (k, v) in mapping {
            let name = k.scalar?.string ?? "?"
            let path = key == "" ? name : "\(key).\(name)"
            if !allowed.contains(name) {
                fail(k, path, "unknown key (expected one of: \(allowed.joined(separator: ", ")))")
            } else if result[name] != nil {
                fail(k, path, "given twice")
            } else {
                result[name] = v
            }
        }
        return result
    }

    mutating func string(_ node: Node?, _ key: String) -> String? {
        guard let node else { return nil }
        guard let s = node.scalar?.string, !s.isEmpty else {
            fail(node, key, "must be a non-empty string")
            return nil
        }
        return s
    }

    mutating func int(_ node: Node?, _ key: String, _ range: ClosedRange<Int>) -> Int? {
        guard let node else { return nil }
        guard let s = node.scalar?.string, let v = Int(s), range.contains(v) else {
            fail(
                node, key,
                "must be a whole number in \(range.lowerBound)...\(range.upperBound), not \(node.scalar?.string ?? "a \(kind(node))")"
            )
            return nil
        }
        return v
    }

    mutating func bool(_ node: Node?, _ key: String) -> Bool? {
        guard let node else { return nil }
        switch node.scalar?.string {
        case "true": return true
        case "false": return false
        default:
            fail(node, key, "must be true or false")
            return nil
        }
    }

    mutating func duration(_ node: Node?, _ key: String) -> UInt64? {
        guard let node else { return nil }
        guard let s = node.scalar?.string, let ns = DurationText.parse(s), ns > 0 else {
            fail(node, key, "must be a duration such as 500ms, 2s, 30m or 1h, not \(node.scalar?.string ?? kind(node))")
            return nil
        }
        return ns
    }

    mutating func choice<T: RawRepresentable & CaseIterable>(_ node: Node?, _ key: String, _: T.Type) -> T?
    where T.RawValue == String {
        guard let node else { return nil }
        guard let s = node.scalar?.string, let v = T(rawValue: s) else {
            fail(
                node, key,
                "must be one of \(T.allCases.map(\.rawValue).joined(separator: ", ")), not \(node.scalar?.string ?? kind(node))"
            )
            return nil
        }
        return v
    }

    mutating func address(_ node: Node?, _ key: String) -> IPAddress? {
        guard let s = string(node, key) else { return nil }
        guard let a = IPAddress(s) else {
            fail(node, key, "\(Limits.printable(s)) is not an IPv4 or IPv6 address")
            return nil
        }
        if let why = Limits.notUnicast(a) {
            fail(node, key, "\(a) is \(why): a VIP or real must be a unicast address")
            return nil
        }
        return a
    }

    mutating func sequence(_ node: Node?, _ key: String) -> [Node]? {
        guard let node else { return nil }
        guard let seq = node.sequence else {
            fail(node, key, "must be a list")
            return nil
        }
        return Array(seq)
    }

    func kind(_ node: Node) -> String {
        switch node {
        case .mapping: "mapping"
        case .sequence: "list"
        default: "value"
        }
    }

    // MARK: - The config

    mutating func config(_ root: Node?) -> Config? {
        guard let root else {
            fail(nil, "-", "the file is empty")
            return nil
        }
        let keys = [
            "interface", "xdp-mode", "pin-directory", "socket", "metrics", "node", "announce", "sync", "tables",
            "defaults", "services"
        ]
        guard let top = mapping(root, "", allowed: keys) else { return nil }
        guard let interface = string(top["interface"], "interface") else {
            if top["interface"] == nil {
                fail(root, "interface", "is required: the NIC whose XDP hook runs the dataplane")
            }
            return nil
        }
        if let why = Limits.badInterfaceName(interface) {
            // Reported; the rest of the file is still checked.
            fail(top["interface"], "interface", why)
        }
        var config = Config(interface: interface)
        config.xdpMode = choice(top["xdp-mode"], "xdp-mode", XDPMode.self) ?? .native
        if let dir = string(top["pin-directory"], "pin-directory") {
            if let why = Limits.badPath(dir, max: Limits.maxPathBytes) {
                fail(top["pin-directory"], "pin-directory", why)
            } else {
                config.pinDirectory = dir
            }
        }
        if let socket = string(top["socket"], "socket") {
            if let why = Limits.badPath(socket, max: Limits.maxSocketPathBytes) {
                fail(top["socket"], "socket", why)
            } else {
                config.socket = socket
            }
        }
        if let metrics = string(top["metrics"], "metrics") {
            if metrics.split(separator: ":").last.flatMap({ UInt16($0) }) != nil {
                config.metrics = metrics
            } else {
                fail(top["metrics"], "metrics", "must be host:port, e.g. 127.0.0.1:9650")
            }
        }
        if let node = top["node"] {
            // Not string(): a name such as "01" or "true" is still a name.
            if let name = node.scalar?.string, let why = Limits.badNodeName(name) {
                fail(node, "node", why)
            } else if let name = node.scalar?.string {
                config.node = name
            } else {
                fail(node, "node", "must be a name such as lb1, not a \(kind(node))")
            }
        }
        if let announce = mapping(top["announce"], "announce", allowed: ["table"]) {
            if let node = announce["table"] {
                if let text = node.scalar?.string, let table = Int(text) {
                    if let why = Limits.badTable(table) {
                        fail(node, "announce.table", why)
                    } else {
                        config.announce = Config.Announce(table: UInt32(table))
                    }
                } else {
                    fail(
                        node, "announce.table",
                        "must be a routing table id in 1...\(UInt32.max), not \(node.scalar?.string ?? kind(node))")
                }
            } else {
                fail(top["announce"], "announce.table", "is required: the kernel routing table for the VIP routes")
            }
        }
        config.sync = sync(top["sync"])
        if let tables = mapping(top["tables"], "tables", allowed: ["flows", "records"]) {
            let range = TableSizes.range
            if let n = int(tables["flows"], "tables.flows", range) { config.tables.flows = n }
            if let n = int(tables["records"], "tables.records", range) { config.tables.records = n }
        }
        if let defaults = mapping(top["defaults"], "defaults", allowed: ["check"]) {
            config.defaults.check = timing(defaults["check"], "defaults.check", base: CheckTiming(), strict: true)
        }
        guard let list = sequence(top["services"], "services") else {
            if top["services"] == nil { fail(root, "services", "is required: a list of services") }
            return config
        }
        if list.count > Limits.maxServices {
            fail(
                top["services"], "services", "\(list.count) services; the dataplane holds at most \(Limits.maxServices)"
            )
        }
        for (i, node) in list.enumerated() {
            if let s = service(node, "services[\(i)]", defaults: config.defaults) {
                config.services.append(s)
            } else if let name = node.mapping?["name"]?.scalar?.string {
                failedServices.insert(name)
            }
        }
        return config
    }

    /// `sync: { listen, peers, secret-file }`: every part is required.
    mutating func sync(_ node: Node?) -> Config.Sync? {
        guard let m = mapping(node, "sync", allowed: ["listen", "peers", "secret-file"]) else { return nil }
        var ok = true
        for key in ["listen", "peers", "secret-file"] where m[key] == nil {
            fail(node, "sync.\(key)", "is required")
            ok = false
        }
        let listen = endpoint(m["listen"], "sync.listen", listening: true)
        var peers: [Endpoint] = []
        if let list = sequence(m["peers"], "sync.peers") {
            if list.isEmpty { fail(m["peers"], "sync.peers", "needs at least one peer (ADDR:PORT)") }
            for (i, p) in list.enumerated() {
                guard let peer = endpoint(p, "sync.peers[\(i)]", listening: false) else {
                    ok = false
                    continue
                }
                if peers.contains(peer) {
                    fail(p, "sync.peers[\(i)]", "\(peer) is listed twice")
                    ok = false
                } else if peer == listen {
                    fail(p, "sync.peers[\(i)]", "\(peer) is this node's own sync.listen")
                    ok = false
                } else if let listen, listen.address.family != peer.address.family {
                    // Datagrams leave from the listen address: one family.
                    let family = { (e: Endpoint) in e.address.family == .inet ? "IPv4" : "IPv6" }
                    fail(
                        p, "sync.peers[\(i)]",
                        "\(peer) is \(family(peer)) but sync.listen \(listen) is \(family(listen)): records go from the listen address, so every peer must be of its family"
                    )
                    ok = false
                }
                peers.append(peer)
            }
        }
        var secret: String?
        if let path = string(m["secret-file"], "sync.secret-file") {
            if let why = Limits.badPath(path, max: Limits.maxPathBytes) {
                fail(m["secret-file"], "sync.secret-file", why)
            } else {
                do {
                    _ = try SecretFile.read(path)
                    secret = path
                } catch {
                    fail(m["secret-file"], "sync.secret-file", "\(error)")
                }
            }
        }
        guard ok, let listen, let secret, !peers.isEmpty else { return nil }
        return Config.Sync(listen: listen, peers: peers, secretFile: secret)
    }

    mutating func endpoint(_ node: Node?, _ key: String, listening: Bool) -> Endpoint? {
        guard let text = string(node, key) else { return nil }
        guard let e = Endpoint(text) else {
            fail(
                node, key,
                "\(Limits.printable(text)) is not ADDR:PORT (e.g. 198.18.0.1:7946 or [2001:db8::1]:7946; port 1...65535)"
            )
            return nil
        }
        // Listening on every address is fine; sending to it is not.
        if listening && e.address.bytes.allSatisfy({ $0 == 0 }) { return e }
        if let why = Limits.notUnicast(e.address), !why.contains("loopback") {
            fail(node, key, "\(e.address) is \(why): \(listening ? "listen on" : "a peer is") a unicast address")
            return nil
        }
        return e
    }

    static let timingKeys = ["interval", "timeout", "rise", "fall"]

    mutating func timing(_ node: Node?, _ key: String, base: CheckTiming, strict: Bool) -> CheckTiming {
        var t = base
        let allowed = strict ? Self.timingKeys : Self.timingKeys + Self.checkKeys
        guard let m = mapping(node, key, allowed: allowed) else { return t }
        if let v = duration(m["interval"], "\(key).interval") { t.intervalNs = v }
        if let v = duration(m["timeout"], "\(key).timeout") { t.timeoutNs = v }
        if let v = int(m["rise"], "\(key).rise", 1...100) { t.rise = v }
        if let v = int(m["fall"], "\(key).fall", 1...100) { t.fall = v }
        if t.timeoutNs > t.intervalNs {
            fail(
                m["timeout"] ?? node, "\(key).timeout",
                "\(DurationText.format(t.timeoutNs)) is longer than the interval \(DurationText.format(t.intervalNs))")
        }
        return t
    }

    /// The check's own keys come from `HealthCheck`: each kind of check
    /// knows its options.
    static let checkKeys = HealthCheck.keys

    mutating func check(_ node: Node?, _ key: String, defaults: Config.Defaults) -> HealthCheck {
        let timing = timing(node, key, base: defaults.check, strict: false)
        guard let node, node.mapping != nil else { return HealthCheck(timing: timing) }
        var options = CheckOptions(mappingQuiet(node).mapValues(optionValue), line: node.mark?.line ?? 0)
        let check = HealthCheck(reading: &options, timing: timing)
        for problem in options.problems {
            errors.append(
                ConfigError(
                    file: file, line: problem.line, key: "\(key).\(problem.key)",
                    message: problem.message))
        }
        return check
    }

    /// The mapping's entries without reporting (already checked by timing()).
    func mappingQuiet(_ node: Node) -> [String: Node] {
        var result: [String: Node] = [:]
        for (k, v) in node.mapping ?? [:] { if let name = k.scalar?.string { result[name] = v } }
        return result
    }

    /// A YAML node as the check readers in Model see it: no Yams types.
    func optionValue(_ node: Node) -> CheckOptions.Value {
        let line = node.mark?.line ?? 0
        if let list = node.sequence { return CheckOptions.Value(.list(list.map(optionValue)), line: line) }
        if node.mapping != nil { return CheckOptions.Value(.mapping, line: line) }
        guard let text = node.scalar?.string else { return CheckOptions.Value(.other, line: line) }
        return CheckOptions.Value(.scalar(text), line: line)
    }

    static let serviceKeys = [
        "name", "vip", "port", "protocol", "scheduler", "persistence", "follow",
        "failover", "drop-on-failure", "check", "sorry", "reals"
    ]

    mutating func service(_ node: Node, _ key: String, defaults: Config.Defaults) -> Config.Service? {
        guard let m = mapping(node, key, allowed: Self.serviceKeys) else { return nil }
        var name = string(m["name"], "\(key).name")
        if let n = name, let why = Limits.badName(n) {
            fail(m["name"], "\(key).name", why)
            name = nil
        }
        let at = name.map { "services.\($0)" } ?? key
        if m["name"] == nil { fail(node, "\(key).name", "is required") }
        let vip = address(m["vip"], "\(at).vip")
        if m["vip"] == nil { fail(node, "\(at).vip", "is required") }
        let port = int(m["port"], "\(at).port", 1...65535)
        if m["port"] == nil { fail(node, "\(at).port", "is required") }

        // Check every other key even when a required one is wrong.
        var s = Config.Service(
            name: name ?? "?", vip: vip ?? IPAddress("0.0.0.0")!,
            port: UInt16(port ?? 0), line: node.mark?.line ?? 0)
        s.proto = choice(m["protocol"], "\(at).protocol", ProtocolName.self)?.l4 ?? .tcp
        s.scheduler = choice(m["scheduler"], "\(at).scheduler", Scheduler.self) ?? .maglev
        s.failover = choice(m["failover"], "\(at).failover", Config.Failover.self) ?? .group
        s.dropOnFailure = bool(m["drop-on-failure"], "\(at).drop-on-failure") ?? false
        s.check = check(m["check"], "\(at).check", defaults: defaults)
        if let p = mapping(m["persistence"], "\(at).persistence", allowed: ["mode", "timeout", "netmask"]) {
            let mode = string(p["mode"], "\(at).persistence.mode") ?? "source-ip"
            if mode != "source-ip" { fail(p["mode"], "\(at).persistence.mode", "must be source-ip, not \(mode)") }
            let timeout = duration(p["timeout"], "\(at).persistence.timeout") ?? 30 * 60_000_000_000
            let netmask = int(p["netmask"], "\(at).persistence.netmask", 0...s.vip.maxPrefix) ?? s.vip.maxPrefix
            s.persistence = Persistence(timeoutNs: timeout, netmask: netmask)
        }
        if let f = sequence(m["follow"], "\(at).follow") {
            s.follow = f.compactMap { string($0, "\(at).follow") }
        }
        let checkReals = vip != nil && port != nil
        if let sorry = m["sorry"] { s.sorry = real(sorry, "\(at).sorry", service: s, checkAgainstService: checkReals) }
        if let list = sequence(m["reals"], "\(at).reals") {
            for (i, r) in list.enumerated() {
                if let real = real(r, "\(at).reals[\(i)]", service: s, checkAgainstService: checkReals) {
                    s.reals.append(real)
                }
            }
            if list.isEmpty { fail(m["reals"], "\(at).reals", "needs at least one real server") }
        } else if m["reals"] == nil {
            fail(node, "\(at).reals", "is required: the real servers")
        }
        guard name != nil, vip != nil, port != nil else { return nil }
        return s
    }

    mutating func real(
        _ node: Node, _ key: String, service: Config.Service,
        checkAgainstService: Bool
    ) -> Config.Real? {
        guard let m = mapping(node, key, allowed: ["address", "port", "weight", "state"]) else { return nil }
        guard let address = address(m["address"], "\(key).address") else {
            if m["address"] == nil { fail(node, "\(key).address", "is required") }
            return nil
        }
        var r = Config.Real(address: address, port: service.port, line: node.mark?.line ?? 0)
        if let p = int(m["port"], "\(key).port", 1...65535) { r.port = UInt16(p) }
        if let w = int(m["weight"], "\(key).weight", 0...65535) { r.weight = UInt32(w) }
        r.state = choice(m["state"], "\(key).state", Config.RealState.self) ?? .enabled
        guard checkAgainstService else { return r }
        if address.family != service.vip.family {
            fail(m["address"], "\(key).address", "\(address) is not of the VIP's family (\(service.vip))")
        }
        if r.port != service.port {
            fail(
                m["port"], "\(key).port",
                "\(r.port) differs from the service port \(service.port): direct server return forwards without changing the port"
            )
        }
        return r
    }
}
