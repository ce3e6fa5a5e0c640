/// Tandem's configuration, as the YAML file states it (SPEC §5), with
/// defaults applied. `ConfigParser` reads it; `ConfigValidator` checks the
/// rules that span services (port following, duplicates).
public struct Config: Equatable, Sendable {
    public enum XDPMode: String, Sendable, CaseIterable { case native, generic }

    /// NIC whose XDP hook runs the dataplane.
    public var interface: String
    public var xdpMode: XDPMode = .native
    /// bpffs directory holding the pinned maps and link.
    public var pinDirectory = "/sys/fs/bpf/tandem"
    /// Control socket of `tandem serve`.
    public var socket = "/run/tandem/tandem.sock"
    /// Prometheus endpoint ("host:port"); off when nil.
    public var metrics: String?
    public var defaults = Defaults()
    public var services: [Service] = []

    public init(interface: String) { self.interface = interface }

    public struct Defaults: Equatable, Sendable {
        public var check = CheckTiming()
        public init() {}
    }

    /// Health-check timing; durations in nanoseconds.
    public struct CheckTiming: Hashable, Sendable {
        public var intervalNs: UInt64 = 2_000_000_000
        public var timeoutNs: UInt64 = 1_000_000_000
        public var rise = 2
        public var fall = 3
        public init() {}
    }

    public enum CheckType: String, Sendable, CaseIterable { case tcp, http, https, tls, none }

    public struct Check: Hashable, Sendable {
        public var type: CheckType = .tcp
        public var timing = CheckTiming()
        public var method = "GET"
        public var path = "/"
        public var host: String?
        /// Accepted status codes, as inclusive ranges (default 200-299).
        public var expect: [ClosedRange<Int>] = [200...299]
        /// Substring the body must contain.
        public var body: String?
        /// Verify the real's certificate (https, tls); off by default.
        public var verify = false
        /// Port to check; the real's port when nil.
        public var port: UInt16?
        public init() {}
    }

    public enum Failover: String, Sendable, CaseIterable { case group, service }

    public struct Persistence: Equatable, Sendable {
        public var timeoutNs: UInt64
        public var netmask: Int
        public init(timeoutNs: UInt64, netmask: Int) {
            self.timeoutNs = timeoutNs
            self.netmask = netmask
        }
    }

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
        public var proto: DataplaneModel.L4Protocol = .tcp
        public var scheduler: Scheduler = .maglev
        public var persistence: Persistence?
        public var follow: [String] = []
        public var failover: Failover = .group
        public var dropOnFailure = false
        public var check = Check()
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
public struct ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
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

    public var description: String { "\(file):\(line): \(key): \(message)" }
}

/// Every problem found, reported together.
public struct ConfigErrors: Error, Sendable, CustomStringConvertible {
    public var errors: [ConfigError]
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
