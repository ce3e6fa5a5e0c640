import BPF
import Model
import Foundation
import TandemABI

/// The loaded XDP program and its pinned maps, programmed from a
/// `DataplaneModel`. Opening it reuses maps already pinned under `pinRoot`,
/// so flows and records survive a controller restart.
///
/// Sendable so reads (counters, records) can run off the controller's
/// actor: `apply` and the other writers are called from one task at a
/// time (the controller's actor), and every read goes to the kernel, whose
/// map operations are atomic per entry.
public final class Dataplane: @unchecked Sendable {
    public static let defaultPinRoot = "/sys/fs/bpf/tandem"
    public static let ringSize = Int(TANDEM_RING_SIZE)
    public static let maxServices = Int(TANDEM_MAX_SERVICES)
    public static let maxReals = Int(TANDEM_MAX_REALS)

    public let pinRoot: String
    public let program: BPFProgram
    let object: BPFObject
    let services: BPFMap<tandem_service_key, tandem_service>
    let vipAddrs: BPFMap<tandem_vip_key, UInt32>
    let reals: BPFMap<UInt32, tandem_real>
    let backends: BPFMap<tandem_backend_key, tandem_backend>
    let rings: BPFMap<UInt32, tandem_ring>
    let flows: BPFMap<tandem_flow_key, tandem_flow>
    let persist: BPFMap<tandem_persist_key, tandem_persist>
    let svcStats: BPFMap<UInt32, tandem_counters>
    let backendStats: BPFMap<UInt32, tandem_counters>
    let pktStats: BPFMap<UInt32, UInt64>
    let wrrCursor: BPFMap<UInt32, UInt32>
    let synChoices: BPFMap<tandem_flow_key, tandem_syn_choice>
    let tableStats: BPFMap<UInt32, UInt64>
    let fillCounts: BPFMap<UInt32, tandem_table_fill>
    let svcGens: BPFMap<UInt32, UInt32>
    let portFilter: BPFMap<UInt32, tandem_port_filter>
    let node: BPFMap<UInt32, tandem_node>
    let recordEventsLost: BPFMap<UInt32, UInt64>

    /// What the maps hold, as last written by `apply`.
    public private(set) var applied: DataplaneModel?
    /// Counts `apply` calls: what is derived from `applied` is stale when
    /// this moved.
    public private(set) var appliedVersion: UInt64 = 0
    /// Live ring per service id: which of its two slots, and its contents.
    private var liveRings: [UInt32: (id: UInt32, reals: [UInt32])] = [:]
    /// Digest of each service's live ring, by service id (see `RingDigest`).
    /// In memory, like `applied`: read it from the task that calls `apply`.
    public private(set) var ringDigests: [UInt32: RingDigest] = [:]
    /// backend_stats index of each (service, real) pair written; nil until
    /// the first `apply`, which adopts the indices the pinned map holds.
    private var backendIndex: [tandem_backend_key: UInt32]?
    /// Where the search for a free index starts: indices are handed out
    /// in turn, so a freed one is reused last (a flow of the pair that
    /// gave it up may still count into it until it ends).
    private var nextBackendIndex: UInt32 = 0

    /// Loads the program, creating or adopting the maps pinned under
    /// `pinRoot`; new flow and record tables get `tables`' sizes, pinned
    /// ones must have them.
    public init(
        pinRoot: String = defaultPinRoot, tables: TableSizes = .default,
        verifierLogPath: String = "/tmp/tandem-verifier.log"
    ) throws {
        self.pinRoot = pinRoot
        object = try BPFObject(bytes: Objects.tandem, name: "tandem", pinRoot: pinRoot)
        try Self.checkPinnedLayouts(pinRoot)
        try Self.checkPinnedSizes(pinRoot, tables)
        try object.setMaxEntries("flows", UInt32(tables.flows))
        try object.setMaxEntries("persist", UInt32(tables.records))
        try object.load(verifierLogPath: verifierLogPath)
        program = try object.program("tandem_xdp")
        services = try object.map("services")
        vipAddrs = try object.map("vip_addrs")
        reals = try object.map("reals")
        backends = try object.map("backends")
        rings = try object.map("rings")
        flows = try object.map("flows")
        persist = try object.map("persist")
        svcStats = try object.map("svc_stats")
        backendStats = try object.map("backend_stats")
        pktStats = try object.map("pkt_stats")
        wrrCursor = try object.map("wrr_cursor")
        svcGens = try object.map("svc_gens")
        portFilter = try object.map("port_filter")
        node = try object.map("node")
        synChoices = try object.map("syn_choices")
        tableStats = try object.map("table_stats")
        fillCounts = try object.map("table_fill")
        recordEventsLost = try object.map("record_events_lost")
        try writeTableCapacities()
    }

