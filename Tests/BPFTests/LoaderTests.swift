import BPF
import Model
import BPFTestObjects
import CTestSupport
import Dataplane
import Foundation
import Glibc
import Testing

enum Privilege {
    static let enabled = geteuid() == 0 || ProcessInfo.processInfo.environment["TANDEM_REQUIRE_PRIVILEGED"] == "1"
    static let reason: Comment = "needs root for BPF and namespaces; run as root (TANDEM_REQUIRE_PRIVILEGED=1 turns this skip into a failure)"
}

@discardableResult
func sh(_ command: String) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", command]
    let out = Pipe()
    p.standardOutput = out
    p.standardError = out
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self)
    guard p.terminationStatus == 0 else { throw BPFError("run", command + ": " + text, errno: EIO) }
    return text
}

@Suite("Loader and XDP attach", .enabled(if: Privilege.enabled, Privilege.reason), .serialized)
struct LoaderTests {
    @Test("a verifier rejection names the object and saves the verifier log")
    func verifierLog() throws {
        let path = "/tmp/tandem-test-verifier-\(getpid()).log"
        defer { unlink(path) }
        let object = try BPFObject(bytes: TestObjects.rejected, name: "rejected", pinRoot: nil)
        let error = try #require(throws: BPFError.self) { try object.load(verifierLogPath: path) }
        #expect(error.description.contains("cannot load BPF object rejected"))
        #expect(error.description.contains("verifier log saved to \(path)"))
        let log = try String(contentsOfFile: path, encoding: .utf8)
        #expect(log.contains("invalid access to packet"), "log: \(log.prefix(400))")
    }

    @Test("an unusable pin directory is a clear error")
    func badPinRoot() throws {
        #expect(throws: BPFError.self) { try Dataplane(pinRoot: "/proc/tandem-cannot-pin-here") }
    }

    @Test("XDP attaches natively and generically through pinned links that outlive their owner")
    func attach() throws {
        let ns = "tandem-t\(getpid())"
        try sh("ip netns add \(ns) && ip -n \(ns) link add tdm0 type veth peer name tdm1")
        defer { _ = try? sh("ip netns del \(ns)") }
        let pins = "/sys/fs/bpf/tandem-test-\(getpid())-links"
        try BPFFS.prepare(directory: pins)
        defer { BPFFS.removeTree(pins) }

        let object = try BPFObject(bytes: Objects.baseline, name: "baseline", pinRoot: nil)
        try object.load()
        let program = try object.program("xdp_pass")

        let saved = tandem_test_enter_netns("/run/netns/\(ns)")
        try #require(saved >= 0, "setns into \(ns)")
        defer { _ = tandem_test_leave_netns(saved) }

        func xdpMode(_ dev: String) throws -> String {
            let json = try sh("ip -n \(ns) -j -d link show \(dev)")
            if json.contains("\"xdp\":{\"mode\":1") { return "native" }
            if json.contains("\"xdp\":{\"mode\":2") { return "generic" }
            return json.contains("\"xdp\"") ? "other" : "none"
        }

        for (dev, mode) in [("tdm0", XDPMode.native), ("tdm1", XDPMode.generic)] {
            do {
                let link = try XDPLink.attach(program, interface: dev, mode: mode)
                try link.pin(at: "\(pins)/\(dev)")
            }
            // The process's own descriptors are gone; the pin keeps it attached.
            #expect(try xdpMode(dev) == mode.rawValue)
            let adopted = try XDPLink.pinned(at: "\(pins)/\(dev)", interface: dev)
            try adopted.detach()
            #expect(try xdpMode(dev) == "none")
            unlink("\(pins)/\(dev)")
        }

        // `tandem down` on a directory holding a pinned link detaches it.
        let down = "/sys/fs/bpf/tandem-test-\(getpid())-down"
        try BPFFS.prepare(directory: down)
        do {
            let link = try XDPLink.attach(program, interface: "tdm0", mode: .native)
            try link.pin(at: "\(down)/link")
        }
        #expect(try xdpMode("tdm0") == "native")
        let binary = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug/tandem").path
        let said = try sh("\(binary) down --pin-directory \(down)")
        #expect(said == "removed \(down): XDP detached, maps released\n")
        #expect(try xdpMode("tdm0") == "none")
        #expect(try sh("\(binary) down --pin-directory \(down)") == "nothing to do: no pins at \(down)\n")

        let missing = try #require(throws: BPFError.self) {
            try XDPLink.attach(program, interface: "tdm-missing", mode: .native)
        }
        #expect(missing.description == "cannot find interface tdm-missing: No such device (see 'ip link')")
    }

    @Test("live frames: the generator's frames cross a veth, meet the program there and come back to the sink")
    func liveFrames() throws {
        let ns = "tandem-l\(getpid())"
        // No IPv6: the stack's own router solicitations would cross the pair too.
        try sh("ip netns add \(ns) && ip netns exec \(ns) sysctl -qw net.ipv6.conf.all.disable_ipv6=1"
               + " net.ipv6.conf.default.disable_ipv6=1"
               + " && ip -n \(ns) link add tdm0 type veth peer name tdm1"
               + " && ip -n \(ns) link set tdm0 up && ip -n \(ns) link set tdm1 up")
        defer { _ = try? sh("ip netns del \(ns)") }
        let home = try NetworkNamespace.current()
        try NetworkNamespace.enter(ns)
        defer { try? NetworkNamespace.enter(home) }

        let baseline = try BPFObject(bytes: Objects.baseline, name: "baseline", pinRoot: nil)
        try baseline.load()
        let live = try BPFObject(bytes: Objects.live, name: "live", pinRoot: nil)
        try live.load()
        let swap = try baseline.program("baseline_swap")
        let sink = try live.program("live_sink")
        let received = try live.map("live_received", key: UInt32.self, value: UInt64.self)

        // The program under test on tdm1; the sink (netlink-attached) on tdm0.
        let link = try XDPLink.attach(swap, interface: "tdm1", mode: .native)
        defer { try? link.detach() }
        #expect(try NetlinkXDP.attachedID(interface: "tdm0", mode: .native) == nil)
        try NetlinkXDP.attach(sink, interface: "tdm0", mode: .native)
        #expect(try NetlinkXDP.attachedID(interface: "tdm0", mode: .native) != nil)

        let wasCounting = try BPFProgram.countRunTime(true)
        defer { try? BPFProgram.countRunTime(wasCounting) }
        func sunk() -> UInt64 { received.lookupPerCPU(0)?.reduce(0, +) ?? 0 }
        let before = try swap.runStats(), sunkBefore = sunk()
        let frame = [UInt8](repeating: 0, count: 12) + [0x08, 0x00] + [UInt8](repeating: 0, count: 46)
        _ = try live.program("live_gen").liveFrames(packet: frame, ifindex: try Interface.index("tdm0"), count: 1000)
        usleep(50_000)
        let after = try swap.runStats()
        #expect(after.runs - before.runs == 1000, "the program on the far end ran once per frame")
        #expect(after.ns > before.ns)
        #expect(sunk() - sunkBefore == 1000, "every frame it sent back reached the sink")
    }
}
