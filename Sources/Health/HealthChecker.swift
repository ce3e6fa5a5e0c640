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

/// Runs every probe on its own schedule (interval with ±10 % jitter, a
/// random first delay so checks do not fire in lockstep), counts results
/// with `RiseFall`, and reports each up/down transition on `transitions`,
/// in the order they happened.
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

    private let group: any EventLoopGroup
    private let prober: Prober
    private let logger: Logger
    private let state = NIOLockedValueBox(State())

    private struct State {
        var probes: [ProbeTarget: ProbeStatus] = [:]
        var generation: [ProbeTarget: UInt64] = [:]
        var nextGeneration: UInt64 = 0
        /// Targets whose last transition did not fit in the buffer.
        var unsent: Set<ProbeTarget> = []
        var stopped = false
    }

    /// `buffer`: transitions held for a slow consumer.
    public init(group: any EventLoopGroup, logger: Logger, buffer: Int = 4096) throws {
        self.group = group
        self.prober = try Prober(group: group)
        self.logger = logger
        (transitions, continuation) = AsyncStream.makeStream(
            of: Transition.self,
            bufferingPolicy: .bufferingOldest(max(1, buffer)))
    }

    /// Probes exactly `targets` from now on. A target already running keeps
    /// its counters; a new one starts in the given state (true = up).
    public func update(_ targets: [ProbeTarget: Bool]) {
        let started: [(ProbeTarget, UInt64)] = state.withLockedValue { s in
            guard !s.stopped else { return [] }
            for gone in s.probes.keys where targets[gone] == nil {
                s.probes[gone] = nil
                s.generation[gone] = nil
                s.unsent.remove(gone)
            }
            var new: [(ProbeTarget, UInt64)] = []
            for (target, up) in targets where s.probes[target] == nil && target.check.kind != .none {
                s.nextGeneration += 1
                s.probes[target] = ProbeStatus(
                    state: RiseFall(
                        up: up, rise: target.check.timing.rise,
                        fall: target.check.timing.fall))
                s.generation[target] = s.nextGeneration
                new.append((target, s.nextGeneration))
            }
            return new
        }
        for (target, generation) in started {
            let interval = Int64(clamping: target.check.timing.intervalNs)
            schedule(
                target, generation: generation, on: group.next(),
                after: .nanoseconds(Int64.random(in: 0...max(1, interval))))
        }
    }

    public func snapshot() -> [ProbeTarget: ProbeStatus] { state.withLockedValue { $0.probes } }

    /// Stops every probe and ends `transitions` (after what it holds).
    public func stop() {
        state.withLockedValue {
            $0.stopped = true; $0.probes = [:]; $0.generation = [:]; $0.unsent = []
        }
        continuation.finish()
    }

    private func schedule(_ target: ProbeTarget, generation: UInt64, on loop: any EventLoop, after delay: TimeAmount) {
        loop.scheduleTask(in: delay) { [self] in
            guard isCurrent(target, generation) else { return }
            prober.probe(target, on: loop).whenSuccess { [self] result in
                record(target, generation: generation, result: result)
                let interval = Double(target.check.timing.intervalNs)
                let next = Int64(interval * Double.random(in: 0.9...1.1))
                schedule(target, generation: generation, on: loop, after: .nanoseconds(next))
            }
        }
    }

    private func isCurrent(_ target: ProbeTarget, _ generation: UInt64) -> Bool {
        state.withLockedValue { !$0.stopped && $0.generation[target] == generation }
    }

    /// Counts one result. Runs on the target's event loop, one result at a
    /// time per target, so a target's transitions enter the stream in order.
    private func record(_ target: ProbeTarget, generation: UInt64, result: ProbeResult) {
        let counted: (flipped: Bool, up: Bool, unsent: Bool)? = state.withLockedValue { s in
            guard s.generation[target] == generation, var status = s.probes[target] else { return nil }
            status.checks += 1
            if !result.ok { status.failures += 1 }
            status.last = result
            let flipped = status.state.record(result.ok)
            if flipped { status.transitions += 1 }
            s.probes[target] = status
            return (flipped, status.state.up, s.unsent.contains(target))
        }
        guard case let (flipped, up, unsent)? = counted, flipped || unsent else { return }
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
            guard s.generation[target] == generation else { return }
            if sent { s.unsent.remove(target) } else { s.unsent.insert(target) }
        }
        if !sent && !unsent {
            logger.error(
                "health transition buffer full: the controller is behind; sending again after the next check",
                metadata: ["target": "\(target)", "up": "\(up)"])
        }
    }
}
