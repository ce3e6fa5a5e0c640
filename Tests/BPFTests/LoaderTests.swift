import BPF
import BPFTestObjects
import Dataplane
import Foundation
import Glibc
import Model
import SystemCalls
import TestSupport
import TestTraits
import Testing

/// Runs ip(8) with `arguments`; its output.
@discardableResult
func ip(_ arguments: String...) async throws -> String {
    try await Command.output("ip", arguments)
}

@Suite("Loader and XDP attach", .privileged, .serialized)
struct LoaderTests {
    @Test("a verifier rejection names the object and saves the verifier log")
    func verifierLog() throws {
        let path = "/tmp/tandem-test-verifier-\(getpid()).log"
        defer { unlink(path) }
        let object = try BPFObject(bytes: TestObjects.rejected, name: "rejected", pinRoot: nil)
        let error = try #require(throws: SystemCallError.self) { try object.load(verifierLogPath: path) }
        #expect(error.description.contains("cannot load BPF object rejected"))
        #expect(error.description.contains("verifier log saved to \(path)"))
        let log = try String(contentsOfFile: path, encoding: .utf8)
        #expect(log.contains("invalid access to packet"), "log: \(log.prefix(400))")
    }

    @Test("an unusable pin directory is a clear error")
    func badPinRoot() throws {
        #expect(throws: SystemCallError.self) { try Dataplane(pinRoot: "/proc/tandem-cannot-pin-here") }
    }

    @Test("XDP attaches natively and generically through pinned links that outlive their owner")
    func attach() async throws {
        let ns = "tandem-t\(getpid())"
        try await ip("netns", "add", ns)
        defer { NetworkNamespace.delete(ns) }
        try await ip("-n", ns, "link", "add", "tdm0", "type", "veth", "peer", "name", "tdm1")
        let pins = "/sys/fs/bpf/tandem-test-\(getpid())-links"
        try BPFFS.prepare(directory: pins)
        defer { BPFFS.removeTree(pins) }

        let object = try BPFObject(bytes: Objects.baseline, name: "baseline", pinRoot: nil)
        try object.load()
        let program = try object.program("xdp_pass")

        func xdpMode(_ dev: String) async throws -> String {
            let json = try await ip("-n", ns, "-j", "-d", "link", "show", dev)
            if json.contains("\"xdp\":{\"mode\":1") { return "native" }
            if json.contains("\"xdp\":{\"mode\":2") { return "generic" }
            return json.contains("\"xdp\"") ? "other" : "none"
        }

        // Attaching names interfaces of the calling thread's namespace; ip
        // and tandem below run as their own processes, outside it.
        for (dev, mode) in [("tdm0", XDPMode.native), ("tdm1", XDPMode.generic)] {
            try NetworkNamespace.inside(ns) {
                let link = try XDPLink.attach(program, interface: dev, mode: mode)
                try link.pin(at: "\(pins)/\(dev)")
            }
            // The process's own descriptors are gone; the pin keeps it attached.
            #expect(try await xdpMode(dev) == mode.rawValue)
            try NetworkNamespace.inside(ns) {
                let adopted = try XDPLink.pinned(at: "\(pins)/\(dev)", interface: dev)
                try adopted.detach()
            }
            #expect(try await xdpMode(dev) == "none")
            unlink("\(pins)/\(dev)")
        }

        // `tandem down` on a directory holding a pinned link detaches it.
        let down = "/sys/fs/bpf/tandem-test-\(getpid())-down"
        try BPFFS.prepare(directory: down)
        try NetworkNamespace.inside(ns) {
            let link = try XDPLink.attach(program, interface: "tdm0", mode: .native)
            try link.pin(at: "\(down)/link")
        }
        #expect(try await xdpMode("tdm0") == "native")
        let binary = Built.tandem
        // In the namespace, where the link's interface has its name.
        let inNamespace = ["--net=/run/netns/\(ns)", binary, "down", "--pin-directory", down]
        let said = try await Command.output("nsenter", inNamespace)
        #expect(said == "XDP detached from tdm0; removed \(down): maps, flows and records released\n")
        #expect(try await xdpMode("tdm0") == "none")
        #expect(try await Command.output("nsenter", inNamespace) == "nothing to do: no pins at \(down)\n")

        try NetworkNamespace.inside(ns) {
            let missing = try #require(throws: SystemCallError.self) {
                try XDPLink.attach(program, interface: "tdm-missing", mode: .native)
            }
            #expect(missing.description == "cannot find interface tdm-missing: No such device (see 'ip link')")
        }
    }

    @Test("live frames: the generator's frames cross a veth, meet the program there and come back to the sink")
    func liveFrames() async throws {
        let ns = "tandem-l\(getpid())"
        try await ip("netns", "add", ns)
        defer { NetworkNamespace.delete(ns) }
        // No IPv6: the stack's own router solicitations would cross the pair too.
        try await ip(
            "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1")
        try await ip("-n", ns, "link", "add", "tdm0", "type", "veth", "peer", "name", "tdm1")
        try await ip("-n", ns, "link", "set", "tdm0", "up")
        try await ip("-n", ns, "link", "set", "tdm1", "up")
        try NetworkNamespace.inside(ns) {
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
            defer { _ = try? BPFProgram.countRunTime(wasCounting) }
            func sunk() -> UInt64 { received.lookupPerCPU(0)?.reduce(0, +) ?? 0 }
            let before = try swap.runStats(), sunkBefore = sunk()
            let frame = [UInt8](repeating: 0, count: 12) + [0x08, 0x00] + [UInt8](repeating: 0, count: 46)
            do {
                _ = try live.program("live_gen").liveFrames(
                    packet: frame, ifindex: try Interface.index("tdm0"), count: 1000)
            } catch  where FrameSender.liveFramesRefused(error) {
                // This kernel refuses live frames: the same frames from an
                // AF_PACKET socket, the live rows' generator here too.
                print("live frames refused (\(error)): the frames come from an AF_PACKET socket")
                #expect(try FrameSender.send(interface: "tdm0", frame: frame, count: 1000) == 1000)
            }
            usleep(50_000)
            let after = try swap.runStats()
            #expect(after.runs - before.runs == 1000, "the program on the far end ran once per frame")
            #expect(after.ns > before.ns)
            #expect(sunk() - sunkBefore == 1000, "every frame it sent back reached the sink")
        }
    }
}
