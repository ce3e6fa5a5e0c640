import Glibc

/// Privileged tests (BPF, XDP, network namespaces) need root. Without it
/// they skip with `reason`, unless TANDEM_REQUIRE_PRIVILEGED=1 (CI), where
/// they run and fail.
public enum Privilege {
    public static let isRoot = geteuid() == 0
    public static let required = getenv("TANDEM_REQUIRE_PRIVILEGED").map { String(cString: $0) } == "1"
    public static let enabled = isRoot || required
    public static let reason =
        "needs root for BPF, XDP and network namespaces; run as root"
        + " (TANDEM_REQUIRE_PRIVILEGED=1 turns this skip into a failure)"
}
