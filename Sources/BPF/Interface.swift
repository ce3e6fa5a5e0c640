import Glibc

/// Network interfaces of the calling thread's namespace, by name.
public enum Interface {
    public static func index(_ name: String) throws -> UInt32 {
        let index = if_nametoindex(name)
        guard index != 0 else {
            throw BPFError("find interface", name, errno: ENODEV, hint: "see 'ip link'")
        }
        return index
    }
}
