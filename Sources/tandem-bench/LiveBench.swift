import BPF
import Dataplane
import Foundation
import Frames
import TestSupport

/// Live packets per second through the lab's load balancer (tools/lab up).
///
/// The generator is bpf/live.bpf.c's live_gen, run by BPF_PROG_TEST_RUN in
/// live-frames mode with p-lb (the far end of tdm-lb's eth0, in tdm-sw) as
/// its ingress device: its XDP_TX sends each 64-byte frame out of p-lb into
/// tdm-lb's eth0, where the program under test runs natively. What that
/// program sends back (XDP_TX) arrives on p-lb, whose lab program is swapped
/// for live_sink for the run: it counts and drops. The rate is frames
/// counted by the sink over wall time; each program under test gets the same
/// generator, veth and sink, alternating, in the same run.
///
/// One core: generator, eth0's NAPI and the sink all run on CPU 0 (veth
/// schedules its NAPI on the sending CPU). Two cores: eth0's NAPI runs in
/// its own kernel thread (threaded NAPI) pinned to CPU 1, with the sink
/// (scheduled from there); the generator stays on CPU 0.
///
/// Where the kernel refuses live-frames mode (EPERM, to root too, on some
/// kernels), the generator is an AF_PACKET socket on p-lb instead
/// (`FrameSender`: sendmmsg, no qdisc, the same frames and the same new
/// source per frame as live_gen), and the method column says so. It costs
/// the generator's CPU more per frame than live_gen, so its rates are not
/// comparable with live_gen's; the ratios within the run are.
final class LiveBench {
    static let lbNamespace = "tdm-lb", switchNamespace = "tdm-sw"
    static let lbInterface = "eth0", peerInterface = "p-lb"

    let seconds: Double
    let rounds: Int
    let pinRoot: String
    /// The kernel refused live frames: an AF_PACKET socket generates.
    private var packetSocket = false
    /// Frames the socket has sent, live_gen's `live_sent` for it.
    private var socketFrames: UInt64 = 0

    init(seconds: Double, rounds: Int, pinRoot: String) {
        self.seconds = seconds
        self.rounds = rounds
        self.pinRoot = pinRoot
    }

    struct Subject {
        var name: String
        var program: BPFProgram
        var newConnections: Bool
    }

    func measure(into table: inout ResultTable) async throws {
        for name in [Self.lbNamespace, Self.switchNamespace]
        where !FileManager.default.fileExists(atPath: "/run/netns/\(name)") {
            throw DataplaneError(description: "live rows need the lab (tools/lab up): no namespace \(name)")
        }
        BPFFS.removeTree(pinRoot)
        let dataplane = try Dataplane(pinRoot: pinRoot)
        defer { dataplane.removePins() }
        try dataplane.apply(PathBench.model(reals: 4))
        let baselineObject = try BPFObject(bytes: Objects.baseline, name: "baseline", pinRoot: nil)
        try baselineObject.load()
        let live = try BPFObject(bytes: Objects.live, name: "live", pinRoot: nil)
        try live.load()
        let generator = try live.program("live_gen")
        let sink = try live.program("live_sink")
        let received = try live.map("live_received", key: UInt32.self, value: UInt64.self)
        let sent = try live.map("live_sent", key: UInt32.self, value: UInt64.self)
        let mode = try live.map("live_mode", key: UInt32.self, value: UInt32.self)

        // Interface names and the generator's ifindex are the calling
        // thread's namespace's: every step that needs one runs synchronously
        // inside it (NetworkNamespace.inside), never across an await.

        // The program under test on the LB's eth0, through a link we can
        // switch between programs without taking NAPI down.
        let baseline = try baselineObject.program("baseline_swap")
        let link = try NetworkNamespace.inside(Self.lbNamespace) {
            try XDPLink.attach(baseline, interface: Self.lbInterface, mode: .native)
        }
        defer { try? link.detach() }

        // The sink in place of the lab's program on the far end.
        let (peer, labProgram) = try NetworkNamespace.inside(Self.switchNamespace) {
            let peer = try Interface.index(Self.peerInterface)
            let labProgram = try NetlinkXDP.attachedID(interface: Self.peerInterface, mode: .native).map(
                BPFProgram.byID)
            try NetlinkXDP.attach(sink, interface: Self.peerInterface, mode: .native)
            return (peer, labProgram)
        }
        defer {
            if let labProgram {
                _ = try? NetworkNamespace.inside(Self.switchNamespace) {
                    try NetlinkXDP.attach(labProgram, interface: Self.peerInterface, mode: .native)
                }
            }
        }

        // 64 bytes on the wire: 60 + FCS. An ACK of one client to the VIP.
        var spec = PacketSpec(src: "198.18.10.1", dst: PathBench.vip, sport: 40000, dport: 80, tcpFlags: TCPFlags.ack)
        spec.payload = [UInt8](repeating: 0, count: 6)
        let frame = spec.bytes
        var synSpec = spec
        synSpec.tcpFlags = TCPFlags.syn
        let syn = synSpec.bytes

        let subjects = [
            Subject(name: "baseline: swap MACs, XDP_TX", program: baseline, newConnections: false),
            Subject(name: "established flow", program: dataplane.program, newConnections: false),
            Subject(name: "new connection every frame", program: dataplane.program, newConnections: true)
        ]
        try await withCleanup {
            for cores in [1, 2] {
                var napiThread: Int32?
                if cores == 2 {
                    napiThread = try await Self.startNAPIThread()
                    try CPUAffinity.pin(thread: napiThread!, to: 1)
                } else {
                    try await Self.setThreadedNAPI(false)
                }
                var packets = [Double](repeating: 0, count: subjects.count)
                var generated = [Double](repeating: 0, count: subjects.count)
                var elapsed = [Double](repeating: 0, count: subjects.count)
                try NetworkNamespace.inside(Self.switchNamespace) {
                    try CPUAffinity.pin(to: 0)
                    defer { try? CPUAffinity.pin(to: nil) }
                    for _ in 0..<rounds {
                        for (i, subject) in subjects.enumerated() {
                            try link.update(to: subject.program)
                            try mode.update(0, subject.newConnections ? 1 : 0)
                            try dataplane.clearFlows()
                            let r = try run(
                                generator, subject.newConnections ? syn : frame, peer: peer,
                                newConnections: subject.newConnections, received: received, sent: sent)
                            packets[i] += r.received
                            generated[i] += r.sent
                            elapsed[i] += r.seconds
                        }
                    }
                }
                let base = packets[0] / elapsed[0]
                let where_ =
                    cores == 1
                    ? "generator, LB and sink on CPU 0"
                    : "generator on CPU 0; LB's NAPI thread (pid \(napiThread!)) and sink on CPU 1"
                for (i, subject) in subjects.enumerated() {
                    let pps = packets[i] / elapsed[i]
                    let method = String(
                        format:
                            "64-byte frames%@, %d x %.1f s alternating; %@; %.0f%% of %.2f Mpps generated came back",
                        packetSocket ? " from an AF_PACKET socket (this kernel refuses live frames)" : "", rounds,
                        seconds, where_, 100 * packets[i] / max(generated[i], 1),
                        generated[i] / elapsed[i] / 1e6)
                    table.add(
                        rate: "live, \(cores) core\(cores == 1 ? "" : "s"): \(subject.name)", pps: pps,
                        baseline: i == 0 ? nil : base, method: method)
                }
            }
        } cleanup: {
            try? await Self.setThreadedNAPI(false)
        }
    }

