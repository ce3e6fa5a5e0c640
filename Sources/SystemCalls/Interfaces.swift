import Glibc

/// Network interfaces of the calling thread's namespace, by name and by
/// index: the one place their names are looked up.
public enum Interfaces {
    /// The index of interface `name`.
    public static func index(_ name: String) throws(SystemCallError) -> UInt32 {
        let index = try systemCall("find interface", path: name, hint: "see 'ip link'", reports: .zeroAndErrno) {
            Int64(if_nametoindex($0))
        }
        return UInt32(index)
    }

    /// The name of interface `index`, or nil when there is none.
    public static func name(_ index: UInt32) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(IF_NAMESIZE))
        guard if_indextoname(index, &buffer) != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
