import Control
import Model

/// The control socket speaks one JSON object per line: a request from the
/// CLI, then one response, then the connection closes.
public enum ControlRequest: Codable, Sendable, Equatable {
    case status
    case stats
    case listRecords(RecordFilter)
    case flushRecords(RecordFilter)
    case setReal(RealCommand)
    case reload
    case node(NodeCommand)
}

/// Which records a `persistence` command means; every field narrows.
public struct RecordFilter: Codable, Sendable, Equatable {
    public var service: String?
    /// An address or CIDR ("198.18.10.0/24").
    public var client: String?
    public var real: String?

    /// "198.18.10.0/24" or a bare address: the network and prefix length.
    public static func parseCIDR(_ text: String) throws -> (IPAddress, Int) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard let address = IPAddress(String(parts[0])), parts.count <= 2 else {
            throw ControlError("--client \(text) is not an address or CIDR such as 198.18.10.0/24")
        }
        var prefix = address.maxPrefix
        if parts.count == 2 {
            guard let p = Int(parts[1]), (0...address.maxPrefix).contains(p) else {
                throw ControlError("--client \(text): prefix must be 0-\(address.maxPrefix)")
            }
            prefix = p
        }
        return (address.masked(prefix: prefix), prefix)
    }

    public init(service: String? = nil, client: String? = nil, real: String? = nil) {
        self.service = service
        self.client = client
        self.real = real
    }
}

public struct RealCommand: Codable, Sendable, Equatable {
    public enum Action: String, Codable, Sendable, CaseIterable { case enable, disable, drain }
    public var action: Action
    public var address: String
    /// Nil: every service that has the address.
    public var service: String?

    public init(action: Action, address: String, service: String?) {
        self.action = action
        self.address = address
        self.service = service
    }
}

/// `tandem node drain|resume`: withdraw every VIP of this node, or
/// announce them again by the usual rules.
public struct NodeCommand: Codable, Sendable, Equatable {
    public enum Action: String, Codable, Sendable, CaseIterable { case drain, resume }
    public var action: Action

    public init(action: Action) { self.action = action }
}

public struct ControlResponse: Codable, Sendable {
    /// Set when the request failed; nothing was changed then.
    public var error: String?
    public var message: String?
    public var status: StatusReport?
    public var stats: StatsReport?
    public var records: [RecordReport]?

    public init(
        error: String? = nil, message: String? = nil, status: StatusReport? = nil,
        stats: StatsReport? = nil, records: [RecordReport]? = nil
    ) {
        self.error = error
        self.message = message
        self.status = status
        self.stats = stats
        self.records = records
    }
}

/// A service's or a real's counters, as the dataplane sums them.
public typealias CountersReport = Counters

public struct RatesReport: Codable, Sendable, Equatable {
    public var packetsPerSecond: Double = 0
    public var bytesPerSecond: Double = 0
    public var newFlowsPerSecond: Double = 0
    public init() {}
}

/// What SYNs and first packets wrote, and the writes that found a table
/// full (each pushed out the table's least recently used entry), as the
/// dataplane sums them.
public typealias TablePressure = TableCounters

public struct StatusReport: Codable, Sendable {
    public var interface: String
    public var xdpMode: String
    public var pinDirectory: String
    public var configPath: String
    public var uptimeSeconds: Double
    public var flows: Int
    public var flowCapacity: Int
    public var records: Int
    public var recordCapacity: Int
    /// Age of the table counts (flows, records, per-real records): they
    /// come from a background census of the tables, nil before the first.
    public var countedSecondsAgo: Double?
    public var pressure = TablePressure()
    public var services: [ServiceReport]
    /// This node's name (`node:`, default the hostname).
    public var node: String = ""
    /// The kernel routing table of the VIP routes; nil: nothing announced.
    public var announceTable: UInt32? = nil
    /// `tandem node drain` is in force.
    public var drained = false
    /// Every VIP of the config: announced or not, and why not.
    public var vips: [VIPReport] = []
    /// Record sync peers; nil without `sync`.
    public var sync: [PeerStatus]? = nil
    /// Record writes never sent to the peers (the dataplane's event ring
    /// buffer was full); nil without `sync`.
    public var syncUnsent: UInt64? = nil
    /// How the health checks keep up; nil when none run.
    public var checks: ChecksReport? = nil

