import Foundation
import TestSupport
import Testing

/// `tools/package`: the Debian package an operator installs instead of
/// running the demo. It is built from the debug binary here (the optimized,
/// self-contained build is what `tools/package` makes by default), taken
/// apart in a scratch root, and its unit checked by systemd's own verifier
/// (PID 1 here is not systemd, so the unit cannot be started).
@Suite("Debian package and systemd unit")
struct PackageTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    @Test("the package holds the binary, the unit, the config, completions and the man page; the unit verifies")
    func package() async throws {
        let scratch = "/tmp/tandem-test-\(getpid())-package"
        try? FileManager.default.removeItem(atPath: scratch)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let built = try await Command.run(
            Self.root + "/tools/package", [scratch + "/out"],
            environment: ["TANDEM_PACKAGE_BINARY": SnapshotTests.tandem])
        #expect(built.status == 0, "\(built.output.suffix(800))")
        let deb = try #require(
            built.output.split(separator: "\n").last.map(String.init), "tools/package names the .deb")
        #expect(deb.hasSuffix(".deb") && FileManager.default.fileExists(atPath: deb), "\(built.output.suffix(300))")

        let listing = try await Command.output("dpkg-deb", ["-c", deb])
        for path in [
            "./usr/sbin/tandem", "./lib/systemd/system/tandem.service", "./etc/tandem/tandem.yaml",
            "./usr/share/bash-completion/completions/tandem", "./usr/share/zsh/vendor-completions/_tandem",
            "./usr/share/fish/vendor_completions.d/tandem.fish", "./usr/share/man/man8/tandem.8.gz"
        ] {
            #expect(listing.contains(path), "\(path) is in the package")
        }
        let fields = try await Command.output("dpkg-deb", ["-f", deb, "Package", "Depends"])
        #expect(fields.contains("Package: tandem") && fields.contains("libbpf1"), "\(fields)")

        let tree = scratch + "/root"
        _ = try await Command.output("dpkg-deb", ["-x", deb, tree])
        // The shipped config is valid; the binary answers.
        let check = try await Command.run(
            tree + "/usr/sbin/tandem", ["check", "--config", tree + "/etc/tandem/tandem.yaml"])
        #expect(check.status == 0, "\(check.output)")
        // The unit, pointed at the scratch root's binary, passes systemd-analyze.
        let unit = try String(contentsOfFile: tree + "/lib/systemd/system/tandem.service", encoding: .utf8)
        #expect(unit.contains("Type=notify") && unit.contains("ExecReload=/bin/kill -HUP $MAINPID"))
        let copy = scratch + "/tandem.service"
        try unit.replacingOccurrences(of: "/usr/sbin/tandem", with: tree + "/usr/sbin/tandem")
            .write(toFile: copy, atomically: true, encoding: .utf8)
        let verified = try await Command.run("systemd-analyze", ["verify", "--man=no", copy])
        #expect(verified.status == 0 && verified.output.isEmpty, "systemd-analyze verify: \(verified.output)")
        // The man page is roff made from the help; the completion is valid bash.
        let man = try await Command.output("sh", ["-c", "gzip -dc '\(tree)/usr/share/man/man8/tandem.8.gz'"])
        #expect(man.hasPrefix(".TH TANDEM 8") && man.contains(".SS serve") && man.contains(".SS persistence flush"))
        let bash = try await Command.run("bash", ["-n", tree + "/usr/share/bash-completion/completions/tandem"])
        #expect(bash.status == 0, "\(bash.output)")
    }
}
