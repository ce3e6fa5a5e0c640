/// Health-check timing; durations in nanoseconds.
public struct CheckTiming: Hashable, Sendable {
    public var intervalNs: UInt64 = 2_000_000_000
    public var timeoutNs: UInt64 = 1_000_000_000
    public var rise = 2
    public var fall = 3
    public init() {}
}

/// How a service checks its reals (docs/design/health-checks.md): the kind of check with its
/// own options, plus what every kind shares.
///
/// A new kind of check is a case of `Kind`, its entry in `Kind.all` (name,
/// keys and how to read them) and its `name` here, and one probe function
/// in Sources/Health/Probe.swift.
public struct HealthCheck: Hashable, Sendable {
    public enum Kind: Hashable, Sendable {
        /// Connect, nothing more.
        case tcp
        /// One request; the status code and, if asked, the body decide.
        case http(HTTPOptions)
        case https(HTTPOptions, TLSOptions)
        /// A completed TLS handshake.
        case tls(TLSOptions)
        /// Never probed: always up.
        case none
    }

    public var kind: Kind
    public var timing: CheckTiming
    /// Port to check; the real's port when nil.
    public var port: UInt16?

    public init(_ kind: Kind = .tcp, timing: CheckTiming = CheckTiming(), port: UInt16? = nil) {
        self.kind = kind
        self.timing = timing
        self.port = port
    }
}

public struct HTTPOptions: Hashable, Sendable {
    public var method: String
    public var path: String
    /// Host header (and TLS server name); the real's address when nil.
    public var host: String?
    /// Accepted status codes, as inclusive ranges.
    public var expect: [ClosedRange<Int>]
    /// Substring the body must contain.
    public var body: String?
    /// http only: keep the connection for the next check when the real
    /// allows it (HTTP/1.1 keep-alive); false opens one per check, with
    /// `Connection: close`. https checks open one per check either way.
    public var keepAlive: Bool

    public init(
        method: String = "GET", path: String = "/", host: String? = nil,
        expect: [ClosedRange<Int>] = [200...299], body: String? = nil, keepAlive: Bool = true
    ) {
        self.method = method
        self.path = path
        self.host = host
        self.expect = expect
        self.body = body
        self.keepAlive = keepAlive
    }

    static let keys = ["method", "path", "host", "expect", "body"]
    /// Keys of http checks only.
    static let plainKeys = ["keep-alive"]

    /// A CR or LF would let the config write extra headers or requests.
    static func fitsRequestLine(_ text: String) -> Bool {
        text.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value != 0x7F }
    }

    static func isToken(_ text: String) -> Bool {
        !text.isEmpty && text.unicodeScalars.allSatisfy { ("A"..."Z").contains($0) || ("a"..."z").contains($0) }
    }

    init(reading o: inout CheckOptions) {
        self.init()
        if let v = o.string("method") {
            if Self.isToken(v) {
                method = v.uppercased()
            } else {
                o.fail("method", "must be an HTTP method such as GET or HEAD")
            }
        }
        if let v = o.string("path") {
            if !v.hasPrefix("/") {
                o.fail("path", "must start with /")
            } else if !Self.fitsRequestLine(v) {
                o.fail("path", "must not hold spaces or control characters (it goes into the request line)")
            } else {
                path = v
            }
        }
        if let v = o.string("host") {
            if Self.fitsRequestLine(v) {
                host = v
            } else {
                o.fail("host", "must not hold spaces or control characters (it goes into a header)")
            }
        }
        body = o.string("body")
        if let ranges = o.statuses("expect") { expect = ranges }
    }
}

public struct TLSOptions: Hashable, Sendable {
    /// Verify the real's certificate; off by default, as reals often have
    /// certificates for the service's name, not their own address.
    public var verify: Bool

    public init(verify: Bool = false) { self.verify = verify }

    static let keys = ["verify"]

    init(reading o: inout CheckOptions) {
        self.init(verify: o.bool("verify") ?? false)
    }
}

extension HealthCheck.Kind {
    /// One kind of check as the config names it: its `type`, the option
    /// keys it takes and how it reads them.
    struct Entry: Sendable {
        let name: String
        let keys: [String]
        let read: @Sendable (inout CheckOptions) -> HealthCheck.Kind
    }

