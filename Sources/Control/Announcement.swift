import Model

/// Whether each VIP is announced (docs/design/several-nodes.md): a route in the node's announce
/// table that the routing daemon carries to the router. Decided here from
/// plain facts, so the rules read, and are tested, in one place; the
/// controller's announcer writes the outcome.
public enum Announcement {
    /// Why a VIP is not announced.
    public enum Withheld: String, Sendable, Codable, Equatable {
        case noTable = "no announce table configured"
        case notAttached = "XDP not attached"
        case draining = "draining (tandem node drain)"
        case starting = "starting: first checks not done"
        case pulling = "starting: pulling the peers' records"
        case noUsableReal = "no usable real"
    }

    public enum Verdict: Sendable, Equatable {
        /// The route must be in the table.
        case announce
        /// The route must not be in the table.
        case withdraw(Withheld)
        /// Leave it as it is: a route the previous run left stays (its
        /// forwarding never stopped), none is added.
        case keep(Withheld)
    }

    /// The facts the rules read.
    public struct Facts: Sendable, Equatable {
        /// `announce: { table: N }` is configured.
        public var table: Bool
        /// The XDP program runs on the interface.
        public var attached: Bool
        /// Every health check ran once since the start.
        public var firstChecksDone: Bool
        /// `tandem node drain`, until `tandem node resume`.
        public var drained: Bool
        /// XDP was adopted from pins, forwarding since a previous run.
        public var adopted: Bool
        /// VIP -> whether some service of it has a usable real.
        public var usable: [IPAddress: Bool]
        /// Record sync took the peers' tables, or gave up (timeout, no
        /// peer reachable); true without `sync`.
        public var pullDone: Bool

        public init(
            table: Bool, attached: Bool, firstChecksDone: Bool, drained: Bool, adopted: Bool = false,
            usable: [IPAddress: Bool], pullDone: Bool = true
        ) {
            self.pullDone = pullDone
            self.table = table
            self.attached = attached
            self.firstChecksDone = firstChecksDone
            self.drained = drained
            self.adopted = adopted
            self.usable = usable
        }
    }

    /// The verdict for every VIP of `facts.usable`. Announced only when
    /// XDP is attached, the first checks are done, the node is not drained
    /// and a service of the VIP has a usable real. While starting on
    /// adopted pins a route left by the previous run is kept (withdrawing
    /// it would move the node's flows for nothing), unless the VIP has no
    /// usable real even by the pinned states. With record sync, a node
    /// also waits for the peers' tables (or for the pull to give up), so
    /// it takes no client it would place differently from its peers.
    public static func decide(_ facts: Facts) -> [IPAddress: Verdict] {
        facts.usable.mapValues { usable -> Verdict in
            if !facts.table { return .withdraw(.noTable) }
            if !facts.attached { return .withdraw(.notAttached) }
            if facts.drained { return .withdraw(.draining) }
            if !facts.firstChecksDone || !facts.pullDone {
                let why: Withheld = facts.firstChecksDone ? .pulling : .starting
                if facts.adopted && usable { return .keep(why) }
                return .withdraw(usable || !facts.adopted ? why : .noUsableReal)
            }
            return usable ? .announce : .withdraw(.noUsableReal)
        }
    }

    /// VIP -> whether some service of it has a real the dataplane
    /// schedules: state up and weight above 0 (healthy, enabled, not
    /// draining, reachable).
    public static func usable(_ model: DataplaneModel) -> [IPAddress: Bool] {
        var usable: [IPAddress: Bool] = [:]
        for service in model.services {
            let some = service.backends.contains { $0.state == .up && $0.weight > 0 }
            usable[service.vip] = (usable[service.vip] ?? false) || some
        }
        return usable
    }
}
