import BPF
import Model
import Frames
@testable import Dataplane
import Foundation
import Glibc
import TandemABI
import Testing

/// Privileged tests need root (BPF). Without it they skip with a message,
/// unless TANDEM_REQUIRE_PRIVILEGED=1 (CI), where they run and fail.
enum Privilege {
    static let isRoot = geteuid() == 0
    static let required = ProcessInfo.processInfo.environment["TANDEM_REQUIRE_PRIVILEGED"] == "1"
    static let enabled = isRoot || required
    static let reason: Comment = "needs root for BPF; run as root (TANDEM_REQUIRE_PRIVILEGED=1 turns this skip into a failure)"
}

/// A private dataplane: its own pin directory, removed when done.
final class Rig {
    nonisolated(unsafe) private static var counter = 0
    private static let lock = NSLock()

    let dataplane: Dataplane
    var model: DataplaneModel

    init(_ model: DataplaneModel = Topology.model) throws {
        _ = Self.sweep
        let n = Self.lock.withLock { Self.counter += 1; return Self.counter }
        dataplane = try Dataplane(pinRoot: "/sys/fs/bpf/tandem-test-\(getpid())-\(n)")
        self.model = model
        try dataplane.apply(model)
    }

    deinit { dataplane.removePins() }

    /// Pins left by test processes that died before cleaning up.
    private static let sweep: Void = {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/bpf")) ?? []
        for name in entries where name.hasPrefix("tandem-test-") {
            let pid = name.split(separator: "-").dropFirst(2).first.flatMap { Int32($0) }
            if let pid, pid != getpid(), kill(pid, 0) != 0 { BPFFS.removeTree("/sys/fs/bpf/" + name) }
        }
    }()

    struct Result {
        var verdict: Verdict
        var input: [UInt8]
        var output: [UInt8]
        /// The real whose MAC the frame was sent to (XDP_TX only).
        var real: UInt32?
    }

    func send(_ packet: PacketSpec) throws -> Result {
        try send(bytes: packet.bytes)
    }

    func send(bytes: [UInt8]) throws -> Result {
        let run = try dataplane.program.testRun(packet: bytes)
        let verdict = Verdict(rawValue: run.retval) ?? .aborted
        var real: UInt32?
        if verdict == .tx {
            let mac = Array(run.output.prefix(6))
            real = model.reals.first { $0.mac.bytes == mac }?.id
        }
        return Result(verdict: verdict, input: bytes, output: run.output, real: real)
    }

    func apply(_ change: (inout DataplaneModel) -> Void) throws {
        change(&model)
        try dataplane.apply(model)
    }

    /// What the controller does when `real` fails in its follow group:
    /// down in every service that has it, its records invalidated.
    func fail(_ real: UInt32, dropFlows: Bool = false) throws {
        try apply { $0.fail(real: real, dropFlows: dropFlows) }
    }

    func setState(_ real: UInt32, _ state: DataplaneModel.BackendState) throws {
        try apply { $0.setState(state, real: real) }
    }

    /// The real the service's scheduler picks for `client` (maglev with
    /// persistence): what a brand-new client gets.
    func scheduled(service id: UInt32, client: String) -> UInt32 {
        let service = model.services.first { $0.id == id }!
        let ring = model.ring(for: service, size: Dataplane.ringSize)
        var key = persistKey(service: service, client: client)
        return ring[Int(tandem_hash_persist(&key) % UInt32(ring.count))]
    }

    func persistKey(service: DataplaneModel.Service, client: String) -> tandem_persist_key {
        let address = IPAddress(client)!.masked(prefix: service.persistence!.netmask)
        var key = tandem_persist_key()
        key.group = service.group
        key.client = address.abiAddress
        key.af = address.abiFamily
        return key
    }

    /// Writes a persistence record directly, `ageNs` old; returns its last_seen.
    @discardableResult
    func seedRecord(service id: UInt32, client: String, real: UInt32, ageNs: UInt64) throws -> UInt64 {
        let service = model.services.first { $0.id == id }!
        var value = tandem_persist()
        value.real = real
        value.rec_gen = model.real(real)!.recGen
        value.service = id
        value.last_seen_ns = monotonicNs() &- ageNs  // the program subtracts modulo 2^64 too
        try dataplane.persist.update(persistKey(service: service, client: client), value)
        return value.last_seen_ns
    }

    func reason(_ r: PacketReason) -> UInt64 { dataplane.packetReasons()[r] ?? 0 }
}

func monotonicNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