    /// Every kind, in the order error messages list them.
    static let all: [Entry] = [
        Entry(name: "tcp", keys: []) { _ in .tcp },
        Entry(name: "http", keys: HTTPOptions.keys + HTTPOptions.plainKeys) { o in
            var options = HTTPOptions(reading: &o)
            if let keep = o.bool("keep-alive") { options.keepAlive = keep }
            return .http(options)
        },
        Entry(name: "https", keys: HTTPOptions.keys + TLSOptions.keys) {
            .https(HTTPOptions(reading: &$0), TLSOptions(reading: &$0))
        },
        Entry(name: "tls", keys: TLSOptions.keys) { .tls(TLSOptions(reading: &$0)) },
        Entry(name: "none", keys: []) { _ in .none }
    ]

    /// The `type` of the check in the config.
    public var name: String {
        switch self {
        case .tcp: "tcp"
        case .http: "http"
        case .https: "https"
        case .tls: "tls"
        case .none: "none"
        }
    }

    /// The HTTP request options of http and https checks.
    public var http: HTTPOptions? {
        switch self {
        case .http(let options), .https(let options, _): options
        default: nil
        }
    }
}

extension HealthCheck {
    /// The keys of a check mapping besides the timing: type, every kind's
    /// options, port.
    public static let keys: [String] = {
        var keys = ["type"]
        for key in Kind.all.flatMap(\.keys) where !keys.contains(key) { keys.append(key) }
        return keys + ["port"]
    }()

    /// `verify` has always been accepted on every kind of check, and ignored
    /// where no TLS is spoken: configs that set it there stay valid.
    static let acceptedEverywhere = TLSOptions.keys

    /// Reads type, port and the type's options from a check's mapping;
    /// problems are left in `options`, in the order of `keys`. The timing is
    /// read by the caller, as `defaults.check` shares it.
    public init(reading options: inout CheckOptions, timing: CheckTiming) {
        let start = options.problems.count
        let names = Kind.all.map(\.name)
        let entry =
            options.choice("type", names).flatMap { name in Kind.all.first { $0.name == name } }
            ?? Kind.all[0]
        self.init(entry.read(&options), timing: timing)
        if let p = options.int("port", 1...65535) { port = UInt16(p) }
        // Options of other kinds: their values are checked all the same, so
        // that one pass reports every problem.
        let foreign = Self.keys.filter { key in
            options.has(key) && !entry.keys.contains(key) && Kind.all.contains { $0.keys.contains(key) }
        }
        for key in foreign {
            var alone = options.only(key)
            _ = Kind.all.first { $0.keys.contains(key) }?.read(&alone)
            options.take(alone.problems)
        }
        options.order(from: start, by: Self.keys)
        // Only the first is refused: one shows the type is not the intended one.
        if let key = foreign.first(where: { !Self.acceptedEverywhere.contains($0) }) {
            let owners = Kind.all.filter { $0.keys.contains(key) }.map(\.name)
            options.fail(key, "applies to \(Self.list(owners)) checks only (type is \(entry.name))")
        }
    }

    /// "http", "http and https", "http, https and tls".
    static func list(_ names: [String]) -> String {
        guard let last = names.last, names.count > 1 else { return names.first ?? "" }
        return names.dropLast().joined(separator: ", ") + " and " + last
    }

    /// "http GET /health every 2s rise 2 fall 3", as check and status print it.
    public var summary: String {
        var text = kind.name
        if let http = kind.http { text += " \(http.method) \(http.path)" }
        if case .http(let http) = kind, !http.keepAlive { text += " keep-alive off" }
        if kind != .none {
            text += " every \(DurationText.format(timing.intervalNs)) rise \(timing.rise) fall \(timing.fall)"
        }
        return text
    }
}

/// A check's mapping as the config file gives it: each key's value with its
/// line. Option readers take the keys they know and note what is wrong; the
/// config parser adds the file and the key's full path to each problem.
public struct CheckOptions: Sendable {
    public struct Value: Sendable {
        public enum Shape: Sendable {
            case scalar(String)
            case list([Value])
            case mapping
            /// Anything else YAML has (an alias): never a valid option.
            case other
        }

