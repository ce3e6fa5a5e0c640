/// How a service spreads new clients over its reals. Every scheduler is
/// expressed as a lookup table (a "ring") that the dataplane indexes.
public enum Scheduler: String, Sendable, CaseIterable, Codable {
    /// Weighted consistent hashing (Maglev): hashes the persistence key
    /// when persistence is on, so every node and every port of a follow
    /// group with the same reals picks the same real.
    case maglev
    /// Weighted round robin: the ring is the smooth WRR sequence.
    case wrr
    /// The highest-weight real takes everything; the next takes over.
    case fixed
}

/// A real as a scheduler sees it.
public struct RingMember: Sendable, Equatable {
    public var id: UInt32
    /// Stable identity for hashing: the real's address bytes, so the table
    /// does not depend on id allocation or config order.
    public var key: [UInt8]
    public var weight: UInt32

    public init(id: UInt32, key: [UInt8], weight: UInt32) {
        self.id = id
        self.key = key
        self.weight = weight
    }
}

extension Scheduler {
    /// The table for `members` (weight 0 members are left out). Empty when
    /// no member has weight.
    public func ring(_ members: [RingMember], size: Int) -> [UInt32] {
        let live = members.filter { $0.weight > 0 }.sorted { $0.key.lexicographicallyPrecedes($1.key) }
        guard !live.isEmpty else { return [] }
        switch self {
        case .maglev: return Maglev.table(live, size: size)
        case .wrr: return SmoothWRR.sequence(live, maxLength: size)
        case .fixed:
            // Highest weight wins; ties go to the lowest address.
            let best = live.max { a, b in
                a.weight < b.weight || (a.weight == b.weight && b.key.lexicographicallyPrecedes(a.key))
            }!
            return [best.id]
        }
    }
}

/// Maglev lookup table (Eisenbud et al., NSDI'16) with weights: each round,
/// a member places an entry once its accumulated weight reaches the largest
/// weight, so entries are proportional to weight.
public enum Maglev {
    public static func table(_ members: [RingMember], size: Int) -> [UInt32] {
        precondition(size > 1)
        let n = members.count
        let offsets = members.map { Int(fnv1a($0.key, seed: 0x9E37_79B9_7F4A_7C15) % UInt64(size)) }
        let skips = members.map { Int(fnv1a($0.key, seed: 0xC2B2_AE3D_27D4_EB4F) % UInt64(size - 1)) + 1 }
        let maxWeight = UInt64(members.map(\.weight).max()!)
        var next = [Int](repeating: 0, count: n)
        var credit = [UInt64](repeating: 0, count: n)
        var table = [UInt32](repeating: 0, count: size)
        var taken = [Bool](repeating: false, count: size)
        var filled = 0
        while true {
            for i in 0..<n {
                credit[i] += UInt64(members[i].weight)
                guard credit[i] >= maxWeight else { continue }
                credit[i] -= maxWeight
                var slot = (offsets[i] + next[i] * skips[i]) % size
                while taken[slot] {
                    next[i] += 1
                    slot = (offsets[i] + next[i] * skips[i]) % size
                }
                table[slot] = members[i].id
                taken[slot] = true
                next[i] += 1
                filled += 1
                if filled == size { return table }
            }
        }
    }

    /// FNV-1a, 64-bit, with a seed mixed in first: deterministic across
    /// processes (Swift's Hasher is not).
    static func fnv1a(_ bytes: [UInt8], seed: UInt64) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325 ^ seed
        for byte in bytes {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        // Final avalanche (splitmix64), so close addresses spread.
        hash ^= hash >> 30
        hash = hash &* 0xBF58_476D_1CE4_E5B9
        hash ^= hash >> 27
        hash = hash &* 0x94D0_49BB_1331_11EB
        return hash ^ (hash >> 31)
    }
}

/// nginx's smooth weighted round robin, unrolled into one cycle. Weights
/// are scaled down when their sum exceeds `maxLength`.
public enum SmoothWRR {
    public static func sequence(_ members: [RingMember], maxLength: Int) -> [UInt32] {
        var weights = members.map { Int($0.weight) }
        let sum = weights.reduce(0, +)
        if sum > maxLength {
            weights = weights.map { max(1, $0 * maxLength / sum) }
            while weights.reduce(0, +) > maxLength, let i = weights.indices.max(by: { weights[$0] < weights[$1] }) {
                weights[i] -= 1
            }
        }
        let total = weights.reduce(0, +)
        var current = [Int](repeating: 0, count: members.count)
        var result: [UInt32] = []
        result.reserveCapacity(total)
        for _ in 0..<total {
            var best = 0
            for i in members.indices {
                current[i] += weights[i]
                if current[i] > current[best] { best = i }
            }
            current[best] -= total
            result.append(members[best].id)
        }
        return result
    }
}
