import Crypto
import Model

/// One persistence record as nodes exchange it: nothing node-local (no
/// group, real or service ids), only what the config says on every node.
public struct SyncRecord: Equatable, Sendable {
    /// The follow group, named by its lowest service (by protocol, then
    /// port: the key its client-hash seed comes from, see `ClientHash`).
    public var group: ServiceKey
    /// The service whose packet wrote the record (same VIP as the group).
    public var service: ServiceKey
    /// Client address, already masked to the group's netmask.
    public var client: IPAddress
    public var real: IPAddress
    /// When the record was written, wall clock (CLOCK_REALTIME) ns.
    public var writtenNs: UInt64

    public init(group: ServiceKey, service: ServiceKey, client: IPAddress, real: IPAddress, writtenNs: UInt64) {
        self.group = group
        self.service = service
        self.client = client
        self.real = real
        self.writtenNs = writtenNs
    }

    /// The key every node derives from a group's services.
    public static func groupKey(_ services: [ServiceKey]) -> ServiceKey? {
        services.min { ($0.proto.rawValue, $0.port) < ($1.proto.rawValue, $1.port) }
    }
}

/// A sync message (format version 1), network byte order:
///
///     0  "TDSY"  magic                 36 count      u16
///     4  version u8 (1)                38 name       (name length bytes)
///     5  kind    u8                    ..  records   count x 64 bytes
///     6  name length u8 (1...64)       ..  HMAC-SHA256 of all before it
///     7  reserved u8 (0)
///     8  epoch   u64  sender's start, wall-clock ns
///     16 seq     u64  per epoch, from 1
///     24 sent    u64  wall-clock ns
///     32 ref     u32  pull: the request's nonce (0 otherwise)
///
/// A record: family u8 (4 or 6), group protocol u8, group port u16,
/// service port u16, service protocol u8, reserved u8, VIP [16], client
/// [16], real [16] (IPv4 in the first 4 bytes), written u64.
public struct SyncMessage: Equatable, Sendable {
    public enum Kind: UInt8, Sendable {
        /// Records just written (UDP).
        case records = 1
        /// A starting node asks for the peer's table (TCP).
        case pullRequest = 2
        /// One batch of the table (TCP), `ref` = the request's nonce.
        case pullRecords = 3
        /// The table is complete (TCP).
        case pullEnd = 4
    }

    public var kind: Kind
    /// The sender's node name (`node:`).
    public var node: String
    public var epoch: UInt64
    public var seq: UInt64
    public var sentNs: UInt64
    public var ref: UInt32
    public var records: [SyncRecord]

    public init(
        kind: Kind, node: String, epoch: UInt64, seq: UInt64, sentNs: UInt64, ref: UInt32 = 0,
        records: [SyncRecord] = []
    ) {
        self.kind = kind
        self.node = node
        self.epoch = epoch
        self.seq = seq
        self.sentNs = sentNs
        self.ref = ref
        self.records = records
    }

    public static let version: UInt8 = 1
    static let magic: [UInt8] = Array("TDSY".utf8)
    static let headerBytes = 38
    public static let recordBytes = 64
    static let macBytes = 32
    static let maxName = 64
    /// Records per UDP datagram: the datagram stays under 1,280 bytes (the
    /// IPv6 minimum MTU), so it is never fragmented.
    public static let maxDatagramRecords = 17
    /// Records per TCP frame of a pull.
    public static let maxFrameRecords = 1024

    public static func size(records: Int, nameBytes: Int) -> Int {
        headerBytes + nameBytes + records * recordBytes + macBytes
    }
}

/// Why a message or a record was refused; each has its own counter.
public enum Rejection: String, Sendable, CaseIterable, Codable {
    /// Too short, wrong magic or version, lengths that do not add up.
    case malformed
    /// The HMAC does not match: forged, corrupted, or another secret.
    case badMAC = "bad-mac"
    /// Already seen (sequence), or from an earlier run of the sender.
    case replay
    /// Sent too long ago or in the future (clocks further apart than the window).
    case stale
    /// The sender went over the receive rate.
    case rateLimited = "rate-limited"
    /// No follow group with persistence here has that key.
    case unknownGroup = "unknown-group"
    /// That real is not in the group here, or not up here.
    case realNotUsable = "real-not-usable"
    /// The live local record was written later.
    case olderThanLocal = "older-than-local"
}

public enum SyncCodec {
    public struct Error: Swift.Error, Equatable {
        public var rejection: Rejection
        public var detail: String
    }

