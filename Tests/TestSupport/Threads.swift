import BPF
import CTestSupport
import Glibc
import SystemCalls

/// Network namespaces, entered by the calling thread only: XDP attachment
/// and BPF_PROG_TEST_RUN's ingress device name interfaces of the caller's
/// namespace.
///
/// Code between entering and leaving must not suspend: after an `await` a
/// task may go on on another thread, outside the namespace, and leave the
/// first thread in it. `inside` takes a synchronous body for that reason.
public enum NetworkNamespace {
    /// The calling thread's namespace, to come back to.
    public static func current() throws -> OwnedFD {
        OwnedFD(
            try systemCall("open network namespace of", "this thread", reports: .minusOneAndErrno) {
                open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
            })
    }

    /// Enters the namespace named `name` (`ip netns add`'s /run/netns/NAME).
    public static func enter(_ name: String) throws {
        let path = "/run/netns/\(name)"
        let fd = OwnedFD(
            try path.withCString { cPath in
                try systemCall("open network namespace", path, reports: .minusOneAndErrno) {
                    open(cPath, O_RDONLY | O_CLOEXEC)
                }
            })
        try systemCall("enter network namespace", name) { tandem_test_enter_netns(fd.raw) }
    }

    public static func enter(_ namespace: OwnedFD) throws {
        try systemCall("enter network namespace", "fd \(namespace.raw)") { tandem_test_enter_netns(namespace.raw) }
    }

    /// Runs `body` with the calling thread in namespace `name`, then brings
    /// the thread back.
    public static func inside<T>(_ name: String, _ body: () throws -> T) throws -> T {
        let home = try current()
        try enter(name)
        defer {
            // A thread left in the wrong namespace would break whatever runs on it next.
            do { try enter(home) } catch { fatalError("cannot return to the original network namespace: \(error)") }
        }
        return try body()
    }
}

public enum CPUAffinity {
    /// Pins `thread` (0: the calling thread) to `cpu`; nil allows every CPU.
    public static func pin(thread: Int32 = 0, to cpu: Int?) throws {
        try systemCall("pin thread to CPU", cpu.map(String.init) ?? "any") {
            tandem_test_set_affinity(thread, Int32(cpu ?? -1))
        }
    }
}

extension NetworkNamespace {
    /// Removes the namespace named `name` as `ip netns del` does: it goes
    /// once nothing else holds it. Synchronous, for `defer`.
    public static func delete(_ name: String) {
        let path = "/run/netns/\(name)"
        umount2(path, Int32(MNT_DETACH))
        unlink(path)
    }
}
