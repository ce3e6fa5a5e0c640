import BPF
import Configuration
import Control
import Model
import Frames
@testable import Dataplane
import Foundation
import Glibc
import TandemABI
import TestSupport
import Testing

/// A private dataplane: its own pin directory, removed when done. Its
/// state is a `ControlState`, changed through the same calls the daemon
/// makes (`setHealth`, `setOperator`, `reload`), so a test fails a real the
/// way a health check does.
final class Rig {
    nonisolated(unsafe) private static var counter = 0
    private static let lock = NSLock()

    let dataplane: Dataplane
    private(set) var state: ControlState
    /// What was last written: `state`'s model, with a MAC per real id.
    private(set) var model: DataplaneModel

    init(_ state: ControlState? = nil, tables: TableSizes = .default) throws {
        _ = Self.sweep
        let n = Self.lock.withLock {
            Self.counter += 1; return Self.counter
        }
        dataplane = try Dataplane(pinRoot: "/sys/fs/bpf/tandem-test-\(getpid())-\(n)", tables: tables)
        self.state = try state ?? Topology.state()
        model = Self.model(self.state)
        try dataplane.apply(model)
    }

    static func model(_ state: ControlState) -> DataplaneModel {
        var m = state.model(macs: [:])
        for i in m.reals.indices { m.reals[i].mac = Topology.mac(m.reals[i].id) }
        return m
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

    /// A TCP handshake as the load balancer sees it: the SYN, then the
    /// client's ACK on the same 5-tuple (a UDP packet is sent twice). The
    /// ACK writes the flow and record; it must reach the SYN's real.
    @discardableResult
    func connect(_ packet: PacketSpec) throws -> Result {
        let first = try send(packet)
        var ack = packet
        if ack.proto == 6 { ack.tcpFlags = TCPFlags.ack }
        let second = try send(ack)
        #expect(second.verdict == first.verdict && second.real == first.real, "the ACK follows its SYN")
        return first
    }

    /// Changes the state as the daemon would, then writes the new model.
    func change(_ body: (inout ControlState) throws -> Void) throws {
        var next = state
        try body(&next)
        let m = Self.model(next)
        try dataplane.apply(m)
        state = next
        model = m
    }

    /// A reload with the config `edit` makes (validated, as `tandem reload` does).
    func reload(_ edit: (inout Config) -> Void) throws {
        var config = state.config
        edit(&config)
        let validated = try ConfigValidator.validate(config, file: "topology.yaml")
        try change { try $0.reload(validated) }
    }

    /// The address of real `id` and the services whose backends it is.
    func services(of id: UInt32) -> (address: IPAddress, names: [String]) {
        let address = model.real(id)!.address
        let serviceIDs = Set(model.services.filter { $0.backends.contains { $0.real == id } }.map(\.id))
        let names = state.config.services.filter { s in serviceIDs.contains(state.serviceID(s.name) ?? .max) }.map(
            \.name)
        return (address, names)
    }

    /// What a failed health check does: `real` fails its check in the first
    /// service that has it; the controller takes it out of the follow
    /// group and invalidates its records (and its flows where the service
    /// has drop-on-failure).
    func fail(_ real: UInt32) throws {
        let (address, names) = services(of: real)
        try change { $0.setHealth(service: names[0], address: address, up: false) }
    }

    /// Every check of `real` passes again and the operator enables it.
    func recover(_ real: UInt32) throws {
        let (address, names) = services(of: real)
        try change { s in
            for name in names {
                s.setHealth(service: name, address: address, up: true)
                _ = try s.setOperator(.enabled, address: address, service: name)
            }
        }
    }

    /// `tandem real drain` of `real` in every service that has it.
    func drain(_ real: UInt32) throws {
        let (address, names) = services(of: real)
        try change { s in for name in names { _ = try s.setOperator(.drain, address: address, service: name) } }
    }

    /// The real the service's scheduler picks for `client` (maglev with
    /// persistence): what a brand-new client gets.
    func scheduled(service id: UInt32, client: String) -> UInt32 {
        let service = model.services.first { $0.id == id }!
        let ring = model.ring(for: service, size: Dataplane.ringSize)
        var key = persistKey(service: service, client: client)
        return ring[Int(tandem_hash_client(service.hashSeed, &key) % UInt32(ring.count))]
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
        value.last_seen_ns = TestClock.nowNs() &- ageNs  // the program subtracts modulo 2^64 too
        value.written_ns = value.last_seen_ns
        try dataplane.persist.update(persistKey(service: service, client: client), value)
        return value.last_seen_ns
    }

    func reason(_ r: PacketReason) -> UInt64 { dataplane.packetReasons()[r] ?? 0 }
}
