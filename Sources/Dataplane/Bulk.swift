import Model
import Glibc
import TandemABI

extension Dataplane {
    /// Writes `count` live persistence records for `real` in `group`, with
    /// IPv4 client keys counting up from `firstClient` (host order). For
    /// benchmarks: returns how many records the map holds afterwards.
    public func fillRecords(count: Int, group: UInt32, real: UInt32, firstClient: UInt32) throws -> Int {
        guard let gen = reals.lookup(real)?.rec_gen else { return 0 }
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let nowNs = UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
        let base = firstClient
        var chunk: [(tandem_persist_key, tandem_persist)] = []
        chunk.reserveCapacity(65536)
        for i in 0..<count {
            var key = tandem_persist_key()
            key.group = group
            withUnsafeMutableBytes(of: &key.client) { raw in
                withUnsafeBytes(of: (base &+ UInt32(i)).bigEndian) { raw.copyMemory(from: $0) }
            }
            key.af = UInt8(TANDEM_AF_INET.rawValue)
            var value = tandem_persist()
            value.real = real
            value.rec_gen = gen
            value.last_seen_ns = nowNs
            value.written_ns = nowNs
            chunk.append((key, value))
            if chunk.count == 65536 || i == count - 1 {
                try persist.updateBatch(chunk)
                chunk.removeAll(keepingCapacity: true)
            }
        }
        return persist.keys().count
    }
}
