import CLibBPF
import Glibc
import SystemCalls

/// The reading end of a BPF ring buffer (`BPF_MAP_TYPE_RINGBUF`): the
/// program's events in the order they were submitted. One reader at a
/// time: `poll` and `consume` are called from one thread.
public final class BPFRingBuffer: @unchecked Sendable {
    public let name: String
    private let handle: OpaquePointer
    private let sink: Sink
    private let owner: AnyObject

    /// What the C callback hands each event to, for the call in progress.
    private final class Sink {
        var body: ((UnsafeRawBufferPointer) -> Void)?
    }

    /// Opens map `name` of `object` (loaded) for reading.
    public init(object: BPFObject, map name: String) throws {
        guard let map = bpf_object__find_map_by_name(object.handle, name) else {
            throw SystemCallError("find map", "\(name) in \(object.name)", errno: ENOENT)
        }
        let fd = bpf_map__fd(map)
        guard fd >= 0 else {
            throw SystemCallError("use map", name, errno: EBADF, hint: "object not loaded")
        }
        let sink = Sink()
        var err: Int32 = 0
        let opened = tandem_ring_buffer_new(
            fd,
            { ctx, data, size in
                guard let ctx, let data else { return 0 }
                let sink = Unmanaged<Sink>.fromOpaque(ctx).takeUnretainedValue()
                sink.body?(UnsafeRawBufferPointer(start: data, count: size))
                return 0
            }, Unmanaged.passUnretained(sink).toOpaque(), &err)
        guard let opened else { throw SystemCallError("open ring buffer", name, errno: err) }
        handle = opened
        self.sink = sink
        self.name = name
        owner = object
    }

    deinit { ring_buffer__free(handle) }

    /// Waits up to `timeoutMs` for events (-1: until one comes), then
    /// hands each one ready to `body`; returns how many.
    @discardableResult
    public func poll(timeoutMs: Int32, _ body: (UnsafeRawBufferPointer) -> Void) throws -> Int {
        try withSink(body) { Int(try systemCall("poll ring buffer", name) { ring_buffer__poll(handle, timeoutMs) }) }
    }

    /// Hands every event ready now to `body`, without waiting; returns how many.
    @discardableResult
    public func consume(_ body: (UnsafeRawBufferPointer) -> Void) throws -> Int {
        try withSink(body) { Int(try systemCall("read ring buffer", name) { ring_buffer__consume(handle) }) }
    }

    private func withSink<R>(_ body: (UnsafeRawBufferPointer) -> Void, _ run: () throws -> R) throws -> R {
        try withoutActuallyEscaping(body) { escaping in
            sink.body = escaping
            defer { sink.body = nil }
            return try run()
        }
    }
}
