import Control
import Logging
import Model
import Synchronization

/// The node's VIP announcements: the facts `Announcement.decide` reads,
/// kept as they change, and the announce table made to say the verdicts
/// after each change (`Announcer`). The controller registers it as a
/// commit observer (the usable reals come from each model the dataplane
/// took) and tells it of the other facts; AnnounceWatch reconciles it
/// periodically, which restores a route someone deleted and sees XDP
/// detached behind Tandem's back. Calls come from the controller's actor
/// and the watch; a lock keeps one reconcile at a time.
public final class NodeAnnouncer: CommitObserver {
    private struct State {
        var announcer: Announcer
        var facts: Announcement.Facts
        /// No model was committed yet: with no VIP known, a reconcile
        /// would delete every route of Tandem's in the table.
        var committed = false
    }

    private let state: Mutex<State>
    private let interface: String
    private let routing: any Routing
    /// Whether XDP runs on the interface, asked at each reconcile.
    private let attached: @Sendable () -> Bool
    private let logger: Logger

    /// `adopted`: XDP was taken over from pins (routes of the previous run
    /// are kept while starting); `drained`: as the pins say.
    public init(
        table: UInt32?, interface: String, routing: any Routing = KernelRouting(),
        attached: @escaping @Sendable () -> Bool, adopted: Bool, drained: Bool, logger: Logger
    ) {
        self.interface = interface
        self.routing = routing
        self.attached = attached
        self.logger = logger
        let facts = Announcement.Facts(
            table: table != nil, attached: false, firstChecksDone: false, drained: drained, adopted: adopted,
            usable: [:])
        state = Mutex(
            State(
                announcer: Announcer(table: table, interface: interface, routing: routing, logger: logger),
                facts: facts))
    }

    /// Deletes every route of Tandem's from `table`: one a previous run
    /// announced into, which the config no longer names.
    public static func withdrawAll(
        table: UInt32, interface: String, routing: any Routing = KernelRouting(), reason: String, logger: Logger
    ) {
        var previous = Announcer(table: table, interface: interface, routing: routing, logger: logger)
        previous.withdrawAll(reason: reason)
    }

    public func committed(_ commit: Committed) {
        let usable = Announcement.usable(commit.model)
        change {
            $0.facts.usable = usable
            $0.committed = true
        }
    }

    /// Brings the table in line with the facts as they are.
    public func reconcile() { change { _ in } }

    /// The first round of health checks is done: VIPs may be announced.
    public func firstChecksDone() {
        change { $0.facts.firstChecksDone = true }
    }

    /// Record sync starts (`false`: VIPs wait for the peers' tables) or
    /// its pull is over (`true`).
    public func setPullDone(_ done: Bool) {
        change { $0.facts.pullDone = done }
    }

    /// `tandem node drain` (true) or `resume`; returns the VIPs announced
    /// before the change.
    @discardableResult
    public func setDrained(_ drained: Bool) -> Set<IPAddress> {
        state.withLock { state in
            let before = state.announcer.announced
            state.facts.drained = drained
            reconcile(&state)
            return before
        }
    }

    /// A reload changed `announce`: the routes leave the old table and go
    /// into the new one (none when `announce` was removed).
    public func move(to table: UInt32?) {
        state.withLock { state in
            state.announcer.withdrawAll(
                reason: table.map { "the announce table is now \($0)" } ?? "announce is no longer configured")
            state.announcer = Announcer(table: table, interface: interface, routing: routing, logger: logger)
            state.facts.table = table != nil
            reconcile(&state)
        }
    }

    /// The table written, nil when none is configured.
    public var table: UInt32? { state.withLock { $0.announcer.table?.id } }
    /// VIPs whose route is in the table, as of the last reconcile.
    public var announced: Set<IPAddress> { state.withLock { $0.announcer.announced } }
    /// Every VIP decided on, in address order.
    public var vips: [IPAddress] { state.withLock { $0.announcer.verdicts.keys.sorted() } }

    /// Whether `vip` is announced, and why not when it is not.
    public func report(_ vip: IPAddress) -> (announced: Bool, reason: String?) {
        state.withLock { $0.announcer.report(vip) }
    }

    private func change(_ body: (inout State) -> Void) {
        state.withLock { state in
            body(&state)
            reconcile(&state)
        }
    }

    private func reconcile(_ state: inout State) {
        guard state.committed else { return }
        state.facts.attached = attached()
        state.announcer.reconcile(Announcement.decide(state.facts))
    }
}
