import CTestSupport
import Glibc
import Model

/// The project's own raw-frame SYN flooder (Tests/CTestSupport/flood.c):
/// spoofed IPv4 sources, one AF_PACKET socket, sendmmsg in batches. Call
/// it from inside the namespace whose interface it sends from.
public enum SYNFlood {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Sends `count` SYNs to `vip`:`port` from the addresses `sources`
    /// (cycled, each with new source ports on every round) out of
    /// `interface`, addressed to `destination`'s MAC. Returns frames sent.
    @discardableResult
    public static func send(
        interface: String, from source: MACAddress, to destination: MACAddress,
        vip: IPAddress, port: UInt16, sources: ClosedRange<UInt32>, count: Int
    ) throws -> Int {
        guard vip.family == .inet,
            let vipWord = vip.bytes.withUnsafeBytes({ $0.loadUnaligned(as: UInt32.self) })
                as UInt32?
        else { throw Failure(description: "SYNFlood: \(vip) is not an IPv4 address") }
        let sent = tandem_test_flood_syn(
            interface, destination.bytes, source.bytes, UInt32(bigEndian: vipWord), port,
            sources.lowerBound, sources.upperBound - sources.lowerBound + 1, UInt(count))
        if sent < 0 {
            throw Failure(description: "SYN flood out of \(interface): \(String(cString: strerror(Int32(-sent))))")
        }
        return sent
    }
}
