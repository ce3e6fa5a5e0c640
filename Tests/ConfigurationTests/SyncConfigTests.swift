import Foundation
import Glibc
import Testing
import TestSupport
@testable import Configuration
import Model

/// `sync:`: endpoints, peers and the secret file, each refused with a
/// clear line.
@Suite("Sync config")
struct SyncConfigTests {
    /// A secret file in a fresh directory, with `bytes` and `mode`.
    static func secret(_ bytes: Int, mode: mode_t = 0o600, newline: Bool = false) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tdm-sync-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/secret"
        let data = Data(String(repeating: "k", count: bytes).utf8 + (newline ? [10] : []))
        #expect(FileManager.default.createFile(atPath: path, contents: data))
        #expect(chmod(path, mode) == 0)
        return path
    }

    static func yaml(_ sync: String) -> String {
        Configs.spec.replacingOccurrences(of: "xdp-mode: native", with: "xdp-mode: native\n" + sync)
    }

    @Test("absent by default; given, listen, peers and the secret file are read")
    func parsed() throws {
        #expect(try ConfigParser.parse(Configs.spec, file: "t.yaml").sync == nil)
        let path = try Self.secret(64, newline: true)
        let config = try ConfigParser.parse(
            Self.yaml(
                "sync: { listen: 198.18.0.1:7946, peers: [198.18.0.2:7946, 198.18.0.3:7000], secret-file: \(path) }"
            ), file: "t.yaml")
        #expect(config.sync?.listen == Endpoint("198.18.0.1:7946"))
        #expect(config.sync?.peers.map(\.description) == ["198.18.0.2:7946", "198.18.0.3:7000"])
        let v6 = try ConfigParser.parse(
            Self.yaml(
                "sync: { listen: \"[2001:db8::1]:7946\", peers: [\"[2001:db8::3]:7000\"], secret-file: \(path) }"),
            file: "t.yaml")
        #expect(v6.sync?.peers.map(\.description) == ["[2001:db8::3]:7000"])
        #expect(config.sync?.secretFile == path)
        // The final newline is not part of the secret (echo and printf agree).
        #expect(try config.sync?.readSecret() == Array(repeating: UInt8(ascii: "k"), count: 64))
        let any = try ConfigParser.parse(
            Self.yaml("sync: { listen: 0.0.0.0:7946, peers: [127.0.0.1:7947], secret-file: \(path) }"), file: "t.yaml")
        #expect(any.sync?.listen.port == 7946)
    }

    @Test(
        "bad endpoints and peer lists are refused with the key and what is wrong",
        arguments: [
            ("listen: 198.18.0.1, peers: [198.18.0.2:7946]", "t.yaml:3: sync.listen: 198.18.0.1 is not ADDR:PORT"),
            ("listen: 198.18.0.1:0, peers: [198.18.0.2:7946]", "sync.listen: 198.18.0.1:0 is not ADDR:PORT"),
            ("listen: 198.18.0.1:65536, peers: [198.18.0.2:7946]", "sync.listen: 198.18.0.1:65536 is not ADDR:PORT"),
            (
                "listen: \"2001:db8::1:7946\", peers: [198.18.0.2:7946]",
                "sync.listen: 2001:db8::1:7946 is not ADDR:PORT"
            ),
            ("listen: 198.18.0.1:7946, peers: [224.0.0.1:7946]", "sync.peers[0]: 224.0.0.1 is a multicast address"),
            ("listen: 198.18.0.1:7946, peers: [0.0.0.0:7946]", "sync.peers[0]: 0.0.0.0 is the unspecified address"),
            ("listen: 198.18.0.1:7946, peers: [lb2:7946]", "sync.peers[0]: lb2:7946 is not ADDR:PORT"),
            ("listen: 198.18.0.1:7946, peers: []", "t.yaml:3: sync.peers: needs at least one peer"),
            (
                "listen: 198.18.0.1:7946, peers: [198.18.0.2:7946, 198.18.0.2:7946]",
                "sync.peers[1]: 198.18.0.2:7946 is listed twice"
            ),
            ("listen: 198.18.0.1:7946, peers: [198.18.0.1:7946]", "sync.peers[0]: 198.18.0.1:7946 is this node's own"),
            (
                "listen: 198.18.0.1:7946, peers: [198.18.0.2:7946, \"[2001:db8::3]:7946\"]",
                "sync.peers[1]: [2001:db8::3]:7946 is IPv6 but sync.listen 198.18.0.1:7946 is IPv4"
            ),
            ("peers: [198.18.0.2:7946]", "t.yaml:3: sync.listen: is required"),
            ("listen: 198.18.0.1:7946, peers: [198.18.0.2:7946], port: 1", "sync.port: unknown key")
        ])
    func badEndpoints(_ fields: String, _ expected: String) throws {
        let path = try Self.secret(32)
        let e = Configs.errors(Self.yaml("sync: { \(fields), secret-file: \(path) }")).map(\.description)
        #expect(e.contains { $0.contains(expected) }, "\(e)")
    }

    @Test("a secret file others can read, too short, missing or relative is refused, saying what to do")
    func badSecret() throws {
        let cases: [(String, String)] = [
            (try Self.secret(32, mode: 0o644), "can be read or written by others (mode 644); chmod 600 it"),
            (try Self.secret(32, mode: 0o640), "(mode 640); chmod 600 it"),
            (try Self.secret(31, newline: true), "holds 31 bytes; a secret needs at least 32"),
            ("/nonexistent/tdm-secret", "cannot read /nonexistent/tdm-secret: No such file or directory"),
            ("relative/secret", "sync.secret-file: must be an absolute path")
        ]
        for (path, expected) in cases {
            let e = Configs.errors(
                Self.yaml("sync: { listen: 198.18.0.1:7946, peers: [198.18.0.2:7946], secret-file: \(path) }")
            ).map(\.description)
            #expect(e.contains { $0.contains("t.yaml:3: sync.secret-file:") && $0.contains(expected) }, "\(e)")
        }
        let dir = (try Self.secret(32) as NSString).deletingLastPathComponent
        let e = Configs.errors(
            Self.yaml("sync: { listen: 198.18.0.1:7946, peers: [198.18.0.2:7946], secret-file: \(dir) }")
        ).map(\.description)
        #expect(e.contains { $0.contains("is not a regular file") }, "\(e)")
    }
}
