/// Refuses a message seen before: per sender, the newest epoch (the
/// sender's start time) and a 64-wide window of sequence numbers below the
/// highest seen (datagrams may arrive out of order, as in IPsec's ESP).
/// Messages sent outside `windowNs` of the receiver's clock are refused too,
/// which also covers a receiver that restarted and forgot the sequences.
public struct ReplayGuard: Sendable {
    struct Sender {
        var epoch: UInt64
        var highest: UInt64
        /// Bit i: sequence `highest - i` was seen.
        var seen: UInt64
    }

    public let windowNs: UInt64
    private var senders: [String: Sender] = [:]

    public init(windowNs: UInt64 = 30_000_000_000) { self.windowNs = windowNs }

    /// Whether `m` is new; if so it is remembered. Call only after the MAC
    /// was checked: an unauthenticated message must not move the window.
    public mutating func admit(_ m: SyncMessage, nowNs: UInt64) -> Rejection? {
        let skew = m.sentNs > nowNs ? m.sentNs - nowNs : nowNs - m.sentNs
        if skew > windowNs || m.epoch > m.sentNs { return .stale }
        guard m.seq > 0 else { return .replay }
        guard var s = senders[m.node], m.epoch <= s.epoch else {
            // First message, or the sender restarted.
            senders[m.node] = Sender(epoch: m.epoch, highest: m.seq, seen: 1)
            return nil
        }
        if m.epoch < s.epoch { return .replay }
        if m.seq > s.highest {
            let shift = m.seq - s.highest
            s.seen = shift >= 64 ? 1 : (s.seen << shift) | 1
            s.highest = m.seq
        } else {
            let back = s.highest - m.seq
            if back >= 64 || s.seen & (1 << back) != 0 { return .replay }
            s.seen |= 1 << back
        }
        senders[m.node] = s
        return nil
    }
}

/// A token bucket: `rate` per second, up to `burst` at once.
public struct TokenBucket: Sendable {
    public let rate: Double
    public let burst: Double
    private var tokens: Double
    private var lastNs: UInt64?

    public init(rate: Double, burst: Double) {
        self.rate = rate
        self.burst = burst
        self.tokens = burst
    }

    public mutating func take(nowNs: UInt64) -> Bool {
        if let lastNs, nowNs > lastNs { tokens = min(burst, tokens + Double(nowNs - lastNs) / 1e9 * rate) }
        lastNs = max(lastNs ?? nowNs, nowNs)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}
