import Dataplane
import Foundation
import Model
import TandemABI
import TestSupport
import TestTraits
import Testing

extension LabSuites {
    /// Floods (docs/design/floods.md): spoofed SYNs, never answered, from the project's
    /// own raw-frame sender, against small tables they overflow many times.
    @Suite(
        "Lab SYN flood", .privileged,
        .serialized)
    struct FloodTests {
        static let floodSYNs = 3_000_000
        /// 65,536 spoofed sources (198.19.0.0/16, where the reals have no
        /// route, so they answer none): four times the record table.
        static let spoofed: ClosedRange<UInt32> = 0xC613_0000...0xC613_FFFF
        static let tables = TableSizes(flows: 16_384, records: 16_384)

        @Test("3 M spoofed SYNs: 40 clients who completed handshakes before it keep their real on :443")
        func floodKeepsClients() async throws {
            try await Lab.session {
                let lb = try LabBalancer(tables: Self.tables)
                // r1 is down while the clients arrive, then recovers: the
                // records of those whose ring choice is r1 again point
                // elsewhere, so only a kept record sends them to their real.
                try lb.fail("r1", service: "shop-http")
                var real: [Int: String] = [:]
                for i in 1...40 {
                    let source = Lab.client4(i)
                    let requests = i <= 20 ? 1 : 4  // 20 came once, 20 several times
                    for _ in 0..<requests {
                        let answer = await Lab.ask(Lab.http(Lab.vip4, 80), from: source)
                        #expect(answer != nil && (real[i] == nil || real[i] == answer), "client \(source) on :80")
                        real[i] = answer
                    }
                }
                try lb.recover("r1", service: "shop-http")
                let ringWouldMove = (1...40).filter { ringChoice(lb, client: Lab.client4($0)) != real[$0] }
                #expect(!ringWouldMove.isEmpty, "some records point elsewhere than today's ring")

                let before = lb.dataplane.tableCounters()
                let sent = try NetworkNamespace.inside("tdm-client") {
                    try SYNFlood.send(
                        interface: "eth0", from: MACAddress(bytes: [2, 0, 0xC6, 0x12, 0, 0x0A])!,
                        to: MACAddress(bytes: [2, 0, 0xC6, 0x12, 0, 0x02])!, vip: IPAddress(Lab.vip4)!, port: 80,
                        sources: Self.spoofed, count: Self.floodSYNs)
                }
                #expect(sent == Self.floodSYNs)
                let after = lb.dataplane.tableCounters()
                // The XDP program saw the flood and gave it no state. The
                // veth drops a share of it when the sender outruns the
                // receiving CPU (over half of it, seen here, on a busy
                // machine), so the bound is the tables': what arrived is
                // still 16 times the record table.
                let seen = after.synStateless - before.synStateless
                #expect(
                    seen >= UInt64(Self.tables.records) * 16,
                    "\(seen) of \(sent) SYNs reached the load balancer, \(Self.tables.records) records")
                #expect(after.recordsWritten == before.recordsWritten && after.recordsWrittenFull == 0)

                for i in 1...40 {
                    let source = Lab.client4(i)
                    let checkout = await Lab.ask(Lab.https(Lab.vip4), from: source)
                    #expect(
                        checkout == real[i],
                        "client \(source): :80 went to \(real[i] ?? "-"), :443 to \(checkout ?? "-")")
                }
            }
        }

        /// The real today's ring picks for a new client (no record).
        func ringChoice(_ lb: LabBalancer, client: String) -> String? {
            let model = lb.state.model(macs: LabBalancer.macs)
            guard let service = model.services.first(where: { $0.port == 80 && $0.vip == IPAddress(Lab.vip4) })
            else { return nil }
            let ring = model.ring(for: service, size: Dataplane.ringSize)
            var key = tandem_persist_key()
            key.client = IPAddress(client)!.abiAddress
            key.af = 4
            let id = ring[Int(tandem_hash_client(service.hashSeed, &key) % UInt32(ring.count))]
            let address = model.real(id)?.address.description
            return Lab.names.indices.first { "198.18.0.2\($0 + 1)" == address }.map { Lab.names[$0] }
        }
    }
}
