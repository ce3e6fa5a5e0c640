import CLibBPF
import Glibc
import SystemCalls

/// Network interfaces of the calling thread's namespace, by name.
public enum Interface {
    public static func index(_ name: String) throws -> UInt32 { try Interfaces.index(name) }

    /// The name of interface `index`, or nil when there is none.
    public static func name(_ index: UInt32) -> String? { Interfaces.name(index) }

    /// The id of the XDP program attached to interface `index` of the
    /// calling thread's network namespace, if any.
    public static func xdpProgram(_ index: UInt32) -> UInt32? {
        var opts = bpf_xdp_query_opts()
        opts.sz = MemoryLayout<bpf_xdp_query_opts>.size
        guard bpf_xdp_query(Int32(bitPattern: index), 0, &opts) == 0 else { return nil }
        return opts.prog_id != 0 ? opts.prog_id : nil
    }
}