    public init(
        interface: String, xdpMode: String, pinDirectory: String, configPath: String, uptimeSeconds: Double, flows: Int,
        flowCapacity: Int, records: Int, recordCapacity: Int, countedSecondsAgo: Double? = nil,
        pressure: TablePressure = TablePressure(), services: [ServiceReport], node: String = "",
        announceTable: UInt32? = nil, drained: Bool = false, vips: [VIPReport] = [], sync: [PeerStatus]? = nil,
        syncUnsent: UInt64? = nil, checks: ChecksReport? = nil
    ) {
        self.interface = interface
        self.xdpMode = xdpMode
        self.pinDirectory = pinDirectory
        self.configPath = configPath
        self.uptimeSeconds = uptimeSeconds
        self.flows = flows
        self.flowCapacity = flowCapacity
        self.records = records
        self.recordCapacity = recordCapacity
        self.countedSecondsAgo = countedSecondsAgo
        self.pressure = pressure
        self.services = services
        self.node = node
        self.announceTable = announceTable
        self.drained = drained
        self.vips = vips
        self.sync = sync
        self.syncUnsent = syncUnsent
        self.checks = checks
    }
}

public struct VIPReport: Codable, Sendable, Equatable {
    public var vip: String
    /// Its route is in the announce table.
    public var announced: Bool
    /// Why it is not announced (no announce table configured, draining,
    /// no usable real, starting: first checks not done, ...).
    public var reason: String?
    /// The services of the VIP.
    public var services: [String]

    public init(vip: String, announced: Bool, reason: String?, services: [String]) {
        self.vip = vip
        self.announced = announced
        self.reason = reason
        self.services = services
    }
}

/// The health checker against its schedule (HealthChecker.stats).
public struct ChecksReport: Codable, Sendable, Equatable {
    /// Distinct probes: identical checks of several services count once.
    public var probes: Int
    public var scheduledPerSecond: Double
    /// Checks started per second in the latest round.
    public var donePerSecond: Double
    /// A round: the longest interval.
    public var roundSeconds: Double
    /// How late the latest round's latest check started.
    public var latenessSeconds: Double
    /// Checks skipped in the latest round, and since the start.
    public var missed: UInt64
    public var missedTotal: UInt64
    public var behind: Bool
    /// How tcp checks run: "IPv4 half-open (SYNs from port N)", or full
    /// connects and why; nil before the first tcp check.
    public var tcpChecks: String?

    public init(
        probes: Int, scheduledPerSecond: Double, donePerSecond: Double, roundSeconds: Double,
        latenessSeconds: Double, missed: UInt64, missedTotal: UInt64, behind: Bool, tcpChecks: String? = nil
    ) {
        self.probes = probes
        self.scheduledPerSecond = scheduledPerSecond
        self.donePerSecond = donePerSecond
        self.roundSeconds = roundSeconds
        self.latenessSeconds = latenessSeconds
        self.missed = missed
        self.missedTotal = missedTotal
        self.behind = behind
        self.tcpChecks = tcpChecks
    }
}

public struct ServiceReport: Codable, Sendable {
    public var name: String
    public var vip: String
    public var port: Int
    public var proto: String
    public var scheduler: String
    public var group: Int
    /// Services sharing records with this one (itself excluded).
    public var follows: [String]
    public var persistence: String?
    public var check: String
    public var failover: String
    public var dropOnFailure: Bool
    public var sorry: String?
    public var counters: CountersReport
    public var rates: RatesReport
    public var reals: [RealReport]
    /// Digest of the live ring in real addresses, scheduler and hash seed
    /// (`RingDigest`): equal on two nodes = the same real for every client.
    public var ringDigest: String? = nil