    public static func encode(_ m: SyncMessage, key: SymmetricKey) -> [UInt8] {
        let name = Array(m.node.utf8.prefix(SyncMessage.maxName))
        var out: [UInt8] = []
        out.reserveCapacity(SyncMessage.size(records: m.records.count, nameBytes: name.count))
        out += SyncMessage.magic
        out += [SyncMessage.version, m.kind.rawValue, UInt8(name.count), 0]
        put(&out, m.epoch)
        put(&out, m.seq)
        put(&out, m.sentNs)
        put(&out, m.ref)
        put(&out, UInt16(m.records.count))
        out += name
        for r in m.records {
            let v4 = r.group.vip.family == .inet
            out += [v4 ? 4 : 6, r.group.proto.rawValue]
            put(&out, r.group.port)
            put(&out, r.service.port)
            out += [r.service.proto.rawValue, 0]
            for a in [r.group.vip, r.client, r.real] {
                out += a.bytes + [UInt8](repeating: 0, count: 16 - a.bytes.count)
            }
            put(&out, r.writtenNs)
        }
        out += HMAC<SHA256>.authenticationCode(for: out, using: key)
        return out
    }

    /// The message, if the bytes are well formed and carry the right MAC.
    /// The MAC is checked before any field is believed.
    public static func decode(_ bytes: [UInt8], key: SymmetricKey) throws(Error) -> SyncMessage {
        let minimum = SyncMessage.size(records: 0, nameBytes: 1)
        guard bytes.count >= minimum, Array(bytes[0..<4]) == SyncMessage.magic else {
            throw Error(rejection: .malformed, detail: "not a sync message")
        }
        guard bytes[4] == SyncMessage.version else {
            throw Error(rejection: .malformed, detail: "version \(bytes[4]), this node speaks \(SyncMessage.version)")
        }
        let body = bytes[..<(bytes.count - SyncMessage.macBytes)]
        let mac = bytes[(bytes.count - SyncMessage.macBytes)...]
        guard HMAC<SHA256>.isValidAuthenticationCode(Array(mac), authenticating: body, using: key) else {
            throw Error(rejection: .badMAC, detail: "bad MAC (another secret, or forged)")
        }
        let nameBytes = Int(bytes[6])
        let count = Int(get(bytes, 36, UInt16.self))
        guard let kind = SyncMessage.Kind(rawValue: bytes[5]), (1...SyncMessage.maxName).contains(nameBytes),
            bytes.count == SyncMessage.size(records: count, nameBytes: nameBytes)
        else { throw Error(rejection: .malformed, detail: "lengths or kind do not add up") }
        let node = String(
            decoding: bytes[SyncMessage.headerBytes..<(SyncMessage.headerBytes + nameBytes)], as: UTF8.self)
        var records: [SyncRecord] = []
        records.reserveCapacity(count)
        var at = SyncMessage.headerBytes + nameBytes
        for _ in 0..<count {
            guard let r = record(bytes, at) else {
                throw Error(rejection: .malformed, detail: "a record with a bad family or protocol")
            }
            records.append(r)
            at += SyncMessage.recordBytes
        }
        return SyncMessage(
            kind: kind, node: node, epoch: get(bytes, 8, UInt64.self), seq: get(bytes, 16, UInt64.self),
            sentNs: get(bytes, 24, UInt64.self), ref: get(bytes, 32, UInt32.self), records: records)
    }

    static func record(_ b: [UInt8], _ at: Int) -> SyncRecord? {
        let width: Int
        switch b[at] {
        case 4: width = 4
        case 6: width = 16
        default: return nil
        }
        guard let groupProto = L4Protocol(rawValue: b[at + 1]), let serviceProto = L4Protocol(rawValue: b[at + 6])
        else { return nil }
        func address(_ offset: Int) -> IPAddress? { IPAddress(bytes: Array(b[(at + offset)..<(at + offset + width)])) }
        guard let vip = address(8), let client = address(24), let real = address(40) else { return nil }
        return SyncRecord(
            group: ServiceKey(vip: vip, port: get(b, at + 2, UInt16.self), proto: groupProto),
            service: ServiceKey(vip: vip, port: get(b, at + 4, UInt16.self), proto: serviceProto),
            client: client, real: real, writtenNs: get(b, at + 56, UInt64.self))
    }

    static func put<T: FixedWidthInteger>(_ out: inout [UInt8], _ v: T) {
        withUnsafeBytes(of: v.bigEndian) { out += $0 }
    }

    static func get<T: FixedWidthInteger>(_ b: [UInt8], _ at: Int, _: T.Type) -> T {
        var v: T = 0
        for i in 0..<(T.bitWidth / 8) { v = v << 8 | T(b[at + i]) }
        return v
    }
}
