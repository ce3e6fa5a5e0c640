import Announce
import Configuration
import Control
import Dataplane
import Foundation
import Health
import Logging
import Model
import ReferenceDataplane
import Synchronization

@testable import Controller

/// A controller over stand-ins for the host: the dataplane in memory
/// (`ModelDataplane`), routing tables in memory, MACs from a list. Health
/// verdicts are handed to it directly, never probed, so nothing waits on
/// the clock; everything runs without root in milliseconds.
struct Harness {
    let controller: Controller
    let dataplane: ModelDataplane
    let routing: MemoryRouting
    let neighbours: ListedNeighbours
    let announcer: NodeAnnouncer
    let configPath: String
    let config: Config

    static let interface = "tdm-test0"

    /// Starts on `yaml` (written to a file of its own, for reloads), as
    /// `Startup` does: reals that do not answer ARP/NDP are out of service.
    /// `firstChecksDone`: the first round of checks is over.
    static func start(
        _ yaml: String, answering neighbours: ListedNeighbours = ListedNeighbours(), drained: Bool = false,
        firstChecksDone: Bool = true
    ) async throws -> Harness {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("tandem-controller-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent("tandem.yaml").path
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        let validated = try ConfigParser.loadValidated(path: path)
        var state = try ControlState(validated)
        let macs = try await neighbours.resolve(state.realAddresses)
        for address in state.realAddresses where macs[address] == nil { state.setReachable(address, false) }
        let dataplane = ModelDataplane()
        try dataplane.apply(state.model(macs: macs))
        try dataplane.setNodeState(NodeState(drained: drained, announceTable: validated.config.announce?.table))
        let routing = MemoryRouting(interfaces: [interface: 7])
        let announcer = NodeAnnouncer(
            table: validated.config.announce?.table, interface: validated.config.interface, routing: routing,
            attached: { true }, adopted: false, drained: drained, logger: Logger(label: "test"))
        let controller = Controller(
            state: state, macs: macs, dataplane: dataplane, neighbours: neighbours, announcer: announcer,
            configPath: path, logger: Logger(label: "test"))
        if firstChecksDone { await controller.firstRoundDone() }
        return Harness(
            controller: controller, dataplane: dataplane, routing: routing, neighbours: neighbours,
            announcer: announcer, configPath: path, config: validated.config)
    }

    /// The probe of `service`'s check on `real` says `up`.
    func check(_ service: String, _ real: String, up: Bool) async {
        let s = config.services.first { $0.name == service }!
        let r = s.reals.first { $0.address == IPAddress(real)! }!
        let target = ProbeTarget(real: r.address, port: r.port, check: s.check)
        await controller.healthChanged(.init(target: target, up: up, reason: up ? "200 OK" : "connection refused"))
    }

    /// Writes `yaml` over the config file, as an operator before `tandem reload`.
    func edit(_ yaml: String) throws { try yaml.write(toFile: configPath, atomically: true, encoding: .utf8) }

    /// The state of `real` in each service that has it, by service name.
    func states(of real: String) async -> [String: DataplaneModel.BackendState] {
        let state = await controller.state
        let byID = dataplane.backendStates(of: IPAddress(real)!)
        var out: [String: DataplaneModel.BackendState] = [:]
        for s in state.config.services { if let id = state.serviceID(s.name), let b = byID[id] { out[s.name] = b } }
        return out
    }

    /// VIPs with a route of Tandem's in `table`.
    func announced(in table: UInt32) -> Set<IPAddress> {
        Set(routing.memoryTable(table).snapshot().filter(\.isTandems).map(\.destination))
    }
}

/// MACs of the reals that answer ARP/NDP; the others do not (yet).
final class ListedNeighbours: NeighbourResolver {
    private let answering = Mutex<[IPAddress: MACAddress]?>(nil)

    /// Nil: every address answers, with a MAC made from its last byte.
    init(_ answering: [String: String]? = nil) {
        self.answering.withLock {
            $0 = answering.map { list in
                Dictionary(uniqueKeysWithValues: list.map { (IPAddress($0.key)!, MACAddress($0.value)!) })
            }
        }
    }

    func answer(_ address: String, _ mac: String) {
        answering.withLock { $0?[IPAddress(address)!] = MACAddress(mac)! }
    }

    func resolve(_ addresses: Set<IPAddress>, timeout: Duration) async throws -> [IPAddress: MACAddress] {
        answering.withLock { list in
            var found: [IPAddress: MACAddress] = [:]
            for address in addresses {
                if let list {
                    found[address] = list[address]
                } else {
                    found[address] = MACAddress(bytes: [2, 0, 0, 0, 0, address.bytes.last!])
                }
            }
            return found
        }
    }
}

/// Routing tables in memory, keeping what the kernel would: one route per
/// prefix, whoever's.
final class MemoryRouting: Routing {
    private let tables = Mutex<[UInt32: MemoryTable]>([:])
    private let interfaces: [String: UInt32]

    init(interfaces: [String: UInt32]) { self.interfaces = interfaces }

    func table(_ id: UInt32) -> any AnnounceTable { memoryTable(id) }

    func memoryTable(_ id: UInt32) -> MemoryTable {
        tables.withLock { tables in
            if let table = tables[id] { return table }
            let table = MemoryTable(id: id)
            tables[id] = table
            return table
        }
    }

    func interfaceIndex(_ name: String) -> UInt32? { interfaces[name] }
}

final class MemoryTable: AnnounceTable {
    let id: UInt32
    private let entries = Mutex<[IPAddress: RouteTable.Route]>([:])

    init(id: UInt32) { self.id = id }

    func snapshot() -> [RouteTable.Route] { entries.withLock { Array($0.values) } }

    /// A route someone else put there (`ip route add ... proto static`).
    func addForeign(_ destination: IPAddress, proto: UInt8 = 4) {
        entries.withLock {
            $0[destination] = .init(
                destination: destination, prefixLength: destination.maxPrefix, interfaceIndex: 9, proto: proto)
        }
    }

    func routes() throws -> [RouteTable.Route] { snapshot() }

    func add(_ vip: IPAddress, interfaceIndex: UInt32) throws {
        try entries.withLock {
            if $0[vip] != nil { throw ControlError("table \(id) already has a route to \(vip)") }
            $0[vip] = .init(
                destination: vip, prefixLength: vip.maxPrefix, interfaceIndex: interfaceIndex,
                proto: RouteTable.tandemProtocol)
        }
    }

    @discardableResult
    func delete(_ vip: IPAddress) throws -> Bool {
        entries.withLock {
            guard $0[vip]?.proto == RouteTable.tandemProtocol else { return false }
            $0[vip] = nil
            return true
        }
    }
}
