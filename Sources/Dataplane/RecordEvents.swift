import BPF
import Model
import TandemABI

extension Dataplane {
    /// A record the program wrote: a new client, a rescheduled one, or one
    /// rewritten after a move (never a refresh, never an installed record).
    public struct RecordEvent: Equatable, Sendable {
        public var group: UInt32
        /// Already masked to the group's netmask.
        public var client: IPAddress
        public var real: UInt32
        /// The service whose packet wrote it.
        public var service: UInt32
        /// When it was written (CLOCK_MONOTONIC ns).
        public var writtenNs: UInt64

        public init(group: UInt32, client: IPAddress, real: UInt32, service: UInt32, writtenNs: UInt64) {
            self.group = group
            self.client = client
            self.real = real
            self.service = service
            self.writtenNs = writtenNs
        }
    }

    /// The reader of the program's record writes (the `record_events` ring
    /// buffer). One reader at a time, on one thread.
    public func recordEvents() throws -> any RecordEventSource {
        RecordEvents(ring: try BPFRingBuffer(object: object, map: "record_events"))
    }

    /// Record events the ring buffer had no room for, since the maps were made.
    public func recordEventsLostCount() -> UInt64 {
        (recordEventsLost.lookupPerCPU(0) ?? []).reduce(0, +)
    }

    public final class RecordEvents: RecordEventSource, @unchecked Sendable {
        let ring: BPFRingBuffer

        init(ring: BPFRingBuffer) { self.ring = ring }

        /// Waits up to `timeoutMs` for events; returns those ready.
        public func poll(timeoutMs: Int32) throws -> [RecordEvent] {
            var events: [RecordEvent] = []
            try ring.poll(timeoutMs: timeoutMs) { if let e = Self.decode($0) { events.append(e) } }
            return events
        }

        /// The events ready now, without waiting.
        public func drain() throws -> [RecordEvent] {
            var events: [RecordEvent] = []
            try ring.consume { if let e = Self.decode($0) { events.append(e) } }
            return events
        }

        static func decode(_ bytes: UnsafeRawBufferPointer) -> RecordEvent? {
            guard bytes.count >= MemoryLayout<tandem_record_event>.size else { return nil }
            let e = bytes.loadUnaligned(as: tandem_record_event.self)
            guard let client = IPAddress(abiAddress: e.key.client, family: e.key.af) else { return nil }
            return RecordEvent(
                group: e.key.group, client: client, real: e.real, service: e.service, writtenNs: e.written_ns)
        }
    }
}
