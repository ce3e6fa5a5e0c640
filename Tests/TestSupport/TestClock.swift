import Glibc
import Model

/// The one clock of tests and benchmarks: CLOCK_MONOTONIC, which is what
/// the XDP program's bpf_ktime_get_ns reads, so ages written by a test and
/// compared by the program agree.
public enum TestClock {
    /// Now, in ns.
    public static func nowNs() -> UInt64 { KernelClock.monotonicNs() }

    /// Seconds from `startNs` (a `nowNs()`) to now.
    public static func seconds(since startNs: UInt64) -> Double {
        Double(nowNs() - startNs) / 1e9
    }

    /// Seconds `body` took.
    public static func measure(_ body: () throws -> Void) rethrows -> Double {
        let start = nowNs()
        try body()
        return seconds(since: start)
    }

    /// Polls `condition` every 50 ms for up to `seconds`; the seconds it
    /// took to hold, or nil if it never did.
    public static func within(_ seconds: Double, _ condition: () async -> Bool) async -> Double? {
        let start = nowNs()
        while Self.seconds(since: start) < seconds {
            if await condition() { return Self.seconds(since: start) }
            try? await Task.sleep(nanoseconds: 50_000_000)
        }
        // One last look at the deadline; a condition that itself took past
        // it (a slow status) does not count as met in time.
        let met = await condition()
        let took = Self.seconds(since: start)
        return met && took <= seconds + 0.5 ? took : nil
    }
}