    public init(
        name: String, vip: String, port: Int, proto: String, scheduler: String, group: Int, follows: [String],
        persistence: String? = nil, check: String, failover: String, dropOnFailure: Bool, sorry: String? = nil,
        counters: CountersReport, rates: RatesReport, reals: [RealReport], ringDigest: String? = nil
    ) {
        self.name = name
        self.vip = vip
        self.port = port
        self.proto = proto
        self.scheduler = scheduler
        self.group = group
        self.follows = follows
        self.persistence = persistence
        self.check = check
        self.failover = failover
        self.dropOnFailure = dropOnFailure
        self.sorry = sorry
        self.counters = counters
        self.rates = rates
        self.reals = reals
        self.ringDigest = ringDigest
    }
}

public struct RealReport: Codable, Sendable {
    public var address: String
    public var port: Int
    public var weight: Int
    /// up, draining, down, disabled or group-down.
    public var state: String
    /// up or down from the health check; n/a for `check: none`.
    public var health: String
    /// The last check result when it failed.
    public var lastCheck: String?
    /// Valid persistence records pointing at this real (its whole group).
    public var records: Int
    public var counters: CountersReport

    public init(
        address: String, port: Int, weight: Int, state: String, health: String, lastCheck: String? = nil, records: Int,
        counters: CountersReport
    ) {
        self.address = address
        self.port = port
        self.weight = weight
        self.state = state
        self.health = health
        self.lastCheck = lastCheck
        self.records = records
        self.counters = counters
    }
}

public struct StatsReport: Codable, Sendable {
    public var services: [ServiceStats]
    /// Packets the program passed or dropped, per reason.
    public var packets: [String: UInt64]
    public var flows: Int
    public var flowCapacity: Int
    public var records: Int
    public var recordCapacity: Int
    public var pressure = TablePressure()

    public init(
        services: [ServiceStats], packets: [String: UInt64], flows: Int, flowCapacity: Int, records: Int,
        recordCapacity: Int, pressure: TablePressure = TablePressure()
    ) {
        self.services = services
        self.packets = packets
        self.flows = flows
        self.flowCapacity = flowCapacity
        self.records = records
        self.recordCapacity = recordCapacity
        self.pressure = pressure
    }
}

public struct ServiceStats: Codable, Sendable {
    public var name: String
    public var counters: CountersReport
    public var rates: RatesReport

    public init(
        name: String, counters: CountersReport, rates: RatesReport
    ) {
        self.name = name
        self.counters = counters
        self.rates = rates
    }
}

public struct RecordReport: Codable, Sendable, Equatable {
    public var group: Int
    public var services: [String]
    public var client: String
    public var real: String
    /// Service whose packet made or last refreshed the record.
    public var service: String
    public var ageSeconds: Double
    /// The node that wrote it: this one, or the peer it was synced from.
    public var node: String? = nil

    public init(
        group: Int, services: [String], client: String, real: String, service: String, ageSeconds: Double,
        node: String? = nil
    ) {
        self.group = group
        self.services = services
        self.client = client
        self.real = real
        self.service = service
        self.ageSeconds = ageSeconds
        self.node = node
    }
}

/// A record sync peer in `status`.
public struct PeerStatus: Codable, Sendable, Equatable {
    public var endpoint: String
    public var node: String?
    public var up: Bool
    public var recordsSent: UInt64
    public var recordsReceived: UInt64
    public var recordsInstalled: UInt64
    public var sendErrors: UInt64
    /// Refused messages or records by reason (bad-mac, replay, stale,
    /// rate-limited, unknown-group, real-not-usable, older-than-local).
    public var rejected: [String: UInt64]
    /// Receive time minus send time of its last message (ms).
    public var lagMs: Double?
    public var lastHeardSeconds: Double?

    public init(
        endpoint: String, node: String? = nil, up: Bool, recordsSent: UInt64, recordsReceived: UInt64,
        recordsInstalled: UInt64, sendErrors: UInt64, rejected: [String: UInt64], lagMs: Double? = nil,
        lastHeardSeconds: Double? = nil
    ) {
        self.endpoint = endpoint
        self.node = node
        self.up = up
        self.recordsSent = recordsSent
        self.recordsReceived = recordsReceived
        self.recordsInstalled = recordsInstalled
        self.sendErrors = sendErrors
        self.rejected = rejected
        self.lagMs = lagMs
        self.lastHeardSeconds = lastHeardSeconds
    }
}
