import Configuration
import Control
import ControlAPI
@testable import Controller
import Dataplane
import Foundation
import Glibc
import Logging
import Model
import Prometheus
import TestSupport
import TestTraits
import Testing

/// The ring digest as operators read it: `tandem status --json` and
/// `/metrics`, rendered from a private dataplane.
@Suite(
    "Ring digests in status and /metrics",
    .privileged)
struct RingDigestTests {
    static let yaml = """
        interface: tdm-test0
        services:
        \(Configs.followPair(reals: ["198.18.0.21", "198.18.0.22"]))  - name: api
            vip: 198.18.0.101
            port: 80
            check: { type: none }
            reals: [{ address: 198.18.0.21, port: 80 }, { address: 198.18.0.22, port: 80 }]
        """

    static func view(_ dataplane: Dataplane, _ state: ControlState) -> ReadView {
        ReadView(
            dataplane: dataplane, state: state, census: nil, censusAt: nil, probes: [:], configPath: "t.yaml",
            started: .now,
            rates: RateTracker(), logger: Logger(label: "test"), ringDigests: dataplane.ringDigests)
    }

    /// The digest label of each `tandem_service_ring_info` series at 1.
    static func ringInfo(_ text: String) -> [String: [String]] {
        var found: [String: [String]] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("tandem_service_ring_info{") {
            let labels = line.drop { $0 != "{" }.dropFirst().prefix { $0 != "}" }
            let pairs = labels.split(separator: ",").map { $0.split(separator: "=", maxSplits: 1).map(String.init) }
            let value = line.split(separator: " ").last.flatMap { Double($0) }
            guard value == 1, let service = pairs.first(where: { $0[0] == "service" })?[1],
                let digest = pairs.first(where: { $0[0] == "digest" })?[1]
            else { continue }
            found[service.trimmingCharacters(in: ["\""]), default: []].append(digest.trimmingCharacters(in: ["\""]))
        }
        return found
    }

    @Test("every service shows its digest; /metrics has one series per service, the old one gone after a change")
    func statusAndMetrics() throws {
        let dataplane = try Dataplane(pinRoot: "/sys/fs/bpf/tandem-test-\(getpid())-digests")
        defer { dataplane.removePins() }
        var state = try ControlState(ConfigParser.parseValidated(Self.yaml, file: "t.yaml"))
        try dataplane.apply(state.model(macs: [:]))

        let status = Self.view(dataplane, state).status()
        let digests = Dictionary(uniqueKeysWithValues: status.services.map { ($0.name, $0.ringDigest) })
        for (name, digest) in digests { #expect(digest?.count == 16, "\(name)") }
        #expect(digests["shop-http"]! == digests["shop-https"]!, "the same reals, seed and scheduler")
        #expect(digests["api"]! != digests["shop-http"]!, "another VIP, and no persistence")
        let json = String(decoding: try JSONEncoder().encode(status), as: UTF8.self)
        #expect(json.contains("\"ringDigest\":\"\(digests["api"]!!)\""))

        let metrics = ControllerMetrics(registry: PrometheusCollectorRegistry())
        let first = Self.view(dataplane, state).metricsText(metrics)
        #expect(Self.ringInfo(first) == digests.mapValues { [$0!] }, "\(first)")

        // api's second real weighs 2 now: a new digest, and only it, in /metrics.
        var config = state.config
        config.services[2].reals[1].weight = 2
        try state.reload(ConfigValidator.validate(config, file: "t.yaml"))
        try dataplane.apply(state.model(macs: [:]))
        let second = Self.ringInfo(Self.view(dataplane, state).metricsText(metrics))
        #expect(second["api"]?.count == 1)
        #expect(second["api"] != [digests["api"]!!])
        #expect(second["shop-http"] == [digests["shop-http"]!!])
    }
}
