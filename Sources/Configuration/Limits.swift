import Model
import TandemABI

/// What `tandem check` refuses because `serve` could not do it: the
/// dataplane's limits (from tandem_abi.h), the kernel's for names and
/// paths, and addresses that cannot be a service or a server.
enum Limits {
    static let maxServices = Int(TANDEM_MAX_SERVICES)
    /// A unix socket path fits sun_path: 108 bytes with its NUL.
    static let maxSocketPathBytes = 107
    static let maxPathBytes = 4095
    static let maxNameBytes = 64

    /// Linux interface names: 1-15 bytes, no "/", ":" or white space.
    static func badInterfaceName(_ name: String) -> String? {
        let bytes = Array(name.utf8)
        if bytes.isEmpty || bytes.count > 15 {
            return "\(printable(name)) is not an interface name: 1 to 15 bytes (see 'ip link')"
        }
        if name == "." || name == ".."
            || bytes.contains(where: { $0 <= 0x20 || $0 == 0x7F || $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: ":") })
        {
            return
                "\(printable(name)) is not an interface name: no spaces, control characters, \"/\" or \":\" (see 'ip link')"
        }
        return nil
    }

    /// An absolute path of at most `max` bytes, without control characters.
    static func badPath(_ path: String, max: Int) -> String? {
        if !path.hasPrefix("/") { return "must be an absolute path" }
        if path.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            return "\(printable(path)) holds control characters"
        }
        if path.utf8.count > max { return "is \(path.utf8.count) bytes long; at most \(max)" }
        return nil
    }

    /// Service names appear in logs, metrics labels and the terminal.
    static func badName(_ name: String) -> String? {
        let allowed = name.unicodeScalars.allSatisfy {
            ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0)
                || "-_.".unicodeScalars.contains($0)
        }
        if !allowed || name.utf8.count > maxNameBytes {
            return
                "\(printable(name)) is not a service name: 1 to \(maxNameBytes) letters, digits, \"-\", \"_\" or \".\""
        }
        return nil
    }

    static let maxNodeNameBytes = 64

    /// Node names label status, log lines and metrics: printable, no white
    /// space, bounded.
    static func badNodeName(_ name: String) -> String? {
        let visible = name.unicodeScalars.allSatisfy {
            $0.value > 0x20 && $0.value != 0x7F && !(0x80..<0xA0).contains($0.value)
                && !$0.properties.isWhitespace && $0 != "\"" && $0 != "\\"
        }
        if name.isEmpty || !visible || name.utf8.count > maxNodeNameBytes {
            return
                "\(printable(name)) is not a node name: 1 to \(maxNodeNameBytes) bytes of printable characters, no spaces, quotes or backslashes"
        }
        return nil
    }

    /// The kernel's own routing tables, which Tandem must not write.
    static let reservedTables: [UInt32: String] = [253: "default", 254: "main", 255: "local"]

    /// Why `table` cannot hold Tandem's routes, or nil.
    static func badTable(_ table: Int) -> String? {
        guard (1...Int(UInt32.max)).contains(table) else {
            return "must be a routing table id in 1...\(UInt32.max), not \(table)"
        }
        if let name = reservedTables[UInt32(table)] {
            return
                "\(table) is the kernel's '\(name)' table; choose a table of Tandem's own (e.g. 100) and import it into the routing daemon"
        }
        return nil
    }

    /// Why `address` is not a unicast host address, or nil when it is one.
    static func notUnicast(_ address: IPAddress) -> String? {
        let b = address.bytes
        if address.family == .inet {
            if b == [0, 0, 0, 0] { return "the unspecified address" }
            if b == [255, 255, 255, 255] { return "the broadcast address" }
            if b[0] == 0 { return "in 0.0.0.0/8 (this network)" }
            if b[0] == 127 { return "a loopback address" }
            if b[0] >= 224 && b[0] <= 239 { return "a multicast address" }
            if b[0] >= 240 { return "in 240.0.0.0/4 (reserved)" }
            return nil
        }
        if b.allSatisfy({ $0 == 0 }) { return "the unspecified address" }
        if b == [UInt8](repeating: 0, count: 15) + [1] { return "the loopback address" }
        if b[0] == 0xFF { return "a multicast address" }
        if b[0] == 0xFE && b[1] & 0xC0 == 0x80 { return "a link-local address" }
        return nil
    }

    /// `text` safe to print: control characters and quotes escaped, so a
    /// config cannot write escape sequences to the operator's terminal.
    static func printable(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F || (0x80..<0xA0).contains(scalar.value) {
                    out += "\\u{\(String(scalar.value, radix: 16))}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }
}

/// Kernel memory of the LRU tables, as the kernel accounts it (the
/// `memlock` of `bpftool map show`): per entry, the hash element (48 bytes
/// of list and LRU links), key and value each rounded up to 8 bytes, and a
/// 16-byte bucket per power-of-two slot. A test checks it against the kernel.
public enum TableMemory {
    static let elementOverhead = 48
    static let bucketBytes = 16

    static func bytes(entries: Int, key: Int, value: Int) -> Int {
        func round8(_ n: Int) -> Int { (n + 7) / 8 * 8 }
        var buckets = 1
        while buckets < entries { buckets <<= 1 }
        return entries * (elementOverhead + round8(key) + round8(value)) + buckets * bucketBytes
    }

    /// Bytes per flow entry (5-tuple key, real/generations/counters index).
    public static let flowEntryBytes =
        elementOverhead + MemoryLayout<tandem_flow_key>.size + MemoryLayout<tandem_flow>.size + bucketBytes
    /// Bytes per record entry (group and masked client key, real/age).
    public static let recordEntryBytes =
        elementOverhead + MemoryLayout<tandem_persist_key>.size + MemoryLayout<tandem_persist>.size + bucketBytes

    public static func flows(_ entries: Int) -> Int {
        bytes(entries: entries, key: MemoryLayout<tandem_flow_key>.size, value: MemoryLayout<tandem_flow>.size)
    }

    public static func records(_ entries: Int) -> Int {
        bytes(
            entries: entries, key: MemoryLayout<tandem_persist_key>.size, value: MemoryLayout<tandem_persist>.size)
    }

    /// "32.0 MiB"
    public static func text(_ bytes: Int) -> String {
        let (unit, size) = bytes >= 1 << 30 ? ("GiB", 1 << 30) : ("MiB", 1 << 20)
        let tenths = (bytes * 10 + size / 2) / size
        return "\(tenths / 10).\(tenths % 10) \(unit)"
    }
}
