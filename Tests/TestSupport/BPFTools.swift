import BPF
import CLibBPF
import Glibc
import Model
import SystemCalls

// BPF calls only tests and benchmarks make: a packet generator, the
// kernel's run-time counters, programs found by id, netlink attachment.

extension BPFProgram {
    /// Sends `packet` out of `ifindex` `count` times in live-frames mode:
    /// the program runs on each copy and its verdict (XDP_TX, ...) is acted
    /// on, which makes this a packet generator. Returns the elapsed ns.
    public func liveFrames(
        packet: [UInt8], ifindex: UInt32, count: Int32,
        batch: UInt32 = 64
    ) throws -> UInt64 {
        var ctx = xdp_md()
        ctx.data_end = UInt32(packet.count)
        ctx.ingress_ifindex = ifindex
        var opts = bpf_test_run_opts()
        opts.sz = MemoryLayout<bpf_test_run_opts>.size
        opts.repeat = count
        opts.flags = UInt32(BPF_F_TEST_XDP_LIVE_FRAMES)
        opts.batch_size = batch
        let start = TestClock.nowNs()
        try packet.withUnsafeBytes { input in
            try withUnsafeMutableBytes(of: &ctx) { ctxRaw in
                opts.data_in = input.baseAddress
                opts.data_size_in = UInt32(input.count)
                opts.ctx_in = UnsafeRawPointer(ctxRaw.baseAddress)
                opts.ctx_size_in = UInt32(ctxRaw.count)
                // Interrupted, a run has sent some frames: running it again
                // would send more than `count`.
                try systemCall("generate live frames with", name, retryingEINTR: false) {
                    bpf_prog_test_run_opts(fd, &opts)
                }
            }
        }
        return TestClock.nowNs() - start
    }

    /// Time spent in the program and runs, as the kernel counts them while
    /// `kernel.bpf_stats_enabled` is 1 (both zero otherwise).
    public func runStats() throws -> (ns: UInt64, runs: UInt64) {
        var info = bpf_prog_info()
        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
        try systemCall("read info of program", name) {
            withUnsafeMutableBytes(of: &info) { bpf_obj_get_info_by_fd(fd, $0.baseAddress, &length) }
        }
        return (info.run_time_ns, info.run_cnt)
    }

    /// Turns the kernel's per-program run-time counting on or off; returns
    /// whether it was on.
    @discardableResult
    public static func countRunTime(_ on: Bool) throws -> Bool {
        let path = "/proc/sys/kernel/bpf_stats_enabled"
        let file = OwnedFD(
            try path.withCString { cPath in
                try systemCall("open", path, reports: .minusOneAndErrno) { open(cPath, O_RDWR | O_CLOEXEC) }
            })
        var current: UInt8 = 0
        try systemCall("read", path, reports: .minusOneAndErrno) { pread(file.raw, &current, 1, 0) }
        // A system call, not stdio: a buffered write's error would surface
        // only in fclose.
        let setting: [UInt8] = on ? [0x31, 0x0A] : [0x30, 0x0A]  // "1\n", "0\n"
        try setting.withUnsafeBytes { bytes in
            _ = try systemCall("write", path, reports: .minusOneAndErrno) {
                pwrite(file.raw, bytes.baseAddress, bytes.count, 0)
            }
        }
        return current == 0x31
    }

    /// Opens the loaded program with kernel id `id`.
    public static func byID(_ id: UInt32) throws -> BPFProgram {
        let fd = try systemCall("open program id", String(id)) { bpf_prog_get_fd_by_id(id) }
        return BPFProgram(adopting: OwnedFD(fd), name: "id \(id)")
    }
}

/// XDP attached the older way, through netlink (as `ip link set dev X xdp`
/// does): no link object, the program stays until replaced or removed.
public enum NetlinkXDP {
    /// The id of the program attached to `interface` in `mode`, if any.
    public static func attachedID(interface: String, mode: XDPMode) throws -> UInt32? {
        let ifindex = try Interface.index(interface)
        var id: UInt32 = 0
        try systemCall("query XDP on", interface) { bpf_xdp_query_id(Int32(ifindex), Int32(flags(mode)), &id) }
        return id == 0 ? nil : id
    }

    /// Attaches `program` to `interface`, replacing what netlink attached there.
    public static func attach(_ program: BPFProgram, interface: String, mode: XDPMode) throws {
        let ifindex = try Interface.index(interface)
        try systemCall("attach XDP (netlink) to", interface) {
            bpf_xdp_attach(Int32(ifindex), program.fd, flags(mode), nil)
        }
    }

    static func flags(_ mode: XDPMode) -> UInt32 {
        switch mode {
        case .native: UInt32(XDP_FLAGS_DRV_MODE)
        case .generic: UInt32(XDP_FLAGS_SKB_MODE)
        }
    }
}
