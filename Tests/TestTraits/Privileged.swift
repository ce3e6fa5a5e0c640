import Testing
import TestSupport

extension Trait where Self == ConditionTrait {
    /// The one mark of a privileged suite or test: it runs as root (or with
    /// TANDEM_REQUIRE_PRIVILEGED=1, where it fails instead of skipping) and
    /// otherwise skips with `Privilege.reason`.
    public static var privileged: Self {
        .enabled(if: Privilege.enabled, Comment(rawValue: Privilege.reason))
    }
}
