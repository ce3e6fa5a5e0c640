import CLibBPF
import Glibc

/// A loaded BPF program. Borrows its descriptor from the object (or owns
/// one obtained from a pin).
public struct BPFProgram {
    public let fd: Int32
    public let name: String
    let owner: AnyObject

    init(fd: Int32, name: String, owner: AnyObject) {
        self.fd = fd
        self.name = name
        self.owner = owner
    }

    /// Opens a program pinned at `path`.
    public static func pinned(at path: String) throws -> BPFProgram {
        let fd = try check("open pinned program", path) { bpf_obj_get(path) }
        return BPFProgram(fd: fd, name: path, owner: OwnedFD(fd))
    }

    /// Opens the loaded program with kernel id `id`.
    public static func byID(_ id: UInt32) throws -> BPFProgram {
        let fd = try check("open program id", String(id)) { bpf_prog_get_fd_by_id(id) }
        return BPFProgram(fd: fd, name: "id \(id)", owner: OwnedFD(fd))
    }

    public func pin(at path: String) throws {
        try check("pin program \(name) at", path) { bpf_obj_pin(fd, path) }
    }

    public struct TestRun {
        public var retval: UInt32
        public var output: [UInt8]
        /// Mean time per repetition in ns, as the kernel measured it.
        public var durationNs: UInt32
    }

    /// Runs the program on `packet` through BPF_PROG_TEST_RUN.
    public func testRun(packet: [UInt8], repeat count: Int32 = 1) throws -> TestRun {
        var output = [UInt8](repeating: 0, count: max(packet.count, 64) + 256)
        var opts = bpf_test_run_opts()
        opts.sz = MemoryLayout<bpf_test_run_opts>.size
        opts.repeat = count
        let outputCount = output.count
        try packet.withUnsafeBytes { input in
            try output.withUnsafeMutableBytes { out in
                opts.data_in = input.baseAddress
                opts.data_size_in = UInt32(input.count)
                opts.data_out = out.baseAddress
                opts.data_size_out = UInt32(outputCount)
                try check("test-run program", name) { bpf_prog_test_run_opts(fd, &opts) }
            }
        }
        output.removeSubrange(Int(opts.data_size_out)...)
        return TestRun(retval: opts.retval, output: output, durationNs: opts.duration)
    }

    /// Sends `packet` out of `ifindex` `count` times in live-frames mode:
    /// the program runs on each copy and its verdict (XDP_TX, ...) is acted
    /// on, which makes this a packet generator. Returns the elapsed ns.
    public func liveFrames(packet: [UInt8], ifindex: UInt32, count: Int32,
                           batch: UInt32 = 64) throws -> UInt64 {
        var ctx = xdp_md()
        ctx.data_end = UInt32(packet.count)
        ctx.ingress_ifindex = ifindex
        var opts = bpf_test_run_opts()
        opts.sz = MemoryLayout<bpf_test_run_opts>.size
        opts.repeat = count
        opts.flags = UInt32(BPF_F_TEST_XDP_LIVE_FRAMES)
        opts.batch_size = batch
        var start = timespec(), end = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        try packet.withUnsafeBytes { input in
            try withUnsafeMutableBytes(of: &ctx) { ctxRaw in
                opts.data_in = input.baseAddress
                opts.data_size_in = UInt32(input.count)
                opts.ctx_in = UnsafeRawPointer(ctxRaw.baseAddress)
                opts.ctx_size_in = UInt32(ctxRaw.count)
                // Interrupted, a run has sent some frames: running it again
                // would send more than `count`.
                try check("generate live frames with", name, retryingEINTR: false) {
                    bpf_prog_test_run_opts(fd, &opts)
                }
            }
        }
        clock_gettime(CLOCK_MONOTONIC, &end)
        return UInt64(end.tv_sec - start.tv_sec) * 1_000_000_000
            + UInt64(end.tv_nsec) - UInt64(start.tv_nsec)
    }
}

extension BPFProgram {
    /// Time spent in the program and runs, as the kernel counts them while
    /// `kernel.bpf_stats_enabled` is 1 (both zero otherwise).
    public func runStats() throws -> (ns: UInt64, runs: UInt64) {
        var info = bpf_prog_info()
        var length = UInt32(MemoryLayout<bpf_prog_info>.size)
        try check("read info of program", name) { withUnsafeMutableBytes(of: &info) { bpf_obj_get_info_by_fd(fd, $0.baseAddress, &length) } }
        return (info.run_time_ns, info.run_cnt)
    }

    /// Turns the kernel's per-program run-time counting on or off; returns
    /// whether it was on.
    @discardableResult
    public static func countRunTime(_ on: Bool) throws -> Bool {
        let path = "/proc/sys/kernel/bpf_stats_enabled"
        let file = OwnedFD(try path.withCString { cPath in
            try check("open", path, reports: .minusOneAndErrno) { open(cPath, O_RDWR | O_CLOEXEC) }
        })
        var current: UInt8 = 0
        try check("read", path, reports: .minusOneAndErrno) { pread(file.raw, &current, 1, 0) }
        // A system call, not stdio: a buffered write's error would surface
        // only in fclose.
        let setting: [UInt8] = on ? [0x31, 0x0A] : [0x30, 0x0A]  // "1\n", "0\n"
        try setting.withUnsafeBytes { bytes in
            _ = try check("write", path, reports: .minusOneAndErrno) {
                pwrite(file.raw, bytes.baseAddress, bytes.count, 0)
            }
        }
        return current == 0x31
    }
}