    /// Another object sharing this dataplane's pinned maps (benchmark
    /// entry points), its tables sized as the pins are, then loaded.
    public func companion(bytes: [UInt8], name: String) throws -> BPFObject {
        let other = try BPFObject(bytes: bytes, name: name, pinRoot: pinRoot)
        try other.setMaxEntries("flows", flows.maxEntries)
        try other.setMaxEntries("persist", persist.maxEntries)
        try other.load()
        return other
    }

    /// Each CPU's copy of the table capacities, which tell the program
    /// when an insert lands in a full table.
    private func writeTableCapacities() throws {
        let cpus = BPFMap<UInt32, tandem_table_fill>.possibleCPUs
        for (table, map) in [(TANDEM_TABLE_FLOWS, flows.maxEntries), (TANDEM_TABLE_RECORDS, persist.maxEntries)] {
            var fill = fillCounts.lookupPerCPU(table.rawValue) ?? []
            if fill.count != cpus { fill = Array(repeating: tandem_table_fill(), count: cpus) }
            for i in fill.indices { fill[i].capacity = map }
            try fillCounts.updatePerCPU(table.rawValue, fill)
        }
    }

    /// The sizes of the flow and record tables as created (pinned).
    public var tableSizes: TableSizes { TableSizes(flows: Int(flows.maxEntries), records: Int(persist.maxEntries)) }

    /// Pinned tables keep the size they were made with: a config that
    /// asks for another is refused (libbpf would say only EINVAL).
    static func checkPinnedSizes(_ pinRoot: String, _ tables: TableSizes) throws {
        for (name, key, wanted) in [
            ("flows", "tables.flows", tables.flows), ("persist", "tables.records", tables.records)
        ] {
            let path = pinRoot + "/" + name
            guard FileManager.default.fileExists(atPath: path) else { continue }
            let pinned = try BPFMap<UInt8, UInt8>.pinnedInfo(at: path)
            if Int(pinned.maxEntries) != wanted {
                throw DataplaneError(
                    description:
                        "the pinned \(name) table at \(path) has \(pinned.maxEntries) entries, the config's \(key) "
                        + "asks for \(wanted): set \(key) to \(pinned.maxEntries), or run 'tandem down' first "
                        + "(drops every flow and record) to make the tables anew")
            }
        }
    }

    /// Removes every pin under `pinRoot`: maps and any pinned link or
    /// program go once nothing else holds them.
    public func removePins() {
        BPFFS.removeTree(pinRoot)
    }

    /// A map pinned by a build whose struct differs (the `services` value
    /// grew by the hash seed, for one) makes libbpf's load fail with a bare
    /// EINVAL; opened typed first, it names the map, the sizes and the fix.
    static func checkPinnedLayouts(_ pinRoot: String) throws {
        func check<Key: BitwiseCopyable, Value: BitwiseCopyable>(_ name: String, _: Key.Type, _: Value.Type) throws {
            let path = pinRoot + "/" + name
            guard FileManager.default.fileExists(atPath: path) else { return }
            _ = try BPFMap<Key, Value>.pinned(at: path)
        }
        try check("services", tandem_service_key.self, tandem_service.self)
        try check("vip_addrs", tandem_vip_key.self, UInt32.self)
        try check("reals", UInt32.self, tandem_real.self)
        try check("backends", tandem_backend_key.self, tandem_backend.self)
        try check("rings", UInt32.self, tandem_ring.self)
        try check("flows", tandem_flow_key.self, tandem_flow.self)
        try check("persist", tandem_persist_key.self, tandem_persist.self)
        try check("svc_stats", UInt32.self, tandem_counters.self)
        try check("backend_stats", UInt32.self, tandem_counters.self)
        try check("pkt_stats", UInt32.self, UInt64.self)
        try check("wrr_cursor", UInt32.self, UInt32.self)
        try check("svc_gens", UInt32.self, UInt32.self)
        try check("port_filter", UInt32.self, tandem_port_filter.self)
        try check("node", UInt32.self, tandem_node.self)
        try check("syn_choices", tandem_flow_key.self, tandem_syn_choice.self)
        try check("table_stats", UInt32.self, UInt64.self)
        try check("table_fill", UInt32.self, tandem_table_fill.self)
        try check("record_events_lost", UInt32.self, UInt64.self)
    }
}

