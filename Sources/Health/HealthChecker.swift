import CHealth
import Model
import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Consecutive-result counting: up -> down after `fall` failures in a
/// row, down -> up after `rise` successes in a row.
public struct RiseFall: Sendable, Equatable {
    public private(set) var up: Bool
    /// Results in a row that disagree with `up`.
    public private(set) var streak = 0
    public let rise: Int
    public let fall: Int

    public init(up: Bool = true, rise: Int, fall: Int) {
        self.up = up
        self.rise = max(1, rise)
        self.fall = max(1, fall)
    }

    /// Counts one result; true when the state flipped.
    public mutating func record(_ ok: Bool) -> Bool {
        if ok == up {
            streak = 0
            return false
        }
        streak += 1
        if streak >= (up ? fall : rise) {
            up = ok
            streak = 0
            return true
        }
        return false
    }
}

/// The state of one probe, for `tandem status`.
public struct ProbeStatus: Sendable, Equatable {
    public var state: RiseFall
    public var last: ProbeResult?
    public var checks: UInt64 = 0
    public var failures: UInt64 = 0
    public var transitions: UInt64 = 0

    /// Counts one result; true when the state flipped.
    mutating func count(_ result: ProbeResult) -> Bool {
        checks += 1
        if !result.ok { failures += 1 }
        last = result
        let flipped = state.record(result.ok)
        if flipped { transitions += 1 }
        return flipped
    }
}

/// Runs every probe on its own fixed schedule (its phase within its
/// interval, see `Phases`) on `CheckLoop`s, counts results with `RiseFall`,
/// and reports each up/down transition on `transitions`, in the order they
/// happened.
///
/// Targets that differ only in rise, fall or the check's `port` key (with
/// the same port reached) share one probe: several services checking a real
/// the same way cost one check, and each counts the result with its own
/// rise and fall.
public final class HealthChecker: Sendable {
    /// A target went up or down.
    public struct Transition: Sendable, Equatable {
        public var target: ProbeTarget
        public var up: Bool
        public var reason: String

        public init(target: ProbeTarget, up: Bool, reason: String) {
            self.target = target
            self.up = up
            self.reason = reason
        }
    }

    /// Every transition, in order, for one consumer; ends after `stop()`.
    /// The buffer is bounded: if the consumer falls that far behind, a
    /// transition that does not fit is sent again, as the target's state
    /// then, after its next probe that finds room.
    public let transitions: AsyncStream<Transition>
    private let continuation: AsyncStream<Transition>.Continuation

    let loops: [CheckLoop]
    private let logger: Logger
    private let counting: Counting
    private var state: NIOLockedValueBox<State> { counting.state }

    /// One target fed by a probe. What each result changes comes first.
    private struct Subscriber {
        var status: ProbeStatus
        /// Its last transition did not fit in the buffer.
        var unsent = false
        var target: ProbeTarget
    }

    /// One probe and the targets it feeds. A result finds them by the
    /// probe's id: no hashing of targets per check.
    private struct Shared {
        var loop: Int
        var subscribers: [Subscriber]
    }

    private struct State {
        var shared = GenerationTable<Shared>()
        /// Probe id by probe key (`key(of:)`), and by target.
        var ids: [ProbeTarget: UInt64] = [:]
        var targets: [ProbeTarget: UInt64] = [:]
        var phases = Phases()
        var stopped = false
    }

    /// `buffer`: transitions held for a slow consumer. `loops`: threads
    /// running probes (one handles 10,000 checks a second; see
    /// BENCHMARKS.md). tls and https checks run on `group`. `halfOpen`: tcp
    /// checks are half-open (a SYN from a raw socket) where the process may
    /// open raw sockets; false: they always connect fully.
    public init(
        group: any EventLoopGroup, logger: Logger, buffer: Int = 4096, loops: Int = 1, halfOpen: Bool = true
    ) throws {
        let prober = try Prober(group: group)
        self.logger = logger
        (transitions, continuation) = AsyncStream.makeStream(
            of: Transition.self,
            bufferingPolicy: .bufferingOldest(max(1, buffer)))
        let external: CheckLoop.External = { target, done in
            prober.probe(target, on: group.next()).whenSuccess(done)
        }
        let counting = Counting(continuation: continuation, logger: logger)
        self.counting = counting
        self.loops = try (0..<max(1, loops)).map { i in
            try CheckLoop(
                name: "tandem-checks-\(i)", logger: logger, halfOpen: halfOpen,
                results: { counting.record($0) }, external: external)
        }
    }

    deinit {
        for loop in loops { loop.stop() }
    }

