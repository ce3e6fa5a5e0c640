import Model
import Testing
import TestSupport

@testable import Configuration

/// What `tandem reload` must refuse: the settings `tandem serve` fixed at
/// its start, named as the file spells them.
@Suite("Restart-only settings")
struct RestartOnlyTests {
    static func config(_ replacing: String = "", with line: String = "") throws -> Config {
        let yaml = replacing.isEmpty ? Configs.spec : Configs.spec.replacingOccurrences(of: replacing, with: line)
        return try ConfigParser.parse(yaml, file: "t.yaml")
    }

    @Test("services, reals, checks and announce may change; nothing restart-only is named")
    func reloadable() throws {
        let current = try Self.config()
        var next = current
        next.services[0].reals.removeLast()
        next.services[1].check.timing.fall = 5
        next.announce = Config.Announce(table: 100)
        #expect(current.restartOnlyChanges(to: next) == [])
        #expect(current.restartOnlyChanges(to: current) == [])
    }

    @Test(
        "each setting the daemon built at its start is named, in the file's spelling",
        arguments: [
            ("interface: eth0", "interface: eth1", "interface"),
            ("xdp-mode: native", "xdp-mode: generic", "xdp-mode"),
            ("xdp-mode: native", "xdp-mode: native\npin-directory: /sys/fs/bpf/other", "pin-directory"),
            ("xdp-mode: native", "xdp-mode: native\nsocket: /run/tandem/other.sock", "socket"),
            ("xdp-mode: native", "xdp-mode: native\nmetrics: 127.0.0.1:9100", "metrics"),
            ("xdp-mode: native", "xdp-mode: native\nnode: lb9", "node"),
            ("xdp-mode: native", "xdp-mode: native\ntables: { flows: 4096, records: 4096 }", "tables")
        ])
    func restartOnly(replacing: String, line: String, key: String) throws {
        let current = try Self.config()
        let next = try Self.config(replacing, with: line)
        #expect(current.restartOnlyChanges(to: next) == [key])
    }

    @Test("sync's listen address and peers need a restart; its secret file does not")
    func sync() throws {
        let listen = Endpoint("198.18.0.1:7946")!, peer = Endpoint("198.18.0.2:7946")!
        var current = try Self.config()
        current.sync = Config.Sync(listen: listen, peers: [peer], secretFile: "/etc/tandem/a")
        var next = current
        next.sync?.secretFile = "/etc/tandem/b"
        #expect(current.restartOnlyChanges(to: next) == [])
        next.sync?.peers.append(Endpoint("198.18.0.3:7946")!)
        #expect(current.restartOnlyChanges(to: next) == ["sync.peers"])
        next.sync = nil
        #expect(current.restartOnlyChanges(to: next) == ["sync.listen", "sync.peers"])
        var changedBoth = try Self.config()
        changedBoth.interface = "eth9"
        changedBoth.node = "lb2"
        #expect(try Self.config().restartOnlyChanges(to: changedBoth) == ["interface", "node"])
    }
}