// MARK: - The node's own state

extension Dataplane {
    /// Drained flag and announce table, as the pinned `node` map holds them.
    public var nodeState: NodeState { Self.nodeState(node.lookup(0) ?? tandem_node()) }

    public func setNodeState(_ state: NodeState) throws {
        try node.update(
            0,
            tandem_node(
                flags: state.drained ? TANDEM_NODE_DRAINED.rawValue : 0, announce_table: state.announceTable ?? 0))
    }

    /// The node state pinned under `pinRoot` without loading the program
    /// (`tandem down`); nil when there is no such map.
    public static func pinnedNodeState(pinRoot: String) -> NodeState? {
        guard let map = try? BPFMap<UInt32, tandem_node>.pinned(at: pinRoot + "/node"),
            let value = map.lookup(0)
        else { return nil }
        return nodeState(value)
    }

    static func nodeState(_ value: tandem_node) -> NodeState {
        NodeState(
            drained: value.flags & TANDEM_NODE_DRAINED.rawValue != 0,
            announceTable: value.announce_table == 0 ? nil : value.announce_table)
    }
}

// MARK: - Programming the maps

public struct DataplaneError: Error, CustomStringConvertible, Equatable {
    public var description: String

    public init(description: String) { self.description = description }
}

extension Dataplane {
    /// Makes the maps say what `model` says, touching only what differs.
    /// No packet sees a half-written service: a changed ring is written to
    /// the service's idle slot and the service entry is flipped to it last.
    public func apply(_ model: DataplaneModel) throws {
        try Self.validate(model)
        let old = applied
        let oldReals = Dictionary(uniqueKeysWithValues: (old?.reals ?? []).map { ($0.id, $0) })
        let oldServices = Dictionary(uniqueKeysWithValues: (old?.services ?? []).map { ($0.id, $0) })
        let newReals = Dictionary(uniqueKeysWithValues: model.reals.map { ($0.id, $0) })

        // Reals first, so that rings and records may point at them.
        for real in model.reals where oldReals[real.id] != real {
            try reals.update(real.id, tandem_real(real))
        }

        // Backends next: a persistence hit checks them.
        var indices = backendIndex ?? adoptBackendIndices()
        // The indices in use, made once per apply: made per new pair, it
        // made a first apply of 64,000 pairs quadratic.
        var taken = Set(indices.values)
        var backendWrites: [(tandem_backend_key, tandem_backend)] = []
        for service in model.services where oldServices[service.id]?.backends != service.backends {
            for b in service.backends {
                let key = tandem_backend_key(service: service.id, real: b.real)
                let index = try indices[key] ?? allocateBackendIndex(&taken)
                indices[key] = index
                backendWrites.append(
                    (key, tandem_backend(state: b.state.rawValue, weight: b.weight, index: index, pad: 0)))
            }
        }
        try backends.updateBatch(backendWrites)
        backendIndex = indices

        // Ports: old and new open while services change, then exactly new.
        let ports = Set(model.services.map(\.port))
        try writePortFilter(ports.union(old?.services.map(\.port) ?? []))

        // Rings and service entries.
        let addresses = model.realAddresses
        for service in model.services {
            let previous = oldServices[service.id]
            let members = service.backends.map(\.real) + (service.sorryReal.map { [$0] } ?? [])
            let realsChanged = members.contains { oldReals[$0] != newReals[$0] }
            if previous == service && !realsChanged { continue }
            let ring = model.ring(for: service, size: Self.ringSize, addresses: addresses)
            try write(service, ring: ring, replacing: previous)
            ringDigests[service.id] = model.ringDigest(for: service, ring: ring, addresses: addresses)
        }

        try prune(model: model, old: old, oldServices: oldServices, newReals: newReals)
        try writePortFilter(ports)
        applied = model
        appliedVersion &+= 1
    }

