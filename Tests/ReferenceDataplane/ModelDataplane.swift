import Dataplane
import Foundation
import Model

/// A dataplane in memory, for running the controller without root: the
/// maps are a `ReferenceModel` (the same one the differential test holds
/// the XDP program to), so a record is valid here exactly when the
/// program would honour it. Tests read what a user would see of the maps:
/// each backend's state, the records and whether they are valid.
package final class ModelDataplane: DataplaneProtocol, @unchecked Sendable {
    private let lock = NSLock()
    private var reference = ReferenceModel()
    private var version: UInt64 = 0
    private var node = NodeState()
    private var failure: DataplaneError?
    private let events = ModelRecordEvents()

    package init() {}

    /// The next `apply` throws `error` and changes nothing, as a map write
    /// the kernel refused would.
    package func failNextApply(_ error: DataplaneError = DataplaneError(description: "cannot update map: no memory")) {
        lock.withLock { failure = error }
    }

    package var applied: DataplaneModel? { lock.withLock { version == 0 ? nil : reference.model } }
    package var appliedVersion: UInt64 { lock.withLock { version } }
    package var tableSizes: TableSizes { .default }

    package var ringDigests: [UInt32: RingDigest] {
        lock.withLock {
            let model = reference.model
            let addresses = model.realAddresses
            return Dictionary(
                uniqueKeysWithValues: model.services.map { s in
                    let ring = model.ring(for: s, size: Dataplane.ringSize, addresses: addresses)
                    return (s.id, model.ringDigest(for: s, ring: ring, addresses: addresses))
                })
        }
    }

    package func apply(_ model: DataplaneModel) throws {
        try lock.withLock {
            if let failure {
                self.failure = nil
                throw failure
            }
            reference.apply(model)
            version += 1
        }
    }

    package var nodeState: NodeState { lock.withLock { node } }
    package func setNodeState(_ state: NodeState) throws { lock.withLock { node = state } }

    package func counters(service id: UInt32) -> Counters {
        lock.withLock { reference.serviceCounters[id] ?? Counters() }
    }
    package func counters(service: UInt32, real: UInt32) -> Counters { Counters() }
    package func tableCounters() -> TableCounters { TableCounters() }
    package func packetReasons() -> [PacketReason: UInt64] { lock.withLock { reference.reasons } }

    package func census() throws -> Dataplane.Census {
        lock.withLock {
            var c = Dataplane.Census()
            c.flows = reference.flows.count
            c.flowCapacity = tableSizes.flows
            c.records = reference.records.count
            c.recordCapacity = tableSizes.records
            for r in reference.records.values where reference.isValid(r) {
                c.validRecords += 1
                c.validPerReal[r.real, default: 0] += 1
            }
            return c
        }
    }

    package func record(group: UInt32, client: IPAddress) -> Dataplane.Record? {
        lock.withLock {
            reference.records[.init(group: group, client: client.bytes)].map {
                record($0, group: group, client: client)
            }
        }
    }

    package func forEachRecordBatch(chunk: Int, _ body: ([Dataplane.Record]) throws -> Void) throws {
        let all = lock.withLock {
            reference.records.compactMap { key, r in
                IPAddress(bytes: key.client).map { record(r, group: key.group, client: $0) }
            }
        }
        for start in stride(from: 0, to: all.count, by: chunk) {
            try body(Array(all[start..<min(start + chunk, all.count)]))
        }
    }

    package func installRecords(_ writes: [Dataplane.RecordWrite]) throws {
        lock.withLock {
            for w in writes {
                reference.records[.init(group: w.group, client: w.client.bytes)] = .init(
                    real: w.real, recGen: w.recGen, service: w.service, lastSeen: w.lastSeenNs, origin: w.origin,
                    written: w.writtenNs)
            }
        }
    }

    @discardableResult
    package func deleteRecords(matching: (Dataplane.Record) -> Bool) throws -> Int {
        lock.withLock {
            var deleted = 0
            for (key, r) in reference.records {
                guard let client = IPAddress(bytes: key.client) else { continue }
                if matching(record(r, group: key.group, client: client)) {
                    reference.records[key] = nil
                    deleted += 1
                }
            }
            return deleted
        }
    }

    package func recordEvents() throws -> any RecordEventSource { events }
    package func recordEventsLostCount() -> UInt64 { 0 }

    // MARK: What a test does and sees

    /// A client's packet on `service` writes its record, as the program
    /// does for a new client: the real's current generation, `now`.
    package func clientWrites(
        group: UInt32, client: IPAddress, real: UInt32, service: UInt32, now: UInt64 = KernelClock.monotonicNs()
    ) {
        lock.withLock {
            let recGen = reference.model.real(real)?.recGen ?? 0
            reference.records[.init(group: group, client: client.bytes)] = .init(
                real: real, recGen: recGen, service: service, lastSeen: now, written: now)
        }
        events.push(.init(group: group, client: client, real: real, service: service, writtenNs: now))
    }

    /// The state of `address` in each service the model has it in, by service id.
    package func backendStates(of address: IPAddress) -> [UInt32: DataplaneModel.BackendState] {
        lock.withLock {
            let model = reference.model
            let ids = Set(model.reals.filter { $0.address == address }.map(\.id))
            var states: [UInt32: DataplaneModel.BackendState] = [:]
            for s in model.services {
                if let b = s.backends.first(where: { ids.contains($0.real) }) { states[s.id] = b.state }
            }
            return states
        }
    }

    private func record(_ r: ReferenceModel.Record, group: UInt32, client: IPAddress) -> Dataplane.Record {
        Dataplane.Record(
            group: group, client: client, real: r.real, service: r.service, lastSeenNs: r.lastSeen,
            valid: reference.isValid(r), origin: r.origin, writtenNs: r.written)
    }
}

/// The record writes `ModelDataplane.clientWrites` made, for a record feed.
final class ModelRecordEvents: RecordEventSource, @unchecked Sendable {
    private let condition = NSCondition()
    private var pending: [Dataplane.RecordEvent] = []

    func push(_ event: Dataplane.RecordEvent) {
        condition.withLock {
            pending.append(event)
            condition.signal()
        }
    }

    func poll(timeoutMs: Int32) throws -> [Dataplane.RecordEvent] {
        condition.withLock {
            if pending.isEmpty {
                _ = condition.wait(until: Date(timeIntervalSinceNow: Double(timeoutMs) / 1000))
            }
            defer { pending.removeAll() }
            return pending
        }
    }

    func drain() throws -> [Dataplane.RecordEvent] {
        condition.withLock {
            defer { pending.removeAll() }
            return pending
        }
    }
}
