/// Where in its interval each probe runs. The k-th probe gets the phase
/// frac(k·φ) (φ the golden ratio): any number of probes then sit evenly over
/// the interval, with no tick where they all fire, and each probe added
/// later lands in the largest gap left. A probe runs at exactly its phase
/// every interval (fixed rate, not "interval after the last check ended"), so
/// the spread holds round after round.
struct Phases {
    private var count: UInt64 = 0

    static let golden = 0.618_033_988_749_894_9

    /// The next phase, in [0, 1).
    mutating func next() -> Double {
        defer { count += 1 }
        let x = Double(count) * Self.golden
        return x - x.rounded(.down)
    }

    /// The first time after `now` at `phase` of `intervalNs`, counted from
    /// multiples of the interval on the monotonic clock: probes of one
    /// interval share the grid, so their phases keep them apart.
    static func firstDue(now: UInt64, intervalNs: UInt64, phase: Double) -> UInt64 {
        let interval = max(1, intervalNs)
        let offset = UInt64(Double(interval) * phase) % interval
        var due = now - now % interval + offset
        if due <= now { due += interval }
        return due
    }
}

/// How the checks keep up, for `tandem status` and the metrics.
public struct CheckerStats: Sendable, Equatable {
    /// Distinct probes running (identical checks of several services count once).
    public var probes = 0
    /// Checks a second the probes' intervals ask for.
    public var scheduledPerSecond = 0.0
    /// Checks started per second in the latest round.
    public var donePerSecond = 0.0
    /// Length of a round: the longest interval, so each probe runs at least
    /// once in a round.
    public var roundNs: UInt64 = 0
    /// How late the latest round's latest-starting check was (start - due).
    public var latenessNs: UInt64 = 0
    /// Checks skipped in the latest round because the loop was a whole
    /// interval behind.
    public var missed: UInt64 = 0
    /// Since the checker started.
    public var checksTotal: UInt64 = 0
    public var missedTotal: UInt64 = 0
    /// tcp checks sent as a half-open SYN since the checker started.
    public var halfOpenTotal: UInt64 = 0
    /// How tcp checks run: half-open SYNs, or full connects and why; nil
    /// before the first tcp check.
    public var tcpPath: String?

    public init() {}

    /// Behind: checks were skipped, or the latest round ran more than a
    /// tenth of a round late.
    public var behind: Bool { missed > 0 || (roundNs > 0 && latenessNs > roundNs / 10) }
}

/// One loop's counts, round by round. Rounds are fixed windows of the
/// monotonic clock (multiples of the round length), so the loops' rounds
/// coincide.
struct RoundTally {
    struct Round: Equatable {
        var started: UInt64 = 0
        var latenessNs: UInt64 = 0
        var missed: UInt64 = 0
    }

    private(set) var roundNs: UInt64 = 1_000_000_000
    private var index: UInt64 = 0
    private var current = Round()
    /// The latest complete round.
    private(set) var latest = Round()
    private(set) var startedTotal: UInt64 = 0
    private(set) var missedTotal: UInt64 = 0

    /// Starts counting rounds of `ns` (a change starts afresh).
    mutating func setRound(_ ns: UInt64, now: UInt64) {
        let ns = max(1, ns)
        guard ns != roundNs else { return }
        roundNs = ns
        index = now / ns
        current = Round()
        latest = Round()
    }

    /// Moves on to the round `now` is in; true when a round ended.
    @discardableResult
    mutating func roll(now: UInt64) -> Bool {
        let at = now / roundNs
        guard at != index else { return false }
        // A round in which the loop did nothing at all is a round of zeros.
        latest = at == index + 1 ? current : Round()
        current = Round()
        index = at
        return true
    }

    mutating func started(now: UInt64, latenessNs: UInt64, missed: UInt64) {
        roll(now: now)
        current.started += 1
        current.latenessNs = max(current.latenessNs, latenessNs)
        current.missed += missed
        startedTotal += 1
        missedTotal += missed
    }
}