    /// The indices a previous controller gave (the pinned backends map):
    /// a restart keeps every pair's counters.
    private func adoptBackendIndices() -> [tandem_backend_key: UInt32] {
        Dictionary(backends.entries().map { ($0.0, $0.1.index) }, uniquingKeysWith: { a, _ in a })
    }

    /// A free backend_stats index (not in `taken`, which it joins), its
    /// counters zeroed (an earlier pair's counts must not show up under the
    /// new one).
    private func allocateBackendIndex(_ taken: inout Set<UInt32>) throws -> UInt32 {
        let limit = UInt32(TANDEM_MAX_BACKENDS)
        for step in 0..<limit {
            let candidate = (nextBackendIndex &+ step) % limit
            guard !taken.contains(candidate) else { continue }
            nextBackendIndex = (candidate + 1) % limit
            taken.insert(candidate)
            let cpus = BPFMap<UInt32, tandem_counters>.possibleCPUs
            try backendStats.updatePerCPU(candidate, Array(repeating: tandem_counters(), count: cpus))
            return candidate
        }
        throw DataplaneError(description: "more than \(limit) (service, real) pairs")
    }

    private func writePortFilter(_ ports: Set<UInt16>) throws {
        var filter = tandem_port_filter()
        withUnsafeMutableBytes(of: &filter.bits) { raw in
            let words = raw.bindMemory(to: UInt64.self)
            for port in ports { words[Int(port >> 6)] |= 1 << UInt64(port & 63) }
        }
        try portFilter.update(0, filter)
    }

    /// Retires every flow made for service `id`.
    private func bumpServiceGeneration(_ id: UInt32) throws {
        try svcGens.update(id, (svcGens.lookup(id) ?? 0) &+ 1)
    }

    private func write(
        _ service: DataplaneModel.Service, ring: [UInt32],
        replacing previous: DataplaneModel.Service?
    ) throws {
        let key = tandem_service_key(service)
        let existing = services.lookup(key)
        var live = liveRings[service.id]
        if live == nil, let existing, existing.id == service.id {
            // Adopting pinned state: the ring in use is the one the map names.
            let stored = rings.lookup(existing.ring_id)?.prefix(Int(existing.ring_len)) ?? []
            live = (existing.ring_id, stored)
        }
        var ringID = live?.id ?? service.id * 2
        // The previous ring places first ACKs whose SYN came before a change.
        var before: (id: UInt32, length: UInt32, changedNs: UInt64) = (0, 0, 0)
        if let existing, existing.id == service.id {
            before = (existing.prev_ring_id, existing.prev_ring_len, existing.ring_changed_ns)
        }
        if live?.reals != ring {
            if let live {
                ringID = live.id == service.id * 2 ? service.id * 2 + 1 : service.id * 2
                before = (live.id, UInt32(live.reals.count), KernelClock.monotonicNs())
            }
            try rings.update(ringID, tandem_ring(ring))
        }
        liveRings[service.id] = (ringID, ring)

        if existing == nil || existing?.id != service.id {
            // A new service (or a new VIP:port for this id) starts from zero
            // counters and cursor, and no flow of an earlier one matches it.
            try bumpServiceGeneration(service.id)
            let cpus = BPFMap<UInt32, tandem_counters>.possibleCPUs
            try svcStats.updatePerCPU(service.id, Array(repeating: tandem_counters(), count: cpus))
            try wrrCursor.updatePerCPU(service.id, Array(repeating: 0, count: cpus))
        }
        try vipAddrs.update(tandem_vip_key(service.vip), 1)
        var entry = tandem_service(service, ringID: ringID, ringLength: ring.count)
        entry.prev_ring_id = before.id
        entry.prev_ring_len = before.length
        entry.ring_changed_ns = before.changedNs
        try services.update(key, entry)
        if let previous, tandem_service_key(previous) != key {
            try services.delete(tandem_service_key(previous))
        }
    }

