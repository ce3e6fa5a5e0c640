import Control
import Logging
import Model

/// Keeps the announce table in step with `Announcement.decide`: one
/// route per announced VIP (`VIP/32` or `/128 dev <interface> proto 250`),
/// none for the others, each change logged with its reason. Routes of
/// other protocols in the table are never touched. Held by
/// `NodeAnnouncer`, under its lock.
struct Announcer {
    /// Nil: no `announce` in the config; nothing is written.
    var table: (any AnnounceTable)?
    let interface: String
    let routing: any Routing
    let logger: Logger
    /// VIPs whose route is in the table, as of the last reconcile.
    private(set) var announced: Set<IPAddress> = []
    /// The verdicts of the last reconcile, for status.
    private(set) var verdicts: [IPAddress: Announcement.Verdict] = [:]
    /// Why an announced VIP's route could not be written (logged once).
    private(set) var failures: [IPAddress: String] = [:]
    private var listFailure: String?

    init(table: UInt32?, interface: String, routing: any Routing = KernelRouting(), logger: Logger) {
        self.table = table.map { routing.table($0) }
        self.interface = interface
        self.routing = routing
        self.logger = logger
    }

    /// Makes the table say what `next` says.
    mutating func reconcile(_ next: [IPAddress: Announcement.Verdict]) {
        let previous = verdicts
        verdicts = next
        guard let table else {
            announced = []
            return
        }
        let present: [IPAddress: RouteTable.Route]
        do {
            present = Dictionary(
                try table.routes().filter(\.isTandems).map { ($0.destination, $0) }, uniquingKeysWith: { a, _ in a })
            listFailure = nil
        } catch {
            if listFailure != "\(error)" {
                logger.error("cannot read the announce table", metadata: ["table": "\(table.id)", "error": "\(error)"])
            }
            listFailure = "\(error)"
            return
        }
        let index = routing.interfaceIndex(interface)
        var now = Set(present.keys)
        for (vip, verdict) in next.sorted(by: { $0.key < $1.key }) {
            switch verdict {
            case .announce:
                if let route = present[vip], route.interfaceIndex == index { continue }
                guard let index else {
                    fail(vip, "interface \(interface) is gone (see 'ip link')")
                    continue
                }
                do {
                    // Tandem's route through another interface (the config's changed): replaced.
                    if present[vip] != nil { try table.delete(vip) }
                    try table.add(vip, interfaceIndex: index)
                    now.insert(vip)
                    failures[vip] = nil
                    logger.notice(
                        "VIP announced",
                        metadata: [
                            "vip": "\(vip)", "table": "\(table.id)", "interface": "\(interface)",
                            "reason":
                                "\(Self.announceReason(before: previous[vip], wasPresent: announced.contains(vip)))"
                        ])
                } catch {
                    fail(vip, "\(error)")
                }
            case .withdraw(let why):
                failures[vip] = nil
                guard present[vip] != nil else { continue }
                withdraw(vip, from: table, reason: why.rawValue, now: &now)
            case .keep:
                failures[vip] = nil
            }
        }
        for vip in present.keys.sorted() where next[vip] == nil {
            withdraw(vip, from: table, reason: "not a VIP of the config", now: &now)
        }
        announced = now
    }

    /// Deletes every route of Tandem's from the table (`announce` changed
    /// or removed by a reload); the table is forgotten.
    mutating func withdrawAll(reason: String) {
        guard let table else { return }
        do {
            for vip in try table.deleteAll() {
                logger.notice(
                    "VIP withdrawn", metadata: ["vip": "\(vip)", "table": "\(table.id)", "reason": "\(reason)"])
            }
        } catch {
            logger.error(
                "cannot withdraw the VIP routes", metadata: ["table": "\(table.id)", "error": "\(error)"])
        }
        announced = []
        failures = [:]
    }

    private mutating func withdraw(
        _ vip: IPAddress, from table: any AnnounceTable, reason: String, now: inout Set<IPAddress>
    ) {
        do {
            try table.delete(vip)
            now.remove(vip)
            logger.notice("VIP withdrawn", metadata: ["vip": "\(vip)", "table": "\(table.id)", "reason": "\(reason)"])
        } catch {
            logger.error(
                "cannot withdraw a VIP", metadata: ["vip": "\(vip)", "table": "\(table.id)", "error": "\(error)"])
        }
    }

    private mutating func fail(_ vip: IPAddress, _ why: String) {
        if failures[vip] != why {
            logger.error(
                "cannot announce a VIP",
                metadata: ["vip": "\(vip)", "table": "\(table.map { "\($0.id)" } ?? "-")", "error": "\(why)"])
        }
        failures[vip] = why
    }

    /// What changed to announce the VIP now.
    static func announceReason(before: Announcement.Verdict?, wasPresent: Bool) -> String {
        switch before {
        case .withdraw(.draining)?: "node resumed"
        case .withdraw(.noUsableReal)?: "a usable real again"
        case .withdraw(.starting)?, .keep?: "first checks done"
        case .withdraw(.notAttached)?: "XDP attached again"
        case .announce? where wasPresent: "its route was changed in the table; written again"
        case .announce?: "its route was missing from the table; written again"
        default: "XDP attached, first checks done, a usable real"
        }
    }

    /// Whether `vip` is announced, and why not when it is not.
    func report(_ vip: IPAddress) -> (announced: Bool, reason: String?) {
        let isAnnounced = announced.contains(vip)
        switch verdicts[vip] {
        case .announce?:
            return (isAnnounced, isAnnounced ? nil : failures[vip] ?? "not written yet")
        case .withdraw(let why)?:
            return (isAnnounced, why.rawValue + (isAnnounced ? "; its route could not be deleted" : ""))
        case .keep(let why)?:
            return (isAnnounced, why.rawValue + (isAnnounced ? " (route kept from the previous run)" : ""))
        case nil:
            return (isAnnounced, table == nil ? Announcement.Withheld.noTable.rawValue : "not decided yet")
        }
    }
}
