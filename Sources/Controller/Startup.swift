import Announce
import BPF
import Configuration
import Control
import Dataplane
import Foundation
import Glibc
import Logging
import Model
import NIOCore
import Prometheus

/// The start of `tandem serve` on this host: loads (or adopts) the
/// dataplane under the config's pin directory, writes the config into it
/// and makes sure XDP runs on the interface, then hands it all to a
/// `Controller`. Nothing on the NIC changes unless every step before
/// attaching worked.
enum Startup {
    static func controller(
        _ validated: ValidatedConfig, configPath: String, logger: Logger,
        group: any EventLoopGroup, registry: PrometheusCollectorRegistry = .init()
    ) async throws -> Controller {
        let config = validated.config
        _ = try Interface.index(config.interface)
        try BPFFS.prepare(directory: config.pinDirectory)
        let dataplane = try Dataplane(
            pinRoot: config.pinDirectory, tables: config.tables,
            verifierLogPath: "/tmp/tandem-verifier.log")
        let pinned = dataplane.pinnedState()
        var state = try ControlState(validated, adopting: pinned)
        let neighbours = Neighbours(interface: config.interface, group: group)
        // A real that does not answer ARP/NDP does not stop the start: it
        // keeps the MAC the pinned maps have for it (a restart during its
        // outage), or is out of service until NeighbourWatch finds it.
        var macs: [IPAddress: MACAddress] = [:]
        for real in pinned.reals where real.active { if let mac = real.mac { macs[real.address] = mac } }
        macs.merge(try await neighbours.resolve(state.realAddresses)) { _, resolved in resolved }
        for address in state.realAddresses where macs[address] == nil {
            state.setReachable(address, false)
            logger.warning(
                "real unreachable",
                metadata: [
                    "real": "\(address)",
                    "reason": "no answer to ARP/NDP on \(config.interface); out of service until it answers"
                ])
        }
        try dataplane.apply(state.model(macs: macs))
        let (link, adopted) = try attach(
            dataplane, config: config, pinnedServices: pinned.services.count, logger: logger)

        // Routes a previous run put in a table the config no longer names go.
        var nodeState = dataplane.nodeState
        let table = config.announce?.table
        if let old = nodeState.announceTable, old != table {
            NodeAnnouncer.withdrawAll(
                table: old, interface: config.interface,
                reason: table.map { "the announce table is now \($0)" } ?? "announce is no longer configured",
                logger: logger)
        }
        nodeState.announceTable = table
        try dataplane.setNodeState(nodeState)
        if nodeState.drained {
            logger.notice(
                "node drained: no VIP is announced until 'tandem node resume'", metadata: ["node": "\(config.nodeName)"]
            )
        }
        let attachment = Attachment(link: link)
        let announcer = NodeAnnouncer(
            table: table, interface: config.interface, attached: { attachment.attached }, adopted: adopted,
            drained: nodeState.drained, logger: logger)
        return Controller(
            state: state, macs: macs, dataplane: dataplane, neighbours: neighbours, announcer: announcer,
            configPath: configPath, logger: logger, registry: registry)
    }

    /// Takes over the pinned XDP link when it is on the configured
    /// interface (a previous `tandem serve` left forwarding running),
    /// else attaches and pins a new one. True when adopted.
    private static func attach(
        _ dataplane: Dataplane, config: Config, pinnedServices: Int, logger: Logger
    ) throws -> (XDPLink, adopted: Bool) {
        let linkPath = config.pinDirectory + "/link"
        let ifindex = try Interface.index(config.interface)
        if FileManager.default.fileExists(atPath: linkPath) {
            let pinnedLink = try XDPLink.pinned(at: linkPath, interface: config.interface)
            if pinnedLink.attachedIndex == ifindex {
                try pinnedLink.update(to: dataplane.program)
                let fill = dataplane.tableFill()
                logger.info(
                    "adopted pinned dataplane",
                    metadata: [
                        "pins": "\(config.pinDirectory)", "services": "\(pinnedServices)",
                        "records": "\(fill.records)", "flows": "\(fill.flows)"
                    ])
                return (pinnedLink, true)
            }
            // Its interface is gone or is another one: that link forwards nothing here.
            logger.warning(
                "pinned XDP link is not on the configured interface; attaching anew",
                metadata: ["link": "\(linkPath)", "interface": "\(config.interface)"])
            try? pinnedLink.detach()
            unlink(linkPath)
        }
        let link = try XDPLink.attach(dataplane.program, interface: config.interface, mode: config.xdpMode)
        try link.pin(at: linkPath)
        logger.info(
            "attached XDP", metadata: ["interface": "\(config.interface)", "mode": "\(config.xdpMode.rawValue)"])
        return (link, false)
    }
}

/// The XDP link, kept for as long as the announcer asks whether XDP still
/// runs on the interface (a read of the link's info, safe from any thread).
private final class Attachment: @unchecked Sendable {
    let link: XDPLink
    init(link: XDPLink) { self.link = link }
    var attached: Bool { link.attachedIndex != nil }
}