    /// Generates for `seconds` and returns what the sink counted, what the
    /// generator sent and the wall time.
    func run(
        _ generator: BPFProgram, _ frame: [UInt8], peer: UInt32, newConnections: Bool,
        received: BPFMap<UInt32, UInt64>, sent: BPFMap<UInt32, UInt64>
    ) throws -> (received: Double, sent: Double, seconds: Double) {
        func total(_ map: BPFMap<UInt32, UInt64>) -> UInt64 { map.lookupPerCPU(0)?.reduce(0, +) ?? 0 }
        func generate(_ count: Int) throws {
            if !packetSocket {
                do {
                    _ = try generator.liveFrames(packet: frame, ifindex: peer, count: Int32(count))
                    return
                } catch  where FrameSender.liveFramesRefused(error) {
                    packetSocket = true
                    FileHandle.standardError.write(
                        Data("live rows: \(error); the frames come from an AF_PACKET socket\n".utf8))
                }
            }
            socketFrames += UInt64(
                try FrameSender.send(
                    interface: Self.peerInterface, frame: frame, count: count, first: socketFrames,
                    newConnections: newConnections))
        }
        func generated() -> UInt64 { packetSocket ? socketFrames : total(sent) }
        // Warm up: first flow, first records, page pool.
        try generate(10_000)
        usleep(20_000)
        let received0 = total(received), sent0 = generated()
        let start = TestClock.nowNs()
        var now = start
        while Double(now - start) < seconds * 1e9 {
            try generate(100_000)
            now = TestClock.nowNs()
        }
        usleep(20_000)  // frames still in the rings; counted, not timed
        return (Double(total(received) - received0), Double(generated() - sent0), Double(now - start) / 1e9)
    }

    static func setThreadedNAPI(_ on: Bool) async throws {
        try await Command.output(
            "/usr/sbin/ip",
            [
                "netns", "exec", lbNamespace, "sh", "-c",
                "echo \(on ? 1 : 0) > /sys/class/net/\(lbInterface)/threaded"
            ])
    }

    /// Turns threaded NAPI on for the LB's eth0 and returns its new kernel
    /// thread. Every namespace's eth0 names its thread napi/eth0-ID, so the
    /// LB's is the one that was not there before.
    static func startNAPIThread() async throws -> Int32 {
        func threads() -> Set<Int32> {
            let all = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
            return Set(
                all.compactMap(Int32.init).filter { pid in
                    (try? String(contentsOfFile: "/proc/\(pid)/comm", encoding: .utf8))?.hasPrefix(
                        "napi/\(lbInterface)-") ?? false
                })
        }
        let before = threads()
        try await setThreadedNAPI(true)
        let new = threads().subtracting(before)
        guard new.count == 1 else {
            throw DataplaneError(
                description:
                    "threaded NAPI on \(lbNamespace)'s \(lbInterface): wanted one new napi thread, found \(new.count)")
        }
        return new.first!
    }
}
