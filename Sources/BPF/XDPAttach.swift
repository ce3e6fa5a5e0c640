import CLibBPF
import Glibc
import Model
import SystemCalls

extension XDPMode {
    var flags: UInt32 {
        switch self {
        case .native: UInt32(XDP_FLAGS_DRV_MODE)
        case .generic: UInt32(XDP_FLAGS_SKB_MODE)
        }
    }
}

/// An XDP attachment through a bpf_link. Pinned, it outlives the process:
/// forwarding goes on while the controller restarts. Removing the pin (with
/// no process holding the link) detaches the program.
public final class XDPLink {
    public let fd: OwnedFD
    public let interface: String

    init(fd: Int32, interface: String) {
        self.fd = OwnedFD(fd)
        self.interface = interface
    }

    /// Attaches `program` to `interface` in `mode`.
    public static func attach(_ program: BPFProgram, interface: String, mode: XDPMode) throws -> XDPLink {
        let ifindex = try Interface.index(interface)
        var opts = bpf_link_create_opts()
        opts.sz = MemoryLayout<bpf_link_create_opts>.size
        opts.flags = mode.flags
        let hint =
            mode == .native
            ? "driver may lack native XDP; try xdp-mode: generic"
            : "another XDP program may be attached (see 'ip link show \(interface)')"
        let fd = try systemCall("attach XDP (\(mode.rawValue)) to", interface, hint: hint) {
            bpf_link_create(program.fd, Int32(ifindex), BPF_XDP, &opts)
        }
        return XDPLink(fd: fd, interface: interface)
    }

    /// Opens a link pinned at `path`.
    public static func pinned(at path: String, interface: String) throws -> XDPLink {
        let fd = try systemCall("open pinned XDP link", path) { bpf_obj_get(path) }
        return XDPLink(fd: fd, interface: interface)
    }

    public func pin(at path: String) throws {
        try systemCall("pin XDP link at", path) { bpf_obj_pin(fd.raw, path) }
    }

    /// Swaps in a new program atomically: no packet goes unprocessed.
    public func update(to program: BPFProgram) throws {
        try systemCall("replace XDP program on", interface) { bpf_link_update(fd.raw, program.fd, nil) }
    }

    /// The index of the interface the link runs on; nil once that
    /// interface is gone (the link is defunct then).
    public var attachedIndex: UInt32? {
        let index = tandem_xdp_link_ifindex(fd.raw)
        return index > 0 ? UInt32(index) : nil
    }

    /// The kernel's id of the link.
    public var id: UInt32? { info?.id }

    /// The id of the program the link runs.
    public var programID: UInt32? { info?.prog_id }

    private var info: bpf_link_info? {
        var info = bpf_link_info()
        var length = UInt32(MemoryLayout<bpf_link_info>.size)
        guard bpf_obj_get_info_by_fd(fd.raw, &info, &length) == 0 else { return nil }
        return info
    }

    /// Detaches the program from the NIC now, whoever else holds the link.
    public func detach() throws {
        try systemCall("detach XDP from", interface) { bpf_link_detach(fd.raw) }
    }
}
