import NIOPosix

/// Runs blocking work (a scan of a full table, a subprocess) on NIO's
/// thread pool, so it never occupies a thread of Swift's cooperative pool.
func offload<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await NIOThreadPool.singleton.runIfActive(work)
}
