import BPF
import Configuration
import Control
import Dataplane
import Foundation
import Model
import TandemABI
import TestSupport

/// A SYN flood from spoofed sources against Tandem in the lab, at the
/// highest rate the project's raw-frame sender (TestSupport.SYNFlood:
/// AF_PACKET, sendmmsg) makes from tdm-client: how many genuine clients,
/// who connected before it, reach their real on :80 and :443 after it, and
/// what each flood packet cost the load balancer (its XDP program's run
/// time, kernel.bpf_stats_enabled).
///
/// The load balancer is the dataplane on tdm-lb's eth0 (native XDP),
/// programmed as the controller does, with small tables (16,384 flows and
/// records) that the 65,536 spoofed sources would overflow four times over
/// if SYNs wrote state. Before the flood r1 is down while 40 clients make
/// :80 requests (20 one, 20 four), then recovers: the records of clients
/// whose ring choice is r1 again point elsewhere, so only a kept record
/// sends them to their real.
struct FloodBench {
    let syns: Int
    let pinRoot: String
    static let vip = "198.18.0.100"
    static let spoofed: ClosedRange<UInt32> = 0xC613_0000...0xC613_FFFF  // 198.19.0.0/16: no route back
    static let tables = TableSizes(flows: 16_384, records: 16_384)
    static let names = ["r1", "r2", "r3"]
    static let macs: [IPAddress: MACAddress] = Dictionary(
        uniqueKeysWithValues: (21...23).map {
            (IPAddress("198.18.0.\($0)")!, MACAddress(bytes: [2, 0, 0xC6, 0x12, 0, UInt8($0)])!)
        })
    static let yaml = """
        interface: eth0
        services:
        \(Configs.followPair(vip: vip, reals: (21...23).map { "198.18.0.\($0)" }))
        """

    /// Which real answered `url` for `source` (nil: none).
    static func ask(_ url: String, from source: String) async -> String? {
        let text = try? await Command.output(
            "/usr/sbin/ip", ["netns", "exec", "tdm-client", "curl", "-sk", "-m", "3", "--interface", source, url])
        let name = text?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        return names.contains(name) ? name : nil
    }

    func measure(into table: inout ResultTable) async throws {
        guard FileManager.default.fileExists(atPath: "/run/netns/tdm-lb") else {
            throw DataplaneError(description: "the flood row needs the lab: tools/lab up")
        }
        BPFFS.removeTree(pinRoot)
        var state = try ControlState(ConfigParser.parseValidated(Self.yaml, file: "flood.yaml"))
        let (dataplane, link) = try NetworkNamespace.inside("tdm-lb") { () throws -> (Dataplane, XDPLink) in
            let dataplane = try Dataplane(pinRoot: pinRoot, tables: Self.tables)
            try dataplane.apply(state.model(macs: Self.macs))
            return (dataplane, try XDPLink.attach(dataplane.program, interface: "eth0", mode: .native))
        }
        let statsWereOn = try BPFProgram.countRunTime(true)
        defer {
            _ = try? BPFProgram.countRunTime(statsWereOn)
            try? link.detach()
            dataplane.removePins()
        }
        func health(_ up: Bool) throws {
            state.setHealth(service: "shop-http", address: IPAddress("198.18.0.21")!, up: up)
            try dataplane.apply(state.model(macs: Self.macs))
        }
        let clients = (1...40).map { "198.18.10.\($0)" }
        try health(false)
        var real: [String: String] = [:]
        for (i, client) in clients.enumerated() {
            for _ in 0..<(i < 20 ? 1 : 4) {
                if let answer = await Self.ask("http://\(Self.vip)/", from: client) { real[client] = answer }
            }
        }
        try health(true)
        let ringMoves = clients.filter { real[$0] != nil && ringChoice(state, client: $0) != real[$0] }.count
        // First ACKs after the change would use the previous ring for 5 s:
        // let that pass, as it would between a recovery and a flood.
        try await Task.sleep(nanoseconds: 5_500_000_000)

        let before = try dataplane.program.runStats()
        let counted = dataplane.tableCounters()
        let start = TestClock.nowNs()
        let sent = try NetworkNamespace.inside("tdm-client") {
            try SYNFlood.send(
                interface: "eth0", from: MACAddress(bytes: [2, 0, 0xC6, 0x12, 0, 0x0A])!,
                to: MACAddress(bytes: [2, 0, 0xC6, 0x12, 0, 0x02])!, vip: IPAddress(Self.vip)!, port: 80,
                sources: Self.spoofed, count: syns)
        }
        let seconds = Double(TestClock.nowNs() - start) / 1e9
        try await Task.sleep(nanoseconds: 200_000_000)  // what the veth still holds
        let after = try dataplane.program.runStats()
        let written = dataplane.tableCounters()
        let runs = after.runs - before.runs
        let stateless = written.synStateless - counted.synStateless

        var kept = 0
        for client in clients {
            let http = await Self.ask("http://\(Self.vip)/", from: client)
            let https = await Self.ask("https://\(Self.vip)/", from: client)
            if let r = real[client], http == r, https == r { kept += 1 }
        }
        let rate = Double(sent) / seconds
        table.add(
            "SYN flood: genuine clients keeping their real on :80 and :443", value: "\(kept) of \(clients.count)",
            method:
                "\(sent) spoofed SYNs (65,536 sources) in \(String(format: "%.1f", seconds)) s = \(String(format: "%.0f", rate)) SYNs/s "
                + "generated (TestSupport.SYNFlood from tdm-client, one core); \(runs) reached the XDP program "
                + "(the veth drops the rest), \(stateless) given no state; records written during it: "
                + "\(written.recordsWritten - counted.recordsWritten); tables 16,384 flows / 16,384 records; "
                + "40 clients (20 one :80 request, 20 four) made before, \(real.count) answered; r1 down then up, so "
                + "\(ringMoves) of them would reach another real without their record")
        table.add(
            count: "SYN flood: LB cost per flood packet", value: Double(after.ns - before.ns) / Double(max(runs, 1)),
            unit: "ns", baseline: nil,
            method:
                "XDP run time (kernel.bpf_stats_enabled: run_time_ns / run_cnt of the program on tdm-lb's eth0) over "
                + "the \(runs) packets it ran on during the flood; kernel receive work outside the program not counted")
    }

    /// The real today's ring picks for a client without a record.
    func ringChoice(_ state: ControlState, client: String) -> String? {
        let model = state.model(macs: Self.macs)
        guard let service = model.services.first(where: { $0.port == 80 }) else { return nil }
        let ring = model.ring(for: service, size: Dataplane.ringSize)
        var key = tandem_persist_key()
        key.client = IPAddress(client)!.abiAddress
        key.af = 4
        let id = ring[Int(tandem_hash_client(service.hashSeed, &key) % UInt32(ring.count))]
        guard let address = model.real(id)?.address.description, let byte = Int(address.split(separator: ".")[3])
        else { return nil }
        return Self.names[byte - 21]
    }
}
