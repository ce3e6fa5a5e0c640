import Glibc

/// A file descriptor with exactly one owner; closed when the owner goes.
public final class OwnedFD: @unchecked Sendable {
    public let raw: Int32

    public init(_ raw: Int32) { self.raw = raw }

    deinit { close(raw) }
}
