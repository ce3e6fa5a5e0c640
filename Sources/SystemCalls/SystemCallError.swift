import Glibc

/// A failed system call, libbpf call or C helper: what was attempted, on
/// what, the errno the call reported (captured once, at the call), and what
/// to do about it. Reads as "cannot attach XDP to eth1: No such device
/// (see 'ip link')".
public struct SystemCallError: Error, CustomStringConvertible, Equatable, Sendable {
    /// What was attempted, as a verb phrase: "attach XDP to".
    public var operation: String
    /// What it was attempted on: "eth1".
    public var target: String
    public var errno: Int32
    /// What to do about it, if there is something to say.
    public var hint: String?

    public init(_ operation: String, _ target: String, errno: Int32, hint: String? = nil) {
        self.operation = operation
        self.target = target
        self.errno = errno
        self.hint = hint
    }

    /// The system's words for the errno: "No such device".
    public var reason: String { String(cString: strerror(errno)) }

    public var description: String {
        var text = "cannot \(operation) \(target): \(reason)"
        if let hint { text += " (\(hint))" }
        return text
    }
}
