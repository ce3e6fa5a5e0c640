import CLibBPF
import Glibc
import SystemCalls

/// A typed view of a BPF map. `Key` and `Value` are the C structs from the
/// ABI header; their sizes are checked against the map when the view is made.
/// Per-CPU maps store one `Value` per possible CPU: use the `perCPU` calls.
public final class BPFMap<Key: BitwiseCopyable, Value: BitwiseCopyable> {
    public let fd: Int32
    public let name: String
    public let isPerCPU: Bool
    public let maxEntries: UInt32
    let owner: AnyObject

    init(fd: Int32, name: String, owner: AnyObject) throws {
        var info = bpf_map_info()
        var length = UInt32(MemoryLayout<bpf_map_info>.size)
        try systemCall("inspect map", name) { bpf_obj_get_info_by_fd(fd, &info, &length) }
        guard info.key_size == MemoryLayout<Key>.size, info.value_size == MemoryLayout<Value>.size else {
            throw SystemCallError(
                "use map", name, errno: EINVAL,
                hint: "key/value sizes \(info.key_size)/\(info.value_size) differ from "
                    + "\(MemoryLayout<Key>.size)/\(MemoryLayout<Value>.size): stale pin from another version? "
                    + "remove it with 'tandem down' (stops forwarding)")
        }
        let type = bpf_map_type(rawValue: info.type)
        isPerCPU = [BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH]
            .contains(type)
        maxEntries = info.max_entries
        self.fd = fd
        self.name = name
        self.owner = owner
    }

    /// The sizes of the map pinned at `path`, whatever its key and value.
    public static func pinnedInfo(at path: String) throws -> (keySize: UInt32, valueSize: UInt32, maxEntries: UInt32) {
        let fd = try systemCall("open pinned map", path) { bpf_obj_get(path) }
        let owner = OwnedFD(fd)
        var info = bpf_map_info()
        var length = UInt32(MemoryLayout<bpf_map_info>.size)
        try systemCall("inspect map", path) { bpf_obj_get_info_by_fd(owner.raw, &info, &length) }
        return (info.key_size, info.value_size, info.max_entries)
    }

    /// Opens a map pinned at `path`; the view owns the descriptor.
    public static func pinned(at path: String) throws -> BPFMap {
        let fd = try systemCall("open pinned map", path, hint: "is 'tandem serve' running?") { bpf_obj_get(path) }
        let owner = OwnedFD(fd)
        return try BPFMap(fd: fd, name: path, owner: owner)
    }

    public static var possibleCPUs: Int {
        let count = libbpf_num_possible_cpus()  // -errno on failure
        precondition(count > 0, "cannot count possible CPUs: \(String(cString: strerror(-count)))")
        return Int(count)
    }

    public func lookup(_ key: Key) -> Value? {
        precondition(!isPerCPU, "\(name) is per-CPU: use lookupPerCPU")
        let value = UnsafeMutablePointer<Value>.allocate(capacity: 1)
        defer { value.deallocate() }
        let rc = withUnsafeBytes(of: key) { bpf_map_lookup_elem(fd, $0.baseAddress, value) }
        guard rc == 0 else { return nil }
        return value.move()
    }

    public func lookupPerCPU(_ key: Key) -> [Value]? {
        let cpus = Self.possibleCPUs
        let values = UnsafeMutablePointer<Value>.allocate(capacity: cpus)
        defer { values.deallocate() }
        let rc = withUnsafeBytes(of: key) { bpf_map_lookup_elem(fd, $0.baseAddress, values) }
        guard rc == 0 else { return nil }
        return (0..<cpus).map { (values + $0).move() }
    }

    public func update(_ key: Key, _ value: Value) throws {
        _ = try withUnsafeBytes(of: key) { k in
            try withUnsafeBytes(of: value) { v in
                try systemCall("update map", name) {
                    bpf_map_update_elem(fd, k.baseAddress, v.baseAddress, UInt64(BPF_ANY))
                }
            }
        }
    }

    /// Writes one value per possible CPU (zeroing counters, typically).
    public func updatePerCPU(_ key: Key, _ values: [Value]) throws {
        precondition(values.count == Self.possibleCPUs)
        _ = try withUnsafeBytes(of: key) { k in
            try values.withUnsafeBufferPointer { buf in
                try systemCall("update map", name) {
                    bpf_map_update_elem(fd, k.baseAddress, buf.baseAddress, UInt64(BPF_ANY))
                }
            }
        }
    }

    /// Deletes `key`; returns false when it was not there.
    @discardableResult
    public func delete(_ key: Key) throws -> Bool {
        do {
            _ = try withUnsafeBytes(of: key) { k in
                try systemCall("delete from map", name) { bpf_map_delete_elem(fd, k.baseAddress) }
            }
            return true
        } catch let error as SystemCallError where error.errno == ENOENT {
            return false
        }
    }

    /// Every key, in the kernel's order. Entries may change meanwhile.
    public func keys() -> [Key] {
        var result: [Key] = []
        let current = UnsafeMutablePointer<Key>.allocate(capacity: 1)
        let next = UnsafeMutablePointer<Key>.allocate(capacity: 1)
        defer { current.deallocate(); next.deallocate() }
        var rc = bpf_map_get_next_key(fd, nil, next)
        while rc == 0 {
            result.append(next.pointee)
            current.update(from: next, count: 1)
            rc = bpf_map_get_next_key(fd, current, next)
        }
        return result
    }

    /// Every (key, value), through BPF_MAP_LOOKUP_BATCH where the map type
    /// has it, else key by key.
    public func entries() -> [(Key, Value)] {
        precondition(!isPerCPU, "\(name) is per-CPU")
        if let batch = try? lookupBatch() { return batch }
        return keys().compactMap { key in lookup(key).map { (key, $0) } }
    }

