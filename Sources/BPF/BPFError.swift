import Glibc

/// A failed BPF operation: what was attempted, on what, the errno, and a hint.
public struct BPFError: Error, CustomStringConvertible, Equatable {
    public var operation: String
    public var target: String
    public var errno: Int32
    public var hint: String?

    public init(_ operation: String, _ target: String, errno: Int32, hint: String? = nil) {
        self.operation = operation
        self.target = target
        self.errno = errno
        self.hint = hint
    }

    public var description: String {
        var text = "cannot \(operation) \(target): \(String(cString: strerror(errno)))"
        if let hint { text += " (\(hint))" }
        return text
    }
}