    /// Deletes what the model no longer has. After a restart (nothing
    /// applied yet by this process) the maps themselves are the reference.
    private func prune(
        model: DataplaneModel, old: DataplaneModel?,
        oldServices: [UInt32: DataplaneModel.Service],
        newReals: [UInt32: DataplaneModel.Real]
    ) throws {
        let wantedServices = Set(model.services.map { tandem_service_key($0) })
        let wantedBackends = Set(
            model.services.flatMap { s in
                s.backends.map { tandem_backend_key(service: s.id, real: $0.real) }
            })
        let wantedVIPs = Set(model.services.map { tandem_vip_key($0.vip) })
        let wantedIDs = Set(model.services.map(\.id))

        let serviceKeys: [tandem_service_key]
        let backendKeys: [tandem_backend_key]
        let vipKeys: [tandem_vip_key]
        var realIDs: [UInt32]
        if let old {
            serviceKeys = old.services.map { tandem_service_key($0) }
            backendKeys = old.services.flatMap { s in
                s.backends.map { tandem_backend_key(service: s.id, real: $0.real) }
            }
            vipKeys = old.services.map { tandem_vip_key($0.vip) }
            realIDs = old.reals.map(\.id)
        } else {
            serviceKeys = services.keys()
            backendKeys = backends.keys()
            vipKeys = vipAddrs.keys()
            realIDs = reals.entries().filter { $0.1.flags & UInt8(TANDEM_REAL_ACTIVE.rawValue) != 0 }.map(\.0)
        }
        for key in serviceKeys where !wantedServices.contains(key) {
            let id = services.lookup(key)?.id
            try services.delete(key)
            if let id, !wantedIDs.contains(id) { try bumpServiceGeneration(id) }
        }
        for key in backendKeys where !wantedBackends.contains(key) {
            try backends.delete(key)
            backendIndex?[key] = nil
        }
        for key in vipKeys where !wantedVIPs.contains(key) { try vipAddrs.delete(key) }
        for id in liveRings.keys where !wantedIDs.contains(id) { liveRings[id] = nil }
        for id in ringDigests.keys where !wantedIDs.contains(id) { ringDigests[id] = nil }
        realIDs.removeAll { newReals[$0] != nil }
        for id in realIDs {
            // Inactive: its flows and records stop matching at once.
            guard var real = reals.lookup(id) else { continue }
            real.flags = 0
            try reals.update(id, real)
        }
    }

    static func validate(_ model: DataplaneModel) throws {
        var problems: [String] = []
        var ids = Set<UInt32>(), keys = Set<tandem_service_key>(), realIDs = Set<UInt32>()
        let reals = Dictionary(model.reals.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for real in model.reals {
            if real.id == 0 || real.id >= TANDEM_MAX_REALS {
                problems.append("real id \(real.id) out of range 1..<\(TANDEM_MAX_REALS)")
            }
            if !realIDs.insert(real.id).inserted { problems.append("real id \(real.id) used twice") }
        }
        var backendCount = 0
        for s in model.services {
            if s.id >= TANDEM_MAX_SERVICES {
                problems.append("service id \(s.id) out of range 0..<\(TANDEM_MAX_SERVICES)")
            }
            if !ids.insert(s.id).inserted { problems.append("service id \(s.id) used twice") }
            if !keys.insert(tandem_service_key(s)).inserted {
                problems.append("service \(s.vip):\(s.port)/\(s.proto) defined twice")
            }
            if let p = s.persistence, p.netmask < 0 || p.netmask > s.vip.maxPrefix {
                problems.append("service \(s.id): netmask \(p.netmask) out of range 0...\(s.vip.maxPrefix)")
            }
            for b in s.backends + (s.sorryReal.map { [DataplaneModel.Backend(real: $0, weight: 0)] } ?? []) {
                guard let real = reals[b.real] else {
                    problems.append("service \(s.id): real id \(b.real) is not defined")
                    continue
                }
                if real.address.family != s.vip.family {
                    problems.append("service \(s.id): real \(real.address) is not of the VIP's family")
                }
            }
            backendCount += s.backends.count
        }
        if backendCount > TANDEM_MAX_BACKENDS {
            problems.append("\(backendCount) (service, real) pairs exceed \(TANDEM_MAX_BACKENDS)")
        }
        if !problems.isEmpty { throw DataplaneError(description: problems.joined(separator: "; ")) }
    }
}

// MARK: - Reading state

extension Dataplane {
    public func counters(service id: UInt32) -> Counters {
        Counters(summing: svcStats.lookupPerCPU(id) ?? [])
    }