        public var shape: Shape
        public var line: Int

        public init(_ shape: Shape, line: Int) {
            self.shape = shape
            self.line = line
        }

        var scalar: String? {
            if case .scalar(let text) = shape { return text }
            return nil
        }

        /// What the value is, for messages about a value that is not a scalar.
        var kind: String {
            switch shape {
            case .scalar, .other: "value"
            case .list: "list"
            case .mapping: "mapping"
            }
        }
    }

    /// One problem: the line, the key within the check, what is wrong.
    public struct Problem: Equatable, Sendable {
        public var line: Int
        public var key: String
        public var message: String
    }

    let values: [String: Value]
    /// Line of the mapping, for problems of keys it lacks.
    let line: Int
    public private(set) var problems: [Problem] = []

    public init(_ values: [String: Value], line: Int) {
        self.values = values
        self.line = line
    }

    func has(_ key: String) -> Bool { values[key] != nil }

    /// The same mapping with `key` alone.
    func only(_ key: String) -> CheckOptions {
        CheckOptions(values.filter { $0.key == key }, line: line)
    }

    mutating func take(_ more: [Problem]) { problems += more }

    /// Puts the problems from `start` on in the order of their keys in `keys`.
    mutating func order(from start: Int, by keys: [String]) {
        let rank = { (p: Problem) in keys.firstIndex(of: p.key) ?? keys.count }
        let tail = problems[start...].enumerated().sorted {
            (rank($0.element), $0.offset) < (rank($1.element), $1.offset)
        }
        problems[start...] = ArraySlice(tail.map(\.element))
    }

    mutating func fail(_ key: String, _ message: String, line: Int? = nil) {
        problems.append(Problem(line: line ?? values[key]?.line ?? self.line, key: key, message: message))
    }

    mutating func string(_ key: String) -> String? {
        guard let value = values[key] else { return nil }
        guard let text = value.scalar, !text.isEmpty else {
            fail(key, "must be a non-empty string")
            return nil
        }
        return text
    }

    mutating func bool(_ key: String) -> Bool? {
        guard let value = values[key] else { return nil }
        switch value.scalar {
        case "true": return true
        case "false": return false
        default:
            fail(key, "must be true or false")
            return nil
        }
    }

    mutating func int(_ key: String, _ range: ClosedRange<Int>) -> Int? {
        guard let value = values[key] else { return nil }
        guard let text = value.scalar, let v = Int(text), range.contains(v) else {
            fail(
                key,
                "must be a whole number in \(range.lowerBound)...\(range.upperBound), not \(value.scalar ?? "a \(value.kind)")"
            )
            return nil
        }
        return v
    }

    mutating func choice(_ key: String, _ names: [String]) -> String? {
        guard let value = values[key] else { return nil }
        guard let text = value.scalar, names.contains(text) else {
            fail(key, "must be one of \(names.joined(separator: ", ")), not \(value.scalar ?? value.kind)")
            return nil
        }
        return text
    }

    /// "200", "200-299", or a list of them.
    mutating func statuses(_ key: String) -> [ClosedRange<Int>]? {
        guard let value = values[key] else { return nil }
        let items: [Value] = if case .list(let items) = value.shape { items } else { [value] }
        var ranges: [ClosedRange<Int>] = []
        for item in items {
            let text = item.scalar ?? ""
            let parts = text.split(separator: "-").compactMap { Int(Self.trimmed($0)) }
            if parts.count == 1, (100...599).contains(parts[0]) {
                ranges.append(parts[0]...parts[0])
            } else if parts.count == 2, (100...599).contains(parts[0]), (parts[0]...599).contains(parts[1]) {
                ranges.append(parts[0]...parts[1])
            } else {
                fail(key, "must be status codes such as 200, 200-399 or a list of them, not \(text)", line: item.line)
                return nil
            }
        }
        return ranges
    }

    static func trimmed(_ text: Substring) -> Substring {
        let blank: (Character) -> Bool = { $0.isWhitespace && !$0.isNewline }
        guard let first = text.firstIndex(where: { !blank($0) }),
            let last = text.lastIndex(where: { !blank($0) })
        else { return "" }
        return text[first...last]
    }
}
