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
    private let state = NIOLockedValueBox(State())

    /// One probe and the targets it feeds.
    private struct Shared {
        var id: UInt64
        var loop: Int
        var targets: [ProbeTarget]
    }

    private struct State {
        var probes: [ProbeTarget: ProbeStatus] = [:]
        /// By probe key (`key(of:)`).
        var shared: [ProbeTarget: Shared] = [:]
        var keys: [UInt64: ProbeTarget] = [:]
        var nextID: UInt64 = 0
        var phases = Phases()
        /// Targets whose last transition did not fit in the buffer.
        var unsent: Set<ProbeTarget> = []
        var stopped = false
    }

    /// `buffer`: transitions held for a slow consumer. `loops`: threads
    /// running probes (one handles 10,000 checks a second; see
    /// BENCHMARKS.md). tls and https checks run on `group`.
    public init(group: any EventLoopGroup, logger: Logger, buffer: Int = 4096, loops: Int = 1) throws {
        let prober = try Prober(group: group)
        self.logger = logger
        (transitions, continuation) = AsyncStream.makeStream(
            of: Transition.self,
            bufferingPolicy: .bufferingOldest(max(1, buffer)))
        let external: CheckLoop.External = { target, done in
            prober.probe(target, on: group.next()).whenSuccess(done)
        }
        self.loops = try (0..<max(1, loops)).map { i in
            try CheckLoop(name: "tandem-checks-\(i)", logger: logger, external: external)
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
            for gone in s.probes.keys where targets[gone] == nil {
                s.probes[gone] = nil
                s.unsent.remove(gone)
                let key = Self.key(of: gone)
                guard var shared = s.shared[key] else { continue }
                shared.targets.removeAll { $0 == gone }
                if shared.targets.isEmpty {
                    removed[shared.loop].append(shared.id)
                    s.shared[key] = nil
                    s.keys[shared.id] = nil
                } else {
                    s.shared[key] = shared
                }
            }
            let now = monotonicNs()
            for (target, up) in targets where s.probes[target] == nil && target.check.kind != .none {
                s.probes[target] = ProbeStatus(
                    state: RiseFall(up: up, rise: target.check.timing.rise, fall: target.check.timing.fall))
                let key = Self.key(of: target)
                if s.shared[key] != nil {
                    s.shared[key]!.targets.append(target)
                    continue
                }
                s.nextID += 1
                let id = s.nextID
                let loop = Int(id % UInt64(loops.count))
                s.shared[key] = Shared(id: id, loop: loop, targets: [target])
                s.keys[id] = key
                let due = Phases.firstDue(
                    now: now, intervalNs: target.check.timing.intervalNs, phase: s.phases.next())
                added[loop].append(
                    CheckLoop.Spec(id: id, target: key, firstDue: due) { [weak self] result in
                        self?.record(id, result)
                    })
            }
            // Posted under the lock: a later update's commands come after.
            for (i, loop) in loops.enumerated() {
                if !removed[i].isEmpty { loop.remove(removed[i]) }
                if !added[i].isEmpty { loop.add(added[i]) }
            }
        }
    }

    public func snapshot() -> [ProbeTarget: ProbeStatus] { state.withLockedValue { $0.probes } }

    /// How the checks keep up with their schedule, over every loop.
    public func stats() -> CheckerStats {
        let now = monotonicNs()
        var stats = CheckerStats()
        for loop in loops {
            let p = loop.published.withLockedValue { $0 }
            stats.probes += p.probes
            stats.scheduledPerSecond += p.scheduledPerSecond
            stats.checksTotal += p.startedTotal
            stats.missedTotal += p.missedTotal
            stats.roundNs = max(stats.roundNs, p.roundNs)
            guard p.probes > 0 else { continue }
            if now >= p.latestEnd + 2 * p.roundNs {
                // The loop has not closed a round since: it is stuck.
                stats.latenessNs = max(stats.latenessNs, now - p.latestEnd - p.roundNs)
                stats.missed += 1
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
            $0.stopped = true; $0.probes = [:]; $0.shared = [:]; $0.keys = [:]; $0.unsent = []
        }
        for loop in loops { loop.stop() }
        continuation.finish()
    }

    /// Counts one result for every target of probe `id`. Runs on the
    /// probe's loop, one result at a time per probe, so a target's
    /// transitions enter the stream in order.
    private func record(_ id: UInt64, _ result: ProbeResult) {
        let counted: [(target: ProbeTarget, flipped: Bool, up: Bool, unsent: Bool)] = state.withLockedValue { s in
            guard let key = s.keys[id], let shared = s.shared[key] else { return [] }
            var counted: [(ProbeTarget, Bool, Bool, Bool)] = []
            for target in shared.targets {
                guard var status = s.probes[target] else { continue }
                status.checks += 1
                if !result.ok { status.failures += 1 }
                status.last = result
                let flipped = status.state.record(result.ok)
                if flipped { status.transitions += 1 }
                s.probes[target] = status
                let unsent = s.unsent.contains(target)
                if flipped || unsent { counted.append((target, flipped, status.state.up, unsent)) }
            }
            return counted
        }
        for (target, flipped, up, unsent) in counted {
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
            guard s.probes[target] != nil else { return }
            if sent { s.unsent.remove(target) } else { s.unsent.insert(target) }
        }
        if !sent && !unsent {
            logger.error(
                "health transition buffer full: the controller is behind; sending again after the next check",
                metadata: ["target": "\(target)", "up": "\(up)"])
        }
    }
}