    /// The counters of real `real` in service `service` alone.
    public func counters(service: UInt32, real: UInt32) -> Counters {
        guard let index = backends.lookup(tandem_backend_key(service: service, real: real))?.index else {
            return Counters()
        }
        return Counters(summing: backendStats.lookupPerCPU(index) ?? [])
    }

    /// A real's counters summed over every service it is a backend of.
    public func counters(real id: UInt32) -> Counters {
        var total = Counters()
        for (key, value) in backends.entries() where key.real == id {
            total.add(Counters(summing: backendStats.lookupPerCPU(value.index) ?? []))
        }
        return total
    }

    /// What SYNs and first packets wrote, and what the tables pushed out.
    public func tableCounters() -> TableCounters {
        func sum(_ stat: tandem_table_stat) -> UInt64 { (tableStats.lookupPerCPU(stat.rawValue) ?? []).reduce(0, +) }
        return TableCounters(
            synStateless: sum(TANDEM_T_SYN_STATELESS), synRemembered: sum(TANDEM_T_SYN_REMEMBERED),
            flowsWritten: sum(TANDEM_T_FLOWS_WRITTEN), flowsWrittenFull: sum(TANDEM_T_FLOWS_FULL),
            recordsWritten: sum(TANDEM_T_RECORDS_WRITTEN), recordsWrittenFull: sum(TANDEM_T_RECORDS_FULL),
            synChoicesUsed: sum(TANDEM_T_SYN_CHOICE_USED), previousRingUsed: sum(TANDEM_T_PREV_RING_USED))
    }

    public func packetReasons() -> [PacketReason: UInt64] {
        var result: [PacketReason: UInt64] = [:]
        for reason in PacketReason.allCases {
            result[reason] = (pktStats.lookupPerCPU(reason.rawValue) ?? []).reduce(0, +)
        }
        return result
    }

    /// One persistence record as the map holds it.
    public struct Record: Equatable, Sendable {
        public var group: UInt32
        public var client: IPAddress
        public var real: UInt32
        public var service: UInt32
        public var lastSeenNs: UInt64
        /// False once the real's records were invalidated (the entry waits
        /// for the LRU to reclaim it).
        public var valid: Bool
        /// 0: written here; else the node id (`NodeID`) of the peer it came from.
        public var origin: UInt32 = 0
        /// When the choice was made (CLOCK_MONOTONIC ns).
        public var writtenNs: UInt64 = 0

        public init(
            group: UInt32, client: IPAddress, real: UInt32, service: UInt32, lastSeenNs: UInt64, valid: Bool,
            origin: UInt32 = 0, writtenNs: UInt64 = 0
        ) {
            self.group = group
            self.client = client
            self.real = real
            self.service = service
            self.lastSeenNs = lastSeenNs
            self.valid = valid
            self.origin = origin
            self.writtenNs = writtenNs
        }
    }

    public func records() -> [Record] {
        var all: [Record] = []
        try? forEachRecordBatch { all += $0 }
        return all
    }

