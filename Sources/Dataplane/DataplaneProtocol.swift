import Model

/// What the controller asks of a dataplane: take a model, read the
/// counters and the record table, write and delete records, keep the
/// node's own flags. `Dataplane` does it with the pinned BPF maps; a test
/// can stand in a model of the maps and run the controller without root
/// (the idea of Katran's BaseBpfAdapter). Calls come from the controller's
/// actor, except the reads a `ReadView` makes, which only read.
public protocol DataplaneProtocol: AnyObject, Sendable {
    /// What the maps hold, as last written by `apply`.
    var applied: DataplaneModel? { get }
    /// Counts `apply` calls: what is derived from `applied` is stale when it moved.
    var appliedVersion: UInt64 { get }
    /// Digest of each service's live ring, by service id.
    var ringDigests: [UInt32: RingDigest] { get }
    var tableSizes: TableSizes { get }

    /// Writes `model`, changing only what differs; on a throw the maps may
    /// hold part of it and `applied` is the previous model.
    func apply(_ model: DataplaneModel) throws

    /// Drained flag and announce table, kept through restarts.
    var nodeState: NodeState { get }
    func setNodeState(_ state: NodeState) throws

    func counters(service id: UInt32) -> Counters
    func counters(service: UInt32, real: UInt32) -> Counters
    func tableCounters() -> TableCounters
    func packetReasons() -> [PacketReason: UInt64]
    /// A walk of both tables; slow on a full table, run it off the actor.
    func census() throws -> Dataplane.Census

    /// The record of `client` (already masked) in `group`, if any.
    func record(group: UInt32, client: IPAddress) -> Dataplane.Record?
    /// Walks the record table a batch at a time, each record with whether it is valid.
    func forEachRecordBatch(chunk: Int, _ body: ([Dataplane.Record]) throws -> Void) throws
    /// Writes records made elsewhere (record sync), as they are.
    func installRecords(_ writes: [Dataplane.RecordWrite]) throws
    /// Deletes the records `matching` selects; returns how many.
    @discardableResult
    func deleteRecords(matching: (Dataplane.Record) -> Bool) throws -> Int

    /// The reader of the records the program writes (one at a time).
    func recordEvents() throws -> any RecordEventSource
    /// Record writes the event ring had no room for.
    func recordEventsLostCount() -> UInt64
}

extension DataplaneProtocol {
    public func forEachRecordBatch(_ body: ([Dataplane.Record]) throws -> Void) throws {
        try forEachRecordBatch(chunk: 4096, body)
    }
}

/// The records a dataplane's program writes, as it writes them.
public protocol RecordEventSource: Sendable {
    /// Waits up to `timeoutMs` for events; returns those ready.
    func poll(timeoutMs: Int32) throws -> [Dataplane.RecordEvent]
    /// The events ready now, without waiting.
    func drain() throws -> [Dataplane.RecordEvent]
}

extension Dataplane: DataplaneProtocol {}
