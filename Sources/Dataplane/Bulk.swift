import Model
import Glibc
import TandemABI

extension Dataplane {
    /// Writes `count` live persistence records for `real` in `group`, with
    /// IPv4 client keys counting up from `firstClient` (host order). For
    /// benchmarks: returns how many records the map holds afterwards.
    public func fillRecords(count: Int, group: UInt32, real: UInt32, firstClient: UInt32) throws -> Int {
        guard let gen = reals.lookup(real)?.rec_gen else { return 0 }
        let nowNs = KernelClock.monotonicNs()
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

extension Dataplane {
    /// Writes `count` copies of the flow entry of `template` (which must be
    /// present) under keys that differ from it in source port and address:
    /// port 0 of `firstClient` (host order) counting up, carrying into the
    /// next address after 65535. For benchmarks: returns how many flows the
    /// map holds afterwards.
    public func fillFlows(like template: tandem_flow_key, count: Int, firstClient: UInt32) throws -> Int {
        guard let value = flows.lookup(template) else { return 0 }
        var chunk: [(tandem_flow_key, tandem_flow)] = []
        chunk.reserveCapacity(65536)
        for i in 0..<count {
            var key = template
            withUnsafeMutableBytes(of: &key.src) { raw in
                raw.initializeMemory(as: UInt8.self, repeating: 0)
                withUnsafeBytes(of: (firstClient &+ UInt32(i >> 16)).bigEndian) { raw.copyMemory(from: $0) }
            }
            key.sport = UInt16(i & 0xFFFF)
            chunk.append((key, value))
            if chunk.count == 65536 || i == count - 1 {
                try flows.updateBatch(chunk)
                chunk.removeAll(keepingCapacity: true)
            }
        }
        return flows.keys().count
    }

    /// The keys of the flow table (for benchmarks and tests).
    public func flowKeys() -> [tandem_flow_key] { flows.keys() }
}