    /// Walks the record table `chunk` entries at a time, each batch with
    /// whether its records are still valid (the real's generation as of
    /// the start of the walk): memory stays bounded whatever the table size.
    public func forEachRecordBatch(chunk: Int = 4096, _ body: ([Record]) throws -> Void) throws {
        let gens = Dictionary(reals.entries().map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
        let cursor = persist.batches(chunk: chunk)
        while let batch = try cursor.next() {
            try body(
                batch.compactMap { key, value in
                    guard let client = IPAddress(abiAddress: key.client, family: key.af) else { return nil }
                    let real = gens[value.real]
                    let valid =
                        real.map { $0.rec_gen == value.rec_gen && $0.flags & UInt8(TANDEM_REAL_ACTIVE.rawValue) != 0 }
                        ?? false
                    return Record(
                        group: key.group, client: client, real: value.real, service: value.service,
                        lastSeenNs: value.last_seen_ns, valid: valid, origin: value.origin,
                        writtenNs: value.written_ns)
                })
        }
    }

    public func flowCount() -> Int { flows.keys().count }

    /// Forgets every established flow (benchmarks; `tandem` does not).
    public func clearFlows() throws { try flows.removeAll() }
}

extension tandem_service_key: @retroactive Hashable, @retroactive Equatable {
    public static func == (a: Self, b: Self) -> Bool { bytesEqual(a, b) }
    public func hash(into h: inout Hasher) { withUnsafeBytes(of: self) { h.combine(bytes: $0) } }
}

extension tandem_backend_key: @retroactive Hashable, @retroactive Equatable {
    public static func == (a: Self, b: Self) -> Bool { a.service == b.service && a.real == b.real }
    public func hash(into h: inout Hasher) { h.combine(service); h.combine(real) }
}

extension tandem_vip_key: @retroactive Hashable, @retroactive Equatable {
    public static func == (a: Self, b: Self) -> Bool { bytesEqual(a, b) }
    public func hash(into h: inout Hasher) { withUnsafeBytes(of: self) { h.combine(bytes: $0) } }
}

func bytesEqual<T>(_ a: T, _ b: T) -> Bool {
    withUnsafeBytes(of: a) { x in withUnsafeBytes(of: b) { y in x.elementsEqual(y) } }
}

// MARK: - Adopting and editing pinned state

extension Dataplane {
    /// What the maps hold now, for a controller that starts on pinned state.
    public func pinnedState() -> PinnedState {
        let pinnedServices = services.entries().compactMap { key, value -> PinnedState.Service? in
            guard let vip = IPAddress(abiAddress: key.vip, family: key.af),
                let proto = L4Protocol(rawValue: key.proto)
            else { return nil }
            return .init(
                key: ServiceKey(vip: vip, port: key.port, proto: proto), id: value.id,
                group: value.group, sorryReal: value.sorry_real)
        }
        let pinnedBackends = backends.entries().map { key, value in
            PinnedState.Backend(
                service: key.service, real: key.real,
                state: DataplaneModel.BackendState(rawValue: value.state) ?? .up)
        }
        let pinnedReals = reals.entries().compactMap { id, value -> PinnedState.Real? in
            guard value.af != 0, let address = IPAddress(abiAddress: value.addr, family: value.af) else { return nil }
            let mac = MACAddress(bytes: withUnsafeBytes(of: value.mac) { Array($0) })
            return .init(
                id: id, address: address, recGen: value.rec_gen, flowGen: value.flow_gen,
                active: value.flags & UInt8(TANDEM_REAL_ACTIVE.rawValue) != 0,
                mac: mac == MACAddress(bytes: [0, 0, 0, 0, 0, 0]) ? nil : mac)
        }
        return PinnedState(services: pinnedServices, backends: pinnedBackends, reals: pinnedReals)
    }

    /// The record of `client` (already masked) in `group`, if any.
    public func record(group: UInt32, client: IPAddress) -> Record? {
        var key = tandem_persist_key()
        key.group = group
        key.client = client.abiAddress
        key.af = client.abiFamily
        guard let value = persist.lookup(key) else { return nil }
        let real = reals.lookup(value.real)
        let valid =
            real.map { $0.rec_gen == value.rec_gen && $0.flags & UInt8(TANDEM_REAL_ACTIVE.rawValue) != 0 } ?? false
        return Record(
            group: group, client: client, real: value.real, service: value.service, lastSeenNs: value.last_seen_ns,
            valid: valid, origin: value.origin, writtenNs: value.written_ns)
    }

