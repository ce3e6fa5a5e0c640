import CLibBPF
import Glibc

/// Network namespaces, entered by the calling thread only. XDP attachment
/// and BPF_PROG_TEST_RUN's ingress device name interfaces of the caller's
/// namespace.
public enum NetworkNamespace {
    /// The calling thread's namespace, to come back to.
    public static func current() throws -> OwnedFD {
        OwnedFD(try check("open network namespace of", "this thread", reports: .minusOneAndErrno) {
            open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
        })
    }

    /// Enters the namespace named `name` (`ip netns add`'s /run/netns/NAME).
    public static func enter(_ name: String) throws {
        let path = "/run/netns/\(name)"
        let fd = OwnedFD(try path.withCString { cPath in
            try check("open network namespace", path, reports: .minusOneAndErrno) {
                open(cPath, O_RDONLY | O_CLOEXEC)
            }
        })
        try check("enter network namespace", name) { tandem_enter_net_namespace(fd.raw) }
    }

    public static func enter(_ namespace: OwnedFD) throws {
        try check("enter network namespace", "fd \(namespace.raw)") { tandem_enter_net_namespace(namespace.raw) }
    }
}

public enum CPUAffinity {
    /// Pins `thread` (0: the calling thread) to `cpu`; nil allows every CPU.
    public static func pin(thread: Int32 = 0, to cpu: Int?) throws {
        try check("pin thread to CPU", cpu.map(String.init) ?? "any") { tandem_pin_thread(thread, Int32(cpu ?? -1)) }
    }
}