    /// What identical checks share: the address, port, kind with its
    /// options, interval and timeout.
    static func key(of target: ProbeTarget) -> ProbeTarget {
        var key = target
        key.check.timing.rise = 0
        key.check.timing.fall = 0
        key.check.port = nil
        return key
    }

    /// Probes exactly `targets` from now on. A target already running keeps
    /// its counters; a new one starts in the given state (true = up).
    public func update(_ targets: [ProbeTarget: Bool]) {
        state.withLockedValue { s in
            guard !s.stopped else { return }
            var removed = [[UInt64]](repeating: [], count: loops.count)
            var added = [[CheckLoop.Spec]](repeating: [], count: loops.count)
            for (gone, id) in s.targets where targets[gone] == nil {
                s.targets[gone] = nil
                var emptied: Int?
                s.shared.modify(id) { shared in
                    shared.subscribers.removeAll { $0.target == gone }
                    if shared.subscribers.isEmpty { emptied = shared.loop }
                }
                if let loop = emptied {
                    removed[loop].append(id)
                    s.shared[id] = nil
                    s.ids[Self.key(of: gone)] = nil
                }
            }
            let now = KernelClock.monotonicNs()
            for (target, up) in targets where s.targets[target] == nil && target.check.kind != .none {
                let subscriber = Subscriber(
                    status: ProbeStatus(
                        state: RiseFall(up: up, rise: target.check.timing.rise, fall: target.check.timing.fall)),
                    target: target)
                let key = Self.key(of: target)
                if let id = s.ids[key] {
                    s.targets[target] = id
                    s.shared.modify(id) { $0.subscribers.append(subscriber) }
                    continue
                }
                let loop = s.shared.nextIndex % loops.count
                let id = s.shared.insert(Shared(loop: loop, subscribers: [subscriber]))
                s.ids[key] = id
                s.targets[target] = id
                let due = Phases.firstDue(
                    now: now, intervalNs: target.check.timing.intervalNs, phase: s.phases.next())
                added[loop].append(CheckLoop.Spec(id: id, target: key, firstDue: due, report: nil))
            }
            // Posted under the lock: a later update's commands come after.
            for (i, loop) in loops.enumerated() {
                if !removed[i].isEmpty { loop.remove(removed[i]) }
                if !added[i].isEmpty { loop.add(added[i]) }
            }
        }
    }

    public func snapshot() -> [ProbeTarget: ProbeStatus] {
        state.withLockedValue { s in
            var all: [ProbeTarget: ProbeStatus] = [:]
            all.reserveCapacity(s.targets.count)
            for shared in s.shared.values {
                for sub in shared.subscribers { all[sub.target] = sub.status }
            }
            return all
        }
    }

    /// How the checks keep up with their schedule, over every loop.
    public func stats() -> CheckerStats {
        let now = KernelClock.monotonicNs()
        var stats = CheckerStats()
        for loop in loops {
            let p = loop.published.withLockedValue { $0 }
            stats.probes += p.probes
            stats.scheduledPerSecond += p.scheduledPerSecond
            stats.checksTotal += p.startedTotal
            stats.missedTotal += p.missedTotal
            stats.halfOpenTotal += p.halfOpenTotal
            if stats.tcpPath == nil { stats.tcpPath = p.tcpPath }
            stats.roundNs = max(stats.roundNs, p.roundNs)
            guard p.probes > 0 else { continue }
            if now >= p.latestEnd + 2 * p.roundNs {
                // The loop has not closed a round since: it is stuck, and
                // every check due since the round it last closed is missed.
                let stuckNs = now - p.latestEnd - p.roundNs
                stats.latenessNs = max(stats.latenessNs, stuckNs)
                stats.missed += max(1, UInt64(p.scheduledPerSecond * Double(stuckNs) / 1e9))
            } else {
                stats.donePerSecond += Double(p.latest.started) * 1e9 / Double(p.roundNs)
                stats.latenessNs = max(stats.latenessNs, p.latest.latenessNs)
                stats.missed += p.latest.missed
            }
        }
        return stats
    }

    /// Stops every probe and ends `transitions` (after what it holds).
    public func stop() {
        state.withLockedValue {
            $0.stopped = true; $0.shared = GenerationTable(); $0.ids = [:]; $0.targets = [:]
        }
        for loop in loops { loop.stop() }
        continuation.finish()
    }

    /// Counts results and sends transitions; the loops report to it.
    private final class Counting: Sendable {
        let state = NIOLockedValueBox(State())
        let continuation: AsyncStream<Transition>.Continuation
        let logger: Logger

        init(continuation: AsyncStream<Transition>.Continuation, logger: Logger) {
            self.continuation = continuation
            self.logger = logger
        }

