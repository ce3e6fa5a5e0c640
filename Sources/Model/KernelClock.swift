import Glibc

/// The clock of the dataplane's timestamps (bpf_ktime_get_ns() is
/// CLOCK_MONOTONIC), and its conversion to and from the wall clock that
/// nodes compare: a record's write time crosses to a peer as wall time,
/// because two nodes' monotonic clocks start at their own boots.
public enum KernelClock {
    /// CLOCK_MONOTONIC in ns, as the XDP program stamps flows and records.
    public static func monotonicNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Wall clock minus monotonic clock, now: add it to a monotonic time to
    /// get wall time. Read once per batch, so a batch converts alike.
    public static func wallMinusMonotonic() -> Int64 {
        var real = timespec()
        var mono = timespec()
        clock_gettime(CLOCK_REALTIME, &real)
        clock_gettime(CLOCK_MONOTONIC, &mono)
        return (Int64(real.tv_sec) - Int64(mono.tv_sec)) * 1_000_000_000 + Int64(real.tv_nsec) - Int64(mono.tv_nsec)
    }

    /// A monotonic time as wall time, by `offset` (`wallMinusMonotonic`).
    public static func wall(_ monotonicNs: UInt64, offset: Int64) -> UInt64 {
        UInt64(clamping: Int64(bitPattern: monotonicNs) &+ offset)
    }

    /// A wall time as monotonic time, by `offset` (`wallMinusMonotonic`).
    public static func monotonic(_ wallNs: UInt64, offset: Int64) -> UInt64 {
        UInt64(clamping: Int64(clamping: wallNs) &- offset)
    }
}
