import ControlAPI
import Foundation
import TestSupport
import TestTraits
import Testing

extension LabSuites {
    /// Announcing the VIPs (docs/design/several-nodes.md) through `tandem serve` in the lab: the
    /// routes in the load balancer's table 100, as `ip route` shows them,
    /// following checks, drain, restarts and `tandem down`.
    @Suite(
        "Lab end to end: announcing VIPs", .privileged,
        .serialized)
    struct AnnounceTests {
        static let table = 100
        static let metrics = "127.0.0.1:9651"

        /// shop :80/:443 on the IPv4 VIP, linked (one failing :80 takes its
        /// real out of both); api6 on the IPv6 VIP's :8080.
        static let services = """
              - name: shop-http
                vip: 198.18.0.100
                port: 80
                persistence: { mode: source-ip, timeout: 30m, netmask: 32 }
                follow: [shop-https]
                check: { type: http, path: /health }
                reals: [{ address: 198.18.0.21, port: 80 }, { address: 198.18.0.22, port: 80 }, { address: 198.18.0.23, port: 80 }]
              - name: shop-https
                vip: 198.18.0.100
                port: 443
                persistence: { mode: source-ip, timeout: 30m, netmask: 32 }
                follow: [shop-http]
                check: { type: tls }
                reals: [{ address: 198.18.0.21, port: 443 }, { address: 198.18.0.22, port: 443 }, { address: 198.18.0.23, port: 443 }]
              - name: api6
                vip: 2001:db8::100
                port: 8080
                check: { type: http, path: /health }
                reals: [{ address: "2001:db8::21", port: 8080 }, { address: "2001:db8::22", port: 8080 }]
            """

        /// Tandem's routes in the lab balancer's `table`: destination -> device.
        static func routes(table: Int = table) async throws -> [String: String] {
            var found: [String: String] = [:]
            for family in ["-4", "-6"] {
                let result = try await Command.run(
                    "ip", ["-n", "tdm-lb", family, "-j", "route", "show", "table", "\(table)", "proto", "250"])
                guard result.status == 0 else { continue }  // no such table yet: no routes
                let list = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [[String: Any]] ?? []
                for r in list { found[r["dst"] as? String ?? "?"] = r["dev"] as? String ?? "-" }
            }
            return found
        }

        static func waitRoutes(_ expected: Set<String>, table: Int = table, seconds: Double = 5) async -> Bool {
            await TestClock.within(seconds) {
                (try? await routes(table: table)).map { Set($0.keys) == expected } ?? false
            }
                != nil
        }

        static func vip(_ lb: Served, _ address: String) async -> VIPReport? {
            try? await lb.status().vips.first { $0.vip == address }
        }

        static func scrape() async -> String {
            (try? await Lab.run(
                ["ip", "netns", "exec", "tdm-lb", "curl", "-s", "-m", "3", "http://\(metrics)/metrics"], check: false))
                ?? ""
        }