    func lookupBatch(chunk: UInt32 = 4096) throws -> [(Key, Value)] {
        var result: [(Key, Value)] = []
        let keys = UnsafeMutablePointer<Key>.allocate(capacity: Int(chunk))
        let values = UnsafeMutablePointer<Value>.allocate(capacity: Int(chunk))
        // The batch cursor is opaque to us; the kernel wants room for a key.
        let inBatch = UnsafeMutableRawPointer.allocate(byteCount: max(MemoryLayout<Key>.size, 8), alignment: 8)
        let outBatch = UnsafeMutableRawPointer.allocate(byteCount: max(MemoryLayout<Key>.size, 8), alignment: 8)
        defer { keys.deallocate(); values.deallocate(); inBatch.deallocate(); outBatch.deallocate() }
        var first = true
        while true {
            var count = chunk
            var opts = bpf_map_batch_opts()
            opts.sz = MemoryLayout<bpf_map_batch_opts>.size
            let rc = bpf_map_lookup_batch(fd, first ? nil : inBatch, outBatch, keys, values, &count, &opts)
            if rc < 0 && -rc != ENOENT { throw SystemCallError("batch-read map", name, errno: -rc) }
            for i in 0..<Int(count) { result.append((keys[i], values[i])) }
            if rc < 0 { return result }  // ENOENT: that was the last batch
            inBatch.copyMemory(from: outBatch, byteCount: max(MemoryLayout<Key>.size, 8))
            first = false
        }
    }

    /// Reads the map a batch at a time, so a table of any size is walked
    /// with `chunk` entries in memory. One cursor is used by one thread at
    /// a time; entries may change between batches, as with `keys()`.
    public final class BatchCursor {
        let map: BPFMap
        let chunk: Int
        private let keys: UnsafeMutablePointer<Key>
        private let values: UnsafeMutablePointer<Value>
        private let inBatch: UnsafeMutableRawPointer
        private let outBatch: UnsafeMutableRawPointer
        private let cursorSize = max(MemoryLayout<Key>.size, 8)
        private var started = false
        private var finished = false
        /// Maps without batch operations: walked key by key instead.
        private var fallback: [Key]?

        init(_ map: BPFMap, chunk: Int) {
            self.map = map
            self.chunk = chunk
            keys = .allocate(capacity: chunk)
            values = .allocate(capacity: chunk)
            // The batch cursor is opaque to us; the kernel wants room for a key.
            inBatch = .allocate(byteCount: max(MemoryLayout<Key>.size, 8), alignment: 8)
            outBatch = .allocate(byteCount: max(MemoryLayout<Key>.size, 8), alignment: 8)
        }

        deinit {
            keys.deallocate()
            values.deallocate()
            inBatch.deallocate()
            outBatch.deallocate()
        }

        /// The next entries, or nil once the whole map was read.
        public func next() throws -> [(Key, Value)]? {
            if var rest = fallback {
                guard !rest.isEmpty else { return nil }
                let take = Array(rest.prefix(chunk))
                rest.removeFirst(take.count)
                fallback = rest
                return take.compactMap { key in map.lookup(key).map { (key, $0) } }
            }
            if finished { return nil }
            var count = UInt32(chunk)
            var opts = bpf_map_batch_opts()
            opts.sz = MemoryLayout<bpf_map_batch_opts>.size
            let rc = bpf_map_lookup_batch(map.fd, started ? inBatch : nil, outBatch, keys, values, &count, &opts)
            if rc < 0 && -rc != ENOENT {
                if !started && (-rc == EINVAL || -rc == ENOTSUP || -rc == EOPNOTSUPP) {
                    fallback = map.keys()
                    return try next()
                }
                throw SystemCallError("batch-read map", map.name, errno: -rc)
            }
            started = true
            if rc < 0 { finished = true }  // ENOENT: that was the last batch
            inBatch.copyMemory(from: outBatch, byteCount: cursorSize)
            let batch = (0..<Int(count)).map { (keys[$0], values[$0]) }
            if batch.isEmpty && finished { return nil }
            return batch
        }
    }

    /// A cursor over every entry, `chunk` at a time.
    public func batches(chunk: Int = 4096) -> BatchCursor {
        precondition(!isPerCPU, "\(name) is per-CPU")
        return BatchCursor(self, chunk: chunk)
    }

    /// Writes many entries in one BPF_MAP_UPDATE_BATCH call (key by key
    /// where the kernel lacks it for this map type).
    public func updateBatch(_ items: [(Key, Value)]) throws {
        guard !items.isEmpty else { return }
        let keys = items.map(\.0), values = items.map(\.1)
        var count = UInt32(items.count)
        var opts = bpf_map_batch_opts()
        opts.sz = MemoryLayout<bpf_map_batch_opts>.size
        opts.elem_flags = UInt64(BPF_ANY)
        let rc = keys.withUnsafeBufferPointer { k in
            values.withUnsafeBufferPointer { v in
                bpf_map_update_batch(fd, k.baseAddress, v.baseAddress, &count, &opts)
            }
        }
        if rc == 0 { return }
        let err = -rc
        if err == EINVAL || err == ENOTSUP || err == EOPNOTSUPP {
            for (key, value) in items.dropFirst(Int(count)) { try update(key, value) }
            return
        }
        throw SystemCallError("batch-update map", name, errno: err)
    }

    /// Deletes every entry (hash maps). Returns how many went.
    @discardableResult
    public func removeAll() throws -> Int {
        var removed = 0
        for key in keys() where try delete(key) { removed += 1 }
        return removed
    }
}
