import Foundation

/// What this build made, found beside the running test bundle or benchmark
/// (they share one products directory, debug or release, whatever the
/// triple), not at a fixed `.build/debug` path.
public enum Built {
    /// The products directory of the running executable.
    public static let directory: String = {
        let exe =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().path
    }()

    /// The `tandem` command of this build.
    public static var tandem: String { directory + "/tandem" }
}
