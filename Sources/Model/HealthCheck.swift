/// Health-check timing; durations in nanoseconds.
public struct CheckTiming: Hashable, Sendable {
    public var intervalNs: UInt64 = 2_000_000_000
    public var timeoutNs: UInt64 = 1_000_000_000
    public var rise = 2
    public var fall = 3
    public init() {}
}

public enum CheckType: String, Sendable, CaseIterable { case tcp, http, https, tls, none }

/// How a service checks its reals (SPEC §4).
public struct HealthCheck: Hashable, Sendable {
    public var type: CheckType = .tcp
    public var timing = CheckTiming()
    public var method = "GET"
    public var path = "/"
    public var host: String?
    /// Accepted status codes, as inclusive ranges (default 200-299).
    public var expect: [ClosedRange<Int>] = [200...299]
    /// Substring the body must contain.
    public var body: String?
    /// Verify the real's certificate (https, tls); off by default.
    public var verify = false
    /// Port to check; the real's port when nil.
    public var port: UInt16?
    public init() {}
}

extension HealthCheck {
    /// "http GET /health every 2s rise 2 fall 3", as check and status print it.
    public var summary: String {
        var text = type.rawValue
        if type == .http || type == .https { text += " \(method) \(path)" }
        if type != .none {
            text += " every \(DurationText.format(timing.intervalNs)) rise \(timing.rise) fall \(timing.fall)"
        }
        return text
    }
}
