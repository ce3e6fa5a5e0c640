import CDaemon
import NIOPosix

/// Runs blocking work (a scan of a full table, a netlink dump) on NIO's
/// thread pool, so it never occupies a thread of Swift's cooperative pool.
/// `background` work runs at a lower CPU priority (nice 10) so on a busy
/// machine it yields to health checks and the dataplane's writes.
func offload<T: Sendable>(background: Bool = false, _ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await NIOThreadPool.singleton.runIfActive {
        guard background else { return try work() }
        _ = tandem_set_thread_nice(10)
        defer { _ = tandem_set_thread_nice(0) }
        return try work()
    }
}
