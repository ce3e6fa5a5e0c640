import Testing
@testable import Model

@Suite("Schedulers")
struct SchedulerTests {
    static let size = 4093

    static func members(_ count: Int, weight: (Int) -> UInt32 = { _ in 1 }) -> [RingMember] {
        (0..<count).map { i in
            RingMember(id: UInt32(i + 1), key: IPAddress("198.18.1.\(i + 1)")!.bytes, weight: weight(i))
        }
    }

    static func share(_ table: [UInt32]) -> [UInt32: Int] {
        table.reduce(into: [:]) { $0[$1, default: 0] += 1 }
    }

    @Test("maglev fills every slot and spreads equal weights evenly")
    func maglevBalanced() {
        let table = Scheduler.maglev.ring(Self.members(10), size: Self.size)
        #expect(table.count == Self.size)
        let counts = Self.share(table)
        #expect(counts.count == 10)
        for (_, n) in counts { #expect(abs(n - Self.size / 10) <= Self.size / 100) }
    }

    @Test("maglev entries follow weights 1:2:3:4")
    func maglevWeighted() {
        let table = Scheduler.maglev.ring(Self.members(4) { UInt32($0 + 1) }, size: Self.size)
        let counts = Self.share(table)
        for id in 1...4 {
            let expected = Double(Self.size) * Double(id) / 10
            #expect(abs(Double(counts[UInt32(id)]!) - expected) / expected < 0.02)
        }
    }

    @Test("removing one of N reals moves about 1/N of the keys", arguments: [5, 10, 32])
    func maglevMinimalDisruption(n: Int) {
        let all = Self.members(n)
        let before = Scheduler.maglev.ring(all, size: Self.size)
        let removed = all[n / 2].id
        let after = Scheduler.maglev.ring(all.filter { $0.id != removed }, size: Self.size)
        let moved = zip(before, after).filter { $0 != $1 }.count
        let lost = before.filter { $0 == removed }.count
        // Every slot of the removed real must move; few others may.
        #expect(moved >= lost)
        let fraction = Double(moved) / Double(Self.size)
        // Maglev's disruption is a small multiple of 1/N when the table is
        // only ~100x N (4093 slots vs 32 reals): bound it at 2x.
        #expect(fraction < 1.0 / Double(n) * 2, "moved \(fraction), 1/N = \(1.0 / Double(n))")
        #expect(!after.contains(removed))
    }

    @Test("maglev does not depend on member order or id")
    func maglevStable() {
        let a = Self.members(8)
        let b = a.reversed().map { RingMember(id: $0.id, key: $0.key, weight: $0.weight) }
        #expect(Scheduler.maglev.ring(a, size: Self.size) == Scheduler.maglev.ring(Array(b), size: Self.size))
    }

    @Test("wrr cycle follows weights and interleaves")
    func wrr() {
        let table = Scheduler.wrr.ring(Self.members(3) { [5, 1, 1][$0] }, size: Self.size)
        #expect(table.count == 7)
        #expect(Self.share(table) == [1: 5, 2: 1, 3: 1])
        // Smooth: the heavy real never runs more than 3 times in a row here.
        #expect(table == [1, 1, 2, 1, 3, 1, 1])
    }

    @Test("wrr scales large weights into the ring")
    func wrrScaled() {
        let table = Scheduler.wrr.ring(Self.members(2) { [60000, 20000][$0] }, size: Self.size)
        #expect(table.count <= Self.size)
        let counts = Self.share(table)
        #expect(abs(Double(counts[1]!) / Double(counts[2]!) - 3) < 0.01)
    }

    @Test("fixed picks the highest weight, ties to the lowest address")
    func fixed() {
        #expect(Scheduler.fixed.ring(Self.members(3) { [1, 5, 2][$0] }, size: Self.size) == [2])
        #expect(Scheduler.fixed.ring(Self.members(3) { _ in 7 }, size: Self.size) == [1])
    }

    @Test("weight 0 means drain: never scheduled; no member: empty table")
    func zeroWeight() {
        let table = Scheduler.maglev.ring(Self.members(3) { $0 == 0 ? 0 : 1 }, size: Self.size)
        #expect(!table.contains(1))
        #expect(Scheduler.maglev.ring(Self.members(2) { _ in 0 }, size: Self.size).isEmpty)
    }
}

@Suite("Addresses")
struct AddressTests {
    @Test func parsesAndMasks() {
        #expect(IPAddress("198.18.0.1")?.bytes == [198, 18, 0, 1])
        #expect(IPAddress("2001:db8::1")?.bytes.count == 16)
        #expect(IPAddress("198.18.0.300") == nil)
        #expect(IPAddress("198.18.7.9")!.masked(prefix: 24).description == "198.18.7.0")
        #expect(IPAddress("2001:db8:1:2::9")!.masked(prefix: 48).description == "2001:db8:1::")
        #expect(IPAddress("198.18.7.9")!.masked(prefix: 0).description == "0.0.0.0")
        #expect(MACAddress("02:00:c6:12:00:15")?.description == "02:00:c6:12:00:15")
        #expect(MACAddress("02:00:c6:12:00") == nil)
    }
}
