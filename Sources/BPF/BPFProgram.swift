import CLibBPF
import Glibc
import SystemCalls

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
        let fd = try systemCall("open pinned program", path) { bpf_obj_get(path) }
        return BPFProgram(fd: fd, name: path, owner: OwnedFD(fd))
    }

    /// A program whose descriptor the caller opened (by id, say).
    public init(adopting fd: OwnedFD, name: String) {
        self.init(fd: fd.raw, name: name, owner: fd)
    }

    public func pin(at path: String) throws {
        try systemCall("pin program \(name) at", path) { bpf_obj_pin(fd, path) }
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
                try systemCall("test-run program", name) { bpf_prog_test_run_opts(fd, &opts) }
            }
        }
        output.removeSubrange(Int(opts.data_size_out)...)
        return TestRun(retval: opts.retval, output: output, durationNs: opts.duration)
    }
}
