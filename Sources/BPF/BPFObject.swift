import CLibBPF
import Foundation
import Glibc
import SystemCalls

/// A BPF ELF object: opened from bytes, loaded into the kernel, its maps
/// pinned by name under `pinRoot` (existing pins are reused, which is how a
/// restarted controller adopts live maps).
public final class BPFObject {
    let handle: OpaquePointer
    public let name: String
    public let pinRoot: String?
    private let logBuffer: UnsafeMutablePointer<CChar>
    private static let logSize = 4 << 20
    private var loaded = false

    /// Opens an object from its ELF bytes. Nothing reaches the kernel yet.
    public init(bytes: [UInt8], name: String, pinRoot: String?) throws {
        Self.silenceLibbpf
        self.name = name
        self.pinRoot = pinRoot
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: Self.logSize)
        buffer.initialize(to: 0)
        logBuffer = buffer

        var err: Int32 = 0
        let opened: OpaquePointer? = name.withCString { namePtr in
            withOptionalCString(pinRoot) { pinPtr in
                var opts = bpf_object_open_opts()
                opts.sz = MemoryLayout<bpf_object_open_opts>.size
                opts.object_name = namePtr
                opts.pin_root_path = pinPtr
                opts.kernel_log_buf = buffer
                opts.kernel_log_size = Self.logSize
                return bytes.withUnsafeBytes { raw in
                    tandem_object_open_mem(raw.baseAddress, raw.count, &opts, &err)
                }
            }
        }
        guard let opened else {
            buffer.deallocate()
            throw SystemCallError("open BPF object", name, errno: err)
        }
        handle = opened
    }

    deinit {
        bpf_object__close(handle)
        logBuffer.deallocate()
    }

    /// Sizes map `name` before `load`: the table sizes of the config.
    public func setMaxEntries(_ name: String, _ entries: UInt32) throws {
        guard let map = bpf_object__find_map_by_name(handle, name) else {
            throw SystemCallError("find map", "\(name) in \(self.name)", errno: ENOENT)
        }
        try systemCall("size map", name) { bpf_map__set_max_entries(map, entries) }
    }

    /// Loads every program and map. On a verifier rejection the log is saved
    /// to `verifierLogPath` and the error names that file.
    public func load(verifierLogPath: String = "/tmp/tandem-verifier.log") throws {
        if let pinRoot { try BPFFS.prepare(directory: pinRoot) }
        do {
            // libbpf refuses a second load of the same object: no retry.
            try systemCall("load BPF object", name, retryingEINTR: false) { bpf_object__load(handle) }
        } catch var error {
            let log = String(cString: logBuffer)
            if !log.isEmpty {
                _ = FileManager.default.createFile(atPath: verifierLogPath, contents: Data(log.utf8))
                error.hint = "verifier log saved to \(verifierLogPath)"
            }
            throw error
        }
        loaded = true
    }

    /// A program of this object by its function name.
    public func program(_ name: String) throws -> BPFProgram {
        guard let prog = bpf_object__find_program_by_name(handle, name) else {
            throw SystemCallError("find program", "\(name) in \(self.name)", errno: ENOENT)
        }
        let fd = bpf_program__fd(prog)
        guard fd >= 0 else {
            throw SystemCallError("use program", name, errno: EBADF, hint: "object not loaded")
        }
        return BPFProgram(fd: fd, name: name, owner: self)
    }

    /// A typed view of one of this object's maps.
    public func map<Key: BitwiseCopyable, Value: BitwiseCopyable>(
        _ name: String, key: Key.Type = Key.self,
        value: Value.Type = Value.self
    ) throws -> BPFMap<Key, Value> {
        guard let map = bpf_object__find_map_by_name(handle, name) else {
            throw SystemCallError("find map", "\(name) in \(self.name)", errno: ENOENT)
        }
        // An unloaded map's descriptor is -1, not an errno: say EBADF.
        let fd = bpf_map__fd(map)
        guard fd >= 0 else {
            throw SystemCallError("use map", name, errno: EBADF, hint: "object not loaded")
        }
        return try BPFMap(fd: fd, name: name, owner: self)
    }

    /// Removes the pins of this object's maps (the maps live on while used).
    public func unpinMaps() {
        if let pinRoot { bpf_object__unpin_maps(handle, pinRoot) }
    }

    private static let silenceLibbpf: Void = {
        _ = libbpf_set_print(nil)
    }()
}

func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let string else { return body(nil) }
    return string.withCString { body($0) }
}