    /// A record made elsewhere, to write as it is (record sync).
    public struct RecordWrite: Sendable, Equatable {
        public var group: UInt32
        public var client: IPAddress
        public var real: UInt32
        public var recGen: UInt32
        public var service: UInt32
        public var origin: UInt32
        public var lastSeenNs: UInt64
        public var writtenNs: UInt64

        public init(
            group: UInt32, client: IPAddress, real: UInt32, recGen: UInt32, service: UInt32, origin: UInt32,
            lastSeenNs: UInt64, writtenNs: UInt64
        ) {
            self.group = group
            self.client = client
            self.real = real
            self.recGen = recGen
            self.service = service
            self.origin = origin
            self.lastSeenNs = lastSeenNs
            self.writtenNs = writtenNs
        }
    }

    /// Writes records synced from a peer. The real's generation is the one
    /// the caller read from the model: if the real failed since, the record
    /// is born invalid, as the dataplane's own would be.
    public func installRecords(_ writes: [RecordWrite]) throws {
        guard !writes.isEmpty else { return }
        try persist.updateBatch(
            writes.map { w in
                var key = tandem_persist_key()
                key.group = w.group
                key.client = w.client.abiAddress
                key.af = w.client.abiFamily
                var value = tandem_persist()
                value.real = w.real
                value.rec_gen = w.recGen
                value.service = w.service
                value.origin = w.origin
                value.last_seen_ns = w.lastSeenNs
                value.written_ns = w.writtenNs
                return (key, value)
            })
    }

    /// Deletes the records `matching` selects; returns how many.
    @discardableResult
    public func deleteRecords(matching: (Record) -> Bool) throws -> Int {
        var deleted = 0
        let cursor = persist.batches()
        while let batch = try cursor.next() {
            for (key, value) in batch {
                guard let client = IPAddress(abiAddress: key.client, family: key.af) else { continue }
                let record = Record(
                    group: key.group, client: client, real: value.real, service: value.service,
                    lastSeenNs: value.last_seen_ns, valid: true)
                if matching(record) {
                    try persist.delete(key)
                    deleted += 1
                }
            }
        }
        return deleted
    }

    /// How full the tables are and how many valid records each real has:
    /// a walk of both tables in batches, for `status` (run it off the
    /// controller's actor; it takes about a second per million records).
    public struct Census: Sendable, Equatable {
        public var flows = 0
        public var flowCapacity = 0
        /// Entries in the record table, valid or not (LRU reclaims the rest).
        public var records = 0
        public var recordCapacity = 0
        public var validRecords = 0
        public var validPerReal: [UInt32: Int] = [:]
        public init() {}
    }

    public func census() throws -> Census {
        var c = Census()
        c.flowCapacity = Int(flows.maxEntries)
        c.recordCapacity = Int(persist.maxEntries)
        let gens = Dictionary(
            reals.entries().compactMap { id, real in
                real.flags & UInt8(TANDEM_REAL_ACTIVE.rawValue) != 0 ? (id, real.rec_gen) : nil
            }, uniquingKeysWith: { a, _ in a })
        let records = persist.batches(chunk: 8192)
        while let batch = try records.next() {
            c.records += batch.count
            for (_, value) in batch where gens[value.real] == value.rec_gen {
                c.validRecords += 1
                c.validPerReal[value.real, default: 0] += 1
            }
        }
        let flowCursor = flows.batches(chunk: 8192)
        while let batch = try flowCursor.next() { c.flows += batch.count }
        return c
    }

    /// Entries in the flow and record tables, and their capacity.
    public func tableFill() -> (flows: Int, flowCapacity: Int, records: Int, recordCapacity: Int) {
        (flows.keys().count, Int(flows.maxEntries), persist.keys().count, Int(persist.maxEntries))
    }
}
