import Glibc

/// How a C function says it failed, which decides where its errno is read.
public enum FailureReport {
    /// libbpf 1.x and the CLibBPF shim: a negative return value is -errno.
    /// The value travels back with the return, so nothing can overwrite it.
    case negativeErrno
    /// libc: -1, with the reason in the thread's errno. The errno is read
    /// right after `body` returns, so `body` must be the one call and
    /// nothing else: convert Swift strings to C strings outside it
    /// (`withCString`), or their cleanup runs between the call and the read.
    case minusOneAndErrno
}

/// The one way the BPF module makes a libbpf call or a system call: runs
/// `body`, retries it while it fails with EINTR (when `retryingEINTR`; pass
/// false for calls that must not run twice), and throws the failure as a
/// BPFError carrying the errno. Public for the test-support helpers that
/// make system calls of their own.
@inline(__always)
@discardableResult
public func check<Result: FixedWidthInteger & SignedInteger>(
    _ operation: String, _ target: String, hint: String? = nil,
    reports: FailureReport = .negativeErrno, retryingEINTR: Bool = true,
    _ body: () -> Result
) throws -> Result {
    while true {
        let rc = body()
        let err: Int32
        switch reports {
        case .negativeErrno:
            guard rc < 0 else { return rc }
            err = Int32(truncatingIfNeeded: -rc)
        case .minusOneAndErrno:
            guard rc == -1 else { return rc }
            err = errno
        }
        if err == EINTR && retryingEINTR { continue }
        throw BPFError(operation, target, errno: err, hint: hint)
    }
}