        @Test(
            "announced after the first checks; withdrawn with no usable real and back; drain (kept through a restart) and resume; a reload moves the table; SIGTERM leaves the routes; tandem down withdraws, then detaches"
        )
        func announceLifecycle() async throws {
            try await Lab.session {
                let both: Set<String> = [Lab.vip4, Lab.vip6]
                let lb = try await Served(
                    services: Self.services,
                    extra: "node: lab-lb\nannounce: { table: \(Self.table) }\nmetrics: \(Self.metrics)")
                #expect(await Self.waitRoutes(both), "both VIPs announced")
                #expect(try await Self.routes() == [Lab.vip4: "eth0", Lab.vip6: "eth0"])
                let log = try String(contentsOfFile: lb.log, encoding: .utf8)
                let serving = try #require(log.range(of: "serving"), "\(log)")
                let announced = try #require(log.range(of: "VIP announced"), "\(log)")
                #expect(serving.lowerBound < announced.lowerBound, "announced only after the first checks")
                #expect(log.contains("node=lab-lb"), "log lines name the node")
                let status = try await lb.status()
                #expect(status.node == "lab-lb" && status.announceTable == 100 && !status.drained)
                #expect(status.vips.map(\.vip) == [Lab.vip4, Lab.vip6] && status.vips.allSatisfy(\.announced))
                let text = try await lb.cli(["status"])
                #expect(text.contains("node: lab-lb  announce: table 100"), "\(text)")
                #expect(await Self.scrape().contains("tandem_vip_announced{vip=\"198.18.0.100\",node=\"lab-lb\"} 1"))

                // Every real fails :80: shop-https loses them too (group): no usable real on the VIP.
                for real in Lab.names { try await Lab.stopPort(real, 80) }
                #expect(await Self.waitRoutes([Lab.vip6], seconds: 2 * 0.3 + 2), "VIP withdrawn with no usable real")
                let down = await Self.vip(lb, Lab.vip4)
                #expect(down?.announced == false && down?.reason == "no usable real", "\(String(describing: down))")
                #expect(try String(contentsOfFile: lb.log, encoding: .utf8).contains("reason=\"no usable real\""))
                #expect(await Self.scrape().contains("tandem_vip_announced{vip=\"198.18.0.100\",node=\"lab-lb\"} 0"))
                try await Lab.startPort("r2", 80)
                #expect(await Self.waitRoutes(both, seconds: 2 * 0.3 + 2), "announced again once a real is back")
                #expect(try String(contentsOfFile: lb.log, encoding: .utf8).contains("reason=\"a usable real again\""))

                // Drain: both withdrawn, and still after a restart, until resume.
                let drained = try await lb.cli(["node", "drain"])
                #expect(drained.contains("node lab-lb: draining; withdrew 198.18.0.100, 2001:db8::100"), "\(drained)")
                #expect(try await Self.routes().isEmpty)
                #expect(await Self.vip(lb, Lab.vip6)?.reason == "draining (tandem node drain)")
                await lb.stop()
                try await lb.start()
                #expect(try await lb.status().drained, "drained through a restart")
                try await Task.sleep(for: .seconds(2))
                #expect(try await Self.routes().isEmpty, "a drained node announces nothing after a restart")
                let resumed = try await lb.cli(["node", "resume"])
                #expect(resumed.contains("resumed; announced 198.18.0.100, 2001:db8::100"), "\(resumed)")
                #expect(try await Self.routes() == [Lab.vip4: "eth0", Lab.vip6: "eth0"])

                // Reload: node is fixed until a restart; a new table takes the routes.
                try lb.write(services: Self.services)
                try Self.configure(lb, "node: other\nannounce: { table: 100 }\nmetrics: \(Self.metrics)")
                let refused = await lb.attempt(["reload"])
                #expect(refused.status == 1 && refused.output.contains("node changed"), "\(refused.output)")
                try Self.configure(lb, "node: lab-lb\nannounce: { table: 200 }\nmetrics: \(Self.metrics)")
                try await lb.cli(["reload"])
                #expect(try await Self.routes().isEmpty, "table 100 emptied")
                #expect(try await Self.routes(table: 200) == [Lab.vip4: "eth0", Lab.vip6: "eth0"])

                // SIGTERM: forwarding and routes stay.
                await lb.stop()
                #expect(try await Self.routes(table: 200).count == 2, "routes stay after SIGTERM")
                #expect(await Lab.ask(Lab.http(Lab.vip4, 80), from: Lab.client4(1)) != nil, "still forwarding")

                // tandem down (given only the pins): withdraws from the pinned table, then detaches.
                let downed = try await Lab.run([
                    "nsenter", "--net=/run/netns/tdm-lb", Served.tandem, "down", "--pin-directory", lb.pins,
                    "--withdraw-wait", "0.5"
                ])
                #expect(downed.contains("withdrew 198.18.0.100, 2001:db8::100 from routing table 200"), "\(downed)")
                #expect(downed.contains("XDP detached from eth0"), "\(downed)")
                #expect(try await Self.routes(table: 200).isEmpty)
                let link = try await Lab.run(["ip", "-n", "tdm-lb", "-d", "link", "show", "eth0"])
                #expect(!link.contains("xdp"), "XDP detached: \(link)")
            }
        }

        /// Rewrites `lb`'s config with other top-level keys.
        static func configure(_ lb: Served, _ extra: String) throws {
            var text = try String(contentsOfFile: lb.configPath, encoding: .utf8)
            let start = try #require(text.range(of: "node: "))
            let end = try #require(text.range(of: "\ndefaults:"))
            text.replaceSubrange(start.lowerBound..<end.lowerBound, with: extra)
            try text.write(toFile: lb.configPath, atomically: true, encoding: .utf8)
        }
    }
}
