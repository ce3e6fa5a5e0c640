import Dataplane
import Foundation
import TestSupport
import TestTraits
import Testing

/// Every suite that uses the lab: one lab per machine, so one test at a time.
@Suite(.serialized) enum LabSuites {}

extension LabSuites {
    /// End to end: real TCP, TLS and UDP clients and servers in the lab, the
    /// XDP program attached natively to the load balancer's veth.
    @Suite(
        "Lab end to end", .privileged,
        .serialized)
    struct LabTests {
        static let clients = 1...30

        @Test("port following, an unlinked service, IPv6 and UDP, then failover of a real on both ports")
        func followAndFailover() async throws {
            try await Lab.session {
                let lb = try LabBalancer()
                if let hold = ProcessInfo.processInfo.environment["TANDEM_LAB_HOLD"].flatMap(UInt32.init) {
                    sleep(hold)
                }

                // Every client's :80 and :443 (TCP and TLS) and UDP :443 land on one real.
                var http: [Int: String] = [:]
                for i in Self.clients {
                    let source = Lab.client4(i)
                    let a = await Lab.ask(Lab.http(Lab.vip4, 80), from: source)
                    let b = await Lab.ask(Lab.https(Lab.vip4), from: source)
                    #expect(a != nil, "client \(source) got an answer on :80")
                    #expect(a == b, "client \(source): :80 \(a ?? "-") and :443 \(b ?? "-")")
                    http[i] = a
                }
                #expect(Set(http.values).count >= 2, "clients spread over reals: \(Set(http.values))")
                for i in Self.clients.prefix(8) {
                    #expect(
                        await Lab.askUDP(port: 443, from: Lab.client4(i)) == http[i], "UDP :443 follows for client \(i)"
                    )
                }
                #expect(lb.dataplane.counters(service: 1).followHits >= UInt64(Self.clients.count))

                // :8080 is not linked: it schedules on its own, so some client differs.
                let unlinked = await Self.clients.asyncMap {
                    await Lab.ask(Lab.http(Lab.vip4, 8080), from: Lab.client4($0))
                }
                #expect(unlinked.allSatisfy { $0 != nil })
                #expect(zip(Self.clients, unlinked).contains { http[$0.0] != $0.1 }, "8080 follows nobody")
                #expect(lb.dataplane.counters(service: 3).followHits == 0)

                // IPv6 VIP, linked :80 and :443.
                for i in Self.clients.prefix(10) {
                    let a = await Lab.ask(Lab.http(Lab.vip6, 80), from: Lab.client6(i))
                    let b = await Lab.ask(Lab.https(Lab.vip6), from: Lab.client6(i))
                    #expect(a != nil && a == b, "IPv6 client \(i): \(a ?? "-") / \(b ?? "-")")
                }

                // Fail the real of client 1 on :80 only; the group moves its clients.
                let failed = http[1]!
                try await Lab.stopPort(failed, 80)
                try lb.fail(failed, service: "shop-http")
                for i in Self.clients {
                    let source = Lab.client4(i)
                    let checkout = await Lab.ask(Lab.https(Lab.vip4), from: source)
                    let cart = await Lab.ask(Lab.http(Lab.vip4, 80), from: source)
                    #expect(
                        checkout != nil && checkout == cart,
                        "client \(source) after failure: :443 \(checkout ?? "-"), :80 \(cart ?? "-")")
                    if http[i] == failed {
                        #expect(checkout != failed, "client \(source) moved off \(failed)")
                    } else {
                        #expect(checkout == http[i], "client \(source) kept \(http[i]!)")
                    }
                }
            }
        }
    }
}