        /// Counts the results of one turn of a loop, each for every target of
        /// its probe, under one lock. Runs on the probes' loop, which reports a
        /// probe's results in order, so a target's transitions enter the stream
        /// in order.
        func record(_ results: [(id: UInt64, result: ProbeResult)]) {
            let counted = state.withLockedValue { s in
                var counted: [(target: ProbeTarget, flipped: Bool, up: Bool, unsent: Bool, result: ProbeResult)] = []
                // The probes' counts are fetched together first: each was
                // last counted a second ago and has left the cache.
                for (id, _) in results {
                    s.shared.read(id) { shared in
                        shared.subscribers.withUnsafeBufferPointer { tandem_prefetch($0.baseAddress, 2) }
                    }
                }
                for (id, result) in results {
                    // Counted in place; copied out only when there is
                    // something to send.
                    s.shared.modify(id) { shared in
                        for i in shared.subscribers.indices {
                            let flipped = shared.subscribers[i].status.count(result)
                            guard flipped || shared.subscribers[i].unsent else { continue }
                            let sub = shared.subscribers[i]
                            counted.append((sub.target, flipped, sub.status.state.up, sub.unsent, result))
                        }
                    }
                }
                return counted
            }
            for (target, flipped, up, unsent, result) in counted {
                send(target, flipped: flipped, up: up, unsent: unsent, result: result)
            }
        }

        private func send(_ target: ProbeTarget, flipped: Bool, up: Bool, unsent: Bool, result: ProbeResult) {
            let reason: String
            if !flipped {
                reason = "state sent again: the transition buffer was full"
            } else if case .failure(let why) = result {
                reason = "\(target.check.timing.fall) checks in a row failed, last: \(why)"
            } else {
                reason = "\(target.check.timing.rise) checks in a row passed"
            }
            if flipped {
                logger.notice(
                    "health check \(up ? "up" : "down")",
                    metadata: ["target": "\(target)", "reason": "\(reason)"])
            }
            let sent: Bool
            switch continuation.yield(Transition(target: target, up: up, reason: reason)) {
            case .enqueued: sent = true
            case .dropped: sent = false
            case .terminated: return
            @unknown default: sent = false
            }
            state.withLockedValue { s in
                guard let id = s.targets[target] else { return }
                s.shared.modify(id) { shared in
                    guard let i = shared.subscribers.firstIndex(where: { $0.target == target }) else { return }
                    shared.subscribers[i].unsent = !sent
                }
            }
            if !sent && !unsent {
                logger.error(
                    "health transition buffer full: the controller is behind; sending again after the next check",
                    metadata: ["target": "\(target)", "up": "\(up)"])
            }
        }
    }
}

/// Values by id, in an array: a lookup is an index, without hashing (the
/// checker finds a result's probe this way). An id is the entry's index and
/// a generation, so an id removed and its index used again never names the
/// new value: whatever still holds the old id finds nothing.
struct GenerationTable<Value> {
    private var generations: [UInt32] = []
    private var slots: [Value?] = []
    private var free: [Int] = []

    /// The index the next `insert` uses.
    var nextIndex: Int { free.last ?? slots.count }

    var values: some Sequence<Value> { slots.lazy.compactMap { $0 } }

    mutating func insert(_ value: Value) -> UInt64 {
        let index = free.popLast() ?? slots.count
        if index == slots.count {
            slots.append(nil)
            generations.append(0)
        }
        generations[index] &+= 1
        slots[index] = value
        return UInt64(generations[index]) << 32 | UInt64(index)
    }

    private func index(_ id: UInt64) -> Int? {
        let index = Int(id & 0xffff_ffff)
        guard index < slots.count, generations[index] == UInt32(truncatingIfNeeded: id >> 32), slots[index] != nil
        else { return nil }
        return index
    }

    /// Setting nil removes the value and frees its index.
    subscript(id: UInt64) -> Value? {
        get { index(id).flatMap { slots[$0] } }
        set {
            guard let index = index(id) else { return }
            slots[index] = newValue
            if newValue == nil { free.append(index) }
        }
    }

    /// Reads the value of `id`, if it is still there, without a copy.
    func read(_ id: UInt64, _ body: (borrowing Value) -> Void) {
        guard let index = index(id) else { return }
        body(slots[index]!)
    }

    /// Changes the value of `id`, if it is still there, in place.
    mutating func modify(_ id: UInt64, _ body: (inout Value) -> Void) {
        guard let index = index(id) else { return }
        body(&slots[index]!)
    }
}

extension GenerationTable: Sendable where Value: Sendable {}
