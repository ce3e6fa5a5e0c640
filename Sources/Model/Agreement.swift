// What makes nodes agree. Several nodes behind an ECMP router must pick
// the same real for the same client, whatever ids each allocated on its
// own reload history: so nothing hashed depends on an id, and each
// service's scheduling inputs fold into a digest operators can compare.

/// The seed of the client hash (`tandem_hash_client` in tandem_abi.h).
public enum ClientHash {
    /// The seed of a follow group whose services have `keys` (one VIP, a
    /// rule of the config): FNV-1a 64 over a tag and the group's lowest key
    /// (by protocol, then port) — family byte, VIP bytes, protocol byte,
    /// port as 2 bytes little-endian — folded to 32 bits (high ^ low). Unlinked groups on one VIP get their own seeds, so they
    /// spread a client on their own; linking another port to a group (say
    /// :443/udp to :80 and :443/tcp) keeps its seed, so no client moves.
    public static func seed(group keys: [ServiceKey]) -> UInt32 {
        guard let first = keys.min(by: { ($0.proto.rawValue, $0.port) < ($1.proto.rawValue, $1.port) }) else {
            return 0
        }
        var h = FNV64()
        h.add(Array("tandem-client-seed".utf8))
        h.add(first.vip)
        h.add(first.proto.rawValue)
        h.add(UInt8(truncatingIfNeeded: first.port))
        h.add(UInt8(truncatingIfNeeded: first.port >> 8))
        return UInt32(truncatingIfNeeded: h.value ^ (h.value >> 32))
    }
}

/// A digest of everything a service's scheduler decides from: two nodes
/// whose digests agree pick the same real for every client (for `wrr` the
/// cycle is the same; where it starts depends on each CPU's cursor).
public struct RingDigest: Hashable, Sendable, CustomStringConvertible {
    public var value: UInt64

    /// FNV-1a 64 over, in order: a version tag; the scheduler's name; the
    /// client-hash seed (4 bytes, little-endian); the persistence netmask
    /// (one byte, 255 without persistence); the ring length (4 bytes) and
    /// each entry as its real's *address* (family byte 4 or 6, then 4 or 16
    /// bytes); the sorry server's address (family 0 when none). Real ids
    /// are node-local and left out.
    public init(scheduler: Scheduler, seed: UInt32, netmask: Int?, ring: [IPAddress?], sorry: IPAddress?) {
        var h = FNV64()
        h.add(Array("tandem-ring-1".utf8))
        h.add(Array(scheduler.rawValue.utf8) + [0])
        h.add(seed)
        h.add(UInt8(clamping: netmask ?? 255))
        h.add(UInt32(ring.count))
        for address in ring { h.add(address) }
        h.add(sorry)
        value = h.value
    }

    /// 16 hex digits.
    public var description: String {
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

extension DataplaneModel {
    /// The digest of `service` whose live ring is `ring` (real ids).
    public func ringDigest(for service: Service, ring: [UInt32], addresses: [UInt32: IPAddress]) -> RingDigest {
        RingDigest(
            scheduler: service.scheduler, seed: service.hashSeed, netmask: service.persistence?.netmask,
            ring: ring.map { addresses[$0] }, sorry: service.sorryReal.flatMap { addresses[$0] })
    }
}

/// FNV-1a, 64-bit: small, deterministic across processes and hosts (Swift's
/// Hasher is not), and easy to reproduce elsewhere.
struct FNV64 {
    private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325

    mutating func add(_ bytes: [UInt8]) {
        for byte in bytes { add(byte) }
    }

    mutating func add(_ byte: UInt8) {
        value ^= UInt64(byte)
        value = value &* 0x0000_0100_0000_01B3
    }

    mutating func add(_ word: UInt32) {
        add([
            UInt8(truncatingIfNeeded: word), UInt8(truncatingIfNeeded: word >> 8),
            UInt8(truncatingIfNeeded: word >> 16), UInt8(truncatingIfNeeded: word >> 24)
        ])
    }

    /// Family byte (4 or 6; 0 for none), then the address bytes.
    mutating func add(_ address: IPAddress?) {
        guard let address else { return add(UInt8(0)) }
        add(UInt8(address.family == .inet ? 4 : 6))
        add(address.bytes)
    }
}
