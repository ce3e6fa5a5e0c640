import Glibc
import Model

/// Tandem's configuration, as the YAML file states it (docs/manual/config.md), with
/// defaults applied. `ConfigParser` reads it; `ConfigValidator` checks the
/// rules that span services (port following, duplicates).
public struct Config: Equatable, Sendable {
    /// NIC whose XDP hook runs the dataplane.
    public var interface: String
    public var xdpMode: XDPMode = .native
    /// bpffs directory holding the pinned maps and link.
    public var pinDirectory = "/sys/fs/bpf/tandem"
    /// Control socket of `tandem serve`.
    public var socket = "/run/tandem/tandem.sock"
    /// Prometheus endpoint ("host:port"); off when nil.
    public var metrics: String?
    /// This node's name in status, logs and metrics; nil: the hostname.
    public var node: String?
    /// Where announced VIPs go (docs/design/several-nodes.md); nil: Tandem announces nothing.
    public var announce: Announce?
    /// Record sync with other nodes (docs/design/record-sync.md); nil: none.
    public var sync: Sync?
    /// Entries of the flow and record tables (memory: `TableMemory`).
    public var tables = TableSizes.default
    public var defaults = Defaults()
    public var services: [Service] = []

    public init(interface: String) { self.interface = interface }

    /// The node's name: `node`, or else the hostname.
    public var nodeName: String { node ?? Self.hostname() }

    static func hostname() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "localhost" : name
    }

    /// Announcing VIPs: one route per announced VIP in a kernel routing
    /// table, which a routing daemon on the node (BIRD) carries to the router.
    public struct Announce: Equatable, Sendable {
        /// Kernel routing table id: 1...2^32-1, not 253, 254 or 255.
        public var table: UInt32
        public init(table: UInt32) { self.table = table }
    }

    /// Record sync: this node's records go to `peers`, theirs come in on
    /// `listen` (UDP for live records, TCP for a starting node's pull),
    /// authenticated with the secret in `secretFile`.
    public struct Sync: Equatable, Sendable {
        public var listen: Endpoint
        public var peers: [Endpoint]
        public var secretFile: String

        public init(listen: Endpoint, peers: [Endpoint], secretFile: String) {
            self.listen = listen
            self.peers = peers
            self.secretFile = secretFile
        }

        /// The shared secret: the file's bytes, a final newline left out.
        /// It must belong to the user running tandem (root for `serve`), be
        /// readable by nobody else, and hold at least `minSecretBytes`.
        public func readSecret() throws -> [UInt8] { try SecretFile.read(secretFile) }

        public static let minSecretBytes = 32
    }

    public struct Defaults: Equatable, Sendable {
        public var check = CheckTiming()
        public init() {}
    }

    public enum Failover: String, Sendable, CaseIterable { case group, service }

    public enum RealState: String, Sendable, CaseIterable { case enabled, disabled, drain }

    public struct Real: Equatable, Sendable {
        public var address: IPAddress
        public var port: UInt16
        public var weight: UInt32 = 1
        public var state: RealState = .enabled
        public var line: Int
        public init(address: IPAddress, port: UInt16, weight: UInt32 = 1, line: Int = 0) {
            self.address = address
            self.port = port
            self.weight = weight
            self.line = line
        }
    }

    public struct Service: Equatable, Sendable {
        public var name: String
        public var vip: IPAddress
        public var port: UInt16
        public var proto: L4Protocol = .tcp
        public var scheduler: Scheduler = .maglev
        public var persistence: Persistence?
        public var follow: [String] = []
        public var failover: Failover = .group
        public var dropOnFailure = false
        public var check = HealthCheck()
        public var sorry: Real?
        public var reals: [Real] = []
        /// Line of the service in the file, for messages.
        public var line: Int

        public init(name: String, vip: IPAddress, port: UInt16, line: Int = 0) {
            self.name = name
            self.vip = vip
            self.port = port
            self.line = line
        }
    }
}

/// One problem in a config: where, which key, what.
public struct ConfigError: Error, Equatable, Sendable, Codable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var key: String
    public var message: String

    public init(file: String, line: Int, key: String, message: String) {
        self.file = file
        self.line = line
        self.key = key
        self.message = message
    }

    /// Control characters from the file are shown escaped, never raw.
    public var description: String {
        "\(Limits.printable(file)):\(line): \(Limits.printable(key)): \(Limits.printable(message))"
    }
}

/// Every problem found, reported together.
public struct ConfigErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [ConfigError]
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}

/// A config that passed every check of `ConfigParser` and `ConfigValidator`,
/// with its follow groups (service names, in config order). Only the
/// validator makes one, so holding one means nothing is left to check.
public struct ValidatedConfig: Equatable, Sendable {
    public let config: Config
    public let groups: [[String]]

    init(config: Config, groups: [[String]]) {
        self.config = config
        self.groups = groups
    }
}

extension ServiceKey {
    public init(_ s: Config.Service) { self.init(vip: s.vip, port: s.port, proto: s.proto) }
}
