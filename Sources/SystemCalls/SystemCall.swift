import Glibc

/// How a C function says it failed, which decides where its errno is read.
public enum FailureReport: Sendable {
    /// libbpf 1.x and Tandem's C helpers: a negative return value is
    /// -errno. The value travels back with the return, so nothing can
    /// overwrite it.
    case negativeErrno
    /// libc: -1, with the reason in the thread's errno.
    case minusOneAndErrno
    /// libc calls that return an index or count: 0, with the reason in the
    /// thread's errno (if_nametoindex).
    case zeroAndErrno
}

/// The one way Tandem makes a system call, a libbpf call or a call into
/// its C helpers: runs `body`, runs it again while it fails with EINTR
/// (when `retryingEINTR`; pass false for calls that must not run twice),
/// and throws the failure with the errno the call reported.
///
/// With `.minusOneAndErrno` and `.zeroAndErrno` the thread's errno is read
/// right after `body` returns, so `body` must be the one call and nothing
/// else: convert Swift strings to C strings outside it (`withCString`, or
/// the `path:` variant below), or their cleanup runs between the call and
/// the read. `target` and `hint` are evaluated only on failure: a call on
/// a hot path pays nothing for its message.
@inlinable
@discardableResult
public func systemCall<Result: FixedWidthInteger & SignedInteger>(
    _ operation: String, _ target: @autoclosure () -> String, hint: @autoclosure () -> String? = nil,
    reports: FailureReport = .negativeErrno, retryingEINTR: Bool = true,
    _ body: () -> Result
) throws(SystemCallError) -> Result {
    let (result, error) = attempt(reports, retryingEINTR, body)
    guard error != 0 else { return result }
    throw SystemCallError(operation, target(), errno: error, hint: hint())
}

/// `systemCall` for a call that takes a path (or an interface name): `body`
/// gets it as a C string, made before the call and freed after its errno
/// is read. The path is the error's target.
@inlinable
@discardableResult
public func systemCall<Result: FixedWidthInteger & SignedInteger>(
    _ operation: String, path: String, hint: @autoclosure () -> String? = nil,
    reports: FailureReport = .negativeErrno, retryingEINTR: Bool = true,
    _ body: (UnsafePointer<CChar>) -> Result
) throws(SystemCallError) -> Result {
    let (result, error) = path.withCString { cPath in attempt(reports, retryingEINTR) { body(cPath) } }
    guard error != 0 else { return result }
    throw SystemCallError(operation, path, errno: error, hint: hint())
}

/// `systemCall` for a non-blocking descriptor: nil where the call would
/// block (EAGAIN, EWOULDBLOCK) or, for connect, goes on in the background
/// (EINPROGRESS). Those are the usual answers of a busy socket, not
/// failures, and cost no error.
@inlinable
public func nonBlockingSystemCall<Result: FixedWidthInteger & SignedInteger>(
    _ operation: String, _ target: @autoclosure () -> String, hint: @autoclosure () -> String? = nil,
    reports: FailureReport = .negativeErrno, retryingEINTR: Bool = true,
    _ body: () -> Result
) throws(SystemCallError) -> Result? {
    let (result, error) = attempt(reports, retryingEINTR, body)
    switch error {
    case 0: return result
    case EAGAIN, EWOULDBLOCK, EINPROGRESS: return nil
    default: throw SystemCallError(operation, target(), errno: error, hint: hint())
    }
}

/// Runs `body` until it succeeds or fails with something other than a
/// retried EINTR; its result, and the errno it failed with (0 if it did
/// not). The only place Tandem's Swift code reads the thread's errno.
@usableFromInline
@inline(__always)
func attempt<Result: FixedWidthInteger & SignedInteger>(
    _ reports: FailureReport, _ retryingEINTR: Bool, _ body: () -> Result
) -> (Result, errno: Int32) {
    while true {
        let result = body()
        let error: Int32
        switch reports {
        case .negativeErrno:
            guard result < 0 else { return (result, 0) }
            error = Int32(truncatingIfNeeded: 0 &- result)
        case .minusOneAndErrno:
            guard result == -1 else { return (result, 0) }
            error = errno
        case .zeroAndErrno:
            guard result == 0 else { return (result, 0) }
            error = errno
        }
        if error == EINTR && retryingEINTR { continue }
        return (result, error)
    }
}
