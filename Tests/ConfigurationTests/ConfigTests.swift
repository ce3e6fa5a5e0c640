import Testing
import TestSupport
@testable import Configuration
import Model

/// Variations of the shop example (examples/shop.yaml) with one thing wrong each.
extension Configs {
    static func errors(_ yaml: String) -> [ConfigError] {
        do {
            _ = try ConfigParser.parseValidated(yaml, file: "t.yaml")
            return []
        } catch let e as ConfigErrors {
            return e.errors
        } catch {
            return [ConfigError(file: "?", line: 0, key: "?", message: "\(error)")]
        }
    }
}

@Suite("Config")
struct ConfigTests {
    @Test("the shop example parses, with defaults, into one follow group")
    func specExample() throws {
        let config = try ConfigParser.parse(Configs.spec, file: "t.yaml")
        #expect(config.interface == "eth0" && config.xdpMode == .native)
        #expect(config.pinDirectory == "/sys/fs/bpf/tandem" && config.socket == "/run/tandem/tandem.sock")
        #expect(config.metrics == nil)
        #expect(config.services.count == 2)
        let http = config.services[0]
        #expect(http.persistence == Persistence(timeoutNs: 30 * 60_000_000_000, netmask: 32))
        #expect(http.check.kind == .http(HTTPOptions(method: "GET", path: "/health", expect: [200...299])))
        #expect(http.check.port == nil && config.services[1].check.kind == .tls(TLSOptions(verify: false)))
        #expect(http.check.timing.intervalNs == 2_000_000_000 && http.check.timing.fall == 3)
        #expect(http.reals.map(\.weight) == [1, 2])
        #expect(http.failover == .group && !http.dropOnFailure)
        #expect(http.line == 6)
        #expect(try ConfigValidator.validate(config, file: "t.yaml").groups == [["shop-http", "shop-https"]])
    }

    @Test(
        "an unknown key is named with its line",
        arguments: [
            ("interfase: eth0\nservices: []", 1, "interfase"),
            (
                Configs.spec.replacingOccurrences(
                    of:
                        "scheduler: maglev\n    persistence: { mode: source-ip, timeout: 30m, netmask: 32 }\n    follow: [shop-https]",
                    with:
                        "schedular: maglev\n    persistence: { mode: source-ip, timeout: 30m, netmask: 32 }\n    follow: [shop-https]"
                ), 10, "services[0].schedular"
            ),
            (
                Configs.spec.replacingOccurrences(of: "weight: 2 }\n  - name", with: "wieght: 2 }\n  - name"), 16,
                "services.shop-http.reals[1].wieght"
            )
        ])
    func unknownKey(yaml: String, line: Int, key: String) {
        let e = Configs.errors(yaml)
        #expect(e.contains { $0.line == line && $0.key == key && $0.message.hasPrefix("unknown key") }, "\(e)")
    }

    @Test("tables: sizes default to 262,144 flows and 1,048,576 records; set, bounded, memory per entry known")
    func tables() throws {
        #expect(
            try ConfigParser.parse(Configs.spec, file: "t.yaml").tables
                == TableSizes(flows: 262_144, records: 1_048_576))
        let sized = try ConfigParser.parse("tables: { flows: 65536, records: 300000 }\n" + Configs.spec, file: "t.yaml")
        #expect(sized.tables == TableSizes(flows: 65_536, records: 300_000))
        let e = Configs.errors("tables: { flows: 100, records: big, rows: 3 }\n" + Configs.spec).map(\.description)
        #expect(e.contains("t.yaml:1: tables.flows: must be a whole number in 1024...16777216, not 100"), "\(e)")
        #expect(e.contains("t.yaml:1: tables.records: must be a whole number in 1024...16777216, not big"), "\(e)")
        #expect(e.contains { $0.hasPrefix("t.yaml:1: tables.rows:") }, "\(e)")
        // 48 bytes of links per entry, key and value, a 16-byte bucket.
        #expect(TableMemory.flowEntryBytes == 128 && TableMemory.recordEntryBytes == 120)
        #expect(TableMemory.text(TableMemory.flows(262_144)) == "32.0 MiB")
        #expect(TableMemory.text(TableMemory.records(1_048_576)) == "120.0 MiB")
    }

    @Test("bad values: each error has file, line, key and what is wrong")
    func badValues() {
        let yaml = Configs.spec
            .replacingOccurrences(of: "address: 198.18.0.21, port: 80 }", with: "address: 198.18.0.321, port: 80 }")
            .replacingOccurrences(of: "port: 443\n    protocol: tcp", with: "port: 70000\n    protocol: sctp")
            .replacingOccurrences(of: "rise: 2", with: "rise: zero")
        let e = Configs.errors(yaml).map(\.description)
        #expect(e.contains("t.yaml:4: defaults.check.rise: must be a whole number in 1...100, not zero"), "\(e)")
        #expect(
            e.contains("t.yaml:15: services.shop-http.reals[0].address: 198.18.0.321 is not an IPv4 or IPv6 address"),
            "\(e)")
        #expect(
            e.contains("t.yaml:19: services.shop-https.port: must be a whole number in 1...65535, not 70000"), "\(e)")
        #expect(e.contains("t.yaml:20: services.shop-https.protocol: must be one of tcp, udp, not sctp"), "\(e)")
    }

    @Test(
        "what serve could not do is refused by check: limits, names, paths, addresses",
        arguments: [
            (
                "interface: eth0 ", "interface: \"eth0 with spaces\" ",
                "t.yaml:1: interface: eth0 with spaces is not an interface name"
            ),
            (
                "interface: eth0 ", "interface: averyveryverylongname0 ",
                "t.yaml:1: interface: averyveryverylongname0 is not an interface name: 1 to 15 bytes"
            ),
            (
                "xdp-mode: native", "xdp-mode: native\nsocket: /run/" + String(repeating: "s", count: 110),
                "t.yaml:3: socket: is 115 bytes long; at most 107"
            ),
            (
                "xdp-mode: native", "xdp-mode: native\npin-directory: relative/pins",
                "t.yaml:3: pin-directory: must be an absolute path"
            ),
            (
                "vip: 198.18.0.100\n    port: 80", "vip: 255.255.255.255\n    port: 80",
                "t.yaml:7: services.shop-http.vip: 255.255.255.255 is the broadcast address"
            ),
            (
                "vip: 198.18.0.100\n    port: 80", "vip: 0.0.0.0\n    port: 80",
                "t.yaml:7: services.shop-http.vip: 0.0.0.0 is the unspecified address"
            ),
            (
                "vip: 198.18.0.100\n    port: 80", "vip: 224.0.0.5\n    port: 80",
                "services.shop-http.vip: 224.0.0.5 is a multicast address"
            ),
            (
                "address: 198.18.0.21, port: 80", "address: 127.0.0.1, port: 80",
                "services.shop-http.reals[0].address: 127.0.0.1 is a loopback address"
            ),
            (
                "name: shop-http\n", "name: \"shop\\e[31m-http\"\n",
                "t.yaml:6: services[0].name: shop\\u{1b}[31m-http is not a service name"
            ),
            ("name: shop-http\n", "name: \"shop http\"\n", "services[0].name: shop http is not a service name")
        ])
    func refusedLikeServe(_ original: String, _ replacement: String, _ expected: String) {
        let yaml = Configs.spec.replacingOccurrences(of: original, with: replacement)
        #expect(yaml != Configs.spec)
        let e = Configs.errors(yaml).map(\.description)
        #expect(e.contains { $0.contains(expected) }, "\(e)")
        #expect(!e.joined().contains("\u{1b}"), "no raw escape reaches the terminal")
    }

    @Test("announce and node: absent by default; given, they are read")
    func announceAndNode() throws {
        let plain = try ConfigParser.parse(Configs.spec, file: "t.yaml")
        #expect(plain.announce == nil && plain.node == nil)
        let yaml = Configs.spec.replacingOccurrences(
            of: "xdp-mode: native", with: "xdp-mode: native\nnode: lb-1.example\nannounce: { table: 100 }")
        let config = try ConfigParser.parse(yaml, file: "t.yaml")
        #expect(config.node == "lb-1.example")
        #expect(config.announce == Config.Announce(table: 100))
        let big = Configs.spec.replacingOccurrences(
            of: "xdp-mode: native", with: "xdp-mode: native\nannounce: { table: 4294967295 }\nnode: 01")
        let high = try ConfigParser.parse(big, file: "t.yaml")
        #expect(high.announce?.table == UInt32.max && high.node == "01")
    }

    @Test(
        "announce tables the kernel owns or cannot hold, and node names that are not names, are refused",
        arguments: [
            ("announce: { table: 254 }", "t.yaml:3: announce.table: 254 is the kernel's 'main' table"),
            ("announce: { table: 253 }", "t.yaml:3: announce.table: 253 is the kernel's 'default' table"),
            ("announce: { table: 255 }", "t.yaml:3: announce.table: 255 is the kernel's 'local' table"),
            ("announce: { table: 0 }", "t.yaml:3: announce.table: must be a routing table id in 1...4294967295, not 0"),
            ("announce: { table: 4294967296 }", "announce.table: must be a routing table id in 1...4294967295"),
            ("announce: { table: main }", "announce.table: must be a routing table id in 1...4294967295, not main"),
            ("announce: { tabel: 100 }", "t.yaml:3: announce.tabel: unknown key (expected one of: table)"),
            ("announce: {}", "t.yaml:3: announce.table: is required"),
            ("announce: 100", "t.yaml:3: announce: must be a mapping of table"),
            ("node: \"lb 1\"", "t.yaml:3: node: lb 1 is not a node name"),
            ("node: \"lb\\e[31m1\"", "t.yaml:3: node: lb\\u{1b}[31m1 is not a node name"),
            ("node: " + String(repeating: "n", count: 65), "is not a node name: 1 to 64 bytes"),
            ("node: [lb1]", "t.yaml:3: node: must be a name such as lb1, not a list")
        ])
    func announceAndNodeRefused(_ line: String, _ expected: String) {
        let yaml = Configs.spec.replacingOccurrences(of: "xdp-mode: native", with: "xdp-mode: native\n" + line)
        let e = Configs.errors(yaml).map(\.description)
        #expect(e.contains { $0.contains(expected) }, "\(e)")
        #expect(!e.joined().contains("\u{1b}"), "no raw escape reaches the terminal")
    }

    @Test("a check's path, host and method cannot smuggle request lines")
    func checkRequestLine() {
        let yaml = Configs.spec.replacingOccurrences(
            of: "check: { type: http, path: /health }",
            with: "check: { type: http, path: \"/health\\r\\nX-Evil: 1\", host: \"a b\", method: \"GET /x\" }")
        #expect(yaml != Configs.spec)
        let e = Configs.errors(yaml).map(\.description)
        #expect(
            e.contains { $0.contains("services.shop-http.check.path: must not hold spaces or control characters") },
            "\(e)")
        #expect(
            e.contains { $0.contains("services.shop-http.check.host: must not hold spaces or control characters") },
            "\(e)")
        #expect(e.contains { $0.contains("services.shop-http.check.method: must be an HTTP method") }, "\(e)")
    }

    @Test("more services than the dataplane holds are refused")
    func tooManyServices() {
        let service = { (i: Int) in
            "  - { name: s\(i), vip: 198.18.\(1 + i / 250).\(1 + i % 250), port: 80, check: { type: none }, reals: [{ address: 198.18.0.21, port: 80 }] }"
        }
        let ok = "interface: eth0\nservices:\n" + (0..<1024).map(service).joined(separator: "\n")
        #expect(Configs.errors(ok).isEmpty)
        let over = ok + "\n" + service(1024)
        #expect(
            Configs.errors(over).map(\.description) == [
                "t.yaml:3: services: 1025 services; the dataplane holds at most 1024"
            ])
    }

    @Test("a key given twice is one error on its second line, without the file")
    func duplicateKey() {
        let yaml = Configs.spec.replacingOccurrences(of: "    port: 443\n", with: "    port: 443\n    port: 444\n")
        let e = Configs.errors(yaml).map(\.description)
        #expect(e == ["t.yaml:20: -: not valid YAML: key port given twice in one mapping"], "\(e)")
    }

    @Test("syntax and follow-rule errors come together, sorted by line")
    func bothStages() {
        let yaml = Configs.spec.replacingOccurrences(of: "interval: 2s", with: "interval: 2x")
            .replacingOccurrences(of: "follow: [shop-http]", with: "follow: []")
        let e = Configs.errors(yaml)
        #expect(e.map(\.line) == [4, 6], "\(e)")
        #expect(e.map(\.key) == ["defaults.check.interval", "services.shop-http.follow"])
    }

    @Test("a broken service does not make its partner's link an unknown target")
    func brokenPartner() {
        let yaml = Configs.spec.replacingOccurrences(of: "port: 443\n", with: "port: 0\n")
        let e = Configs.errors(yaml)
        #expect(e.map(\.key) == ["services.shop-https.port"], "\(e)")
    }

    @Test("invalid YAML is one error with its line")
    func invalidYAML() {
        let e = Configs.errors("interface: eth0\nservices:\n  - name: [unclosed\n")
        #expect(e.count == 1 && e[0].message.hasPrefix("not valid YAML") && e[0].line >= 3, "\(e)")
    }

    @Test("a one-sided link is an error naming both services")
    func oneSided() {
        let e = Configs.errors(Configs.spec.replacingOccurrences(of: "follow: [shop-http]", with: "follow: []"))
        #expect(
            e.map(\.description) == [
                "t.yaml:6: services.shop-http.follow: shop-http follows shop-https but shop-https does not follow shop-http: links must be mutual (add shop-http to the follow list of shop-https)"
            ])
    }

    @Test("following an unknown service, or itself")
    func unknownTarget() {
        let e = Configs.errors(
            Configs.spec.replacingOccurrences(
                of: "follow: [shop-http]", with: "follow: [shop-http, shop-htps, shop-https]"))
        #expect(
            e.contains {
                $0.key == "services.shop-https.follow" && $0.message == "follows shop-htps, which is not a service"
            })
        #expect(e.contains { $0.message == "a service cannot follow itself" })
    }

    @Test("linked services must share VIP, real addresses and persistence: all reported at once")
    func groupRules() {
        let yaml = Configs.spec
            .replacingOccurrences(of: "vip: 198.18.0.100\n    port: 443", with: "vip: 198.18.0.101\n    port: 443")
            .replacingOccurrences(of: "address: 198.18.0.22, port: 443", with: "address: 198.18.0.23, port: 443")
            .replacingOccurrences(
                of: "timeout: 30m, netmask: 32 }\n    follow: [shop-http]",
                with: "timeout: 10m, netmask: 24 }\n    follow: [shop-http]")
        let e = Configs.errors(yaml).map(\.description)
        #expect(
            e == [
                "t.yaml:17: services.shop-https.vip: shop-https has VIP 198.18.0.101 but shop-http, which it follows, has 198.18.0.100: linked services share the VIP",
                "t.yaml:17: services.shop-https.reals: shop-https and shop-http are linked but their real servers differ (only shop-https has 198.18.0.23; only shop-http has 198.18.0.22): linked services have the same real addresses",
                "t.yaml:17: services.shop-https.persistence: shop-https has persistence source-ip /24 10m but shop-http, which it follows, has source-ip /32 30m: linked services use the same persistence options"
            ])
    }

    @Test("following requires persistence")
    func followNeedsPersistence() {
        let yaml = Configs.spec.replacingOccurrences(
            of: "    persistence: { mode: source-ip, timeout: 30m, netmask: 32 }\n    follow: [shop-http]",
            with: "    follow: [shop-http]")
        let e = Configs.errors(yaml)
        #expect(
            e.contains { $0.key == "services.shop-https.persistence" && $0.message.contains("has no persistence") },
            "\(e)")
    }

    @Test("links are transitive; protocols may differ (HTTP/3 on UDP :443 follows)")
    func transitive() throws {
        let quic = """

              - name: shop-quic
                vip: 198.18.0.100
                port: 443
                protocol: udp
                persistence: { mode: source-ip, timeout: 30m, netmask: 32 }
                follow: [shop-https]
                reals:
                  - { address: 198.18.0.21 }
                  - { address: 198.18.0.22 }
            """
        let yaml =
            Configs.spec.replacingOccurrences(of: "follow: [shop-http]", with: "follow: [shop-http, shop-quic]") + quic
        let config = try ConfigParser.parse(yaml, file: "t.yaml")
        #expect(
            try ConfigValidator.validate(config, file: "t.yaml").groups == [["shop-http", "shop-https", "shop-quic"]])
    }

    @Test("duplicates: names and VIP:port/protocol")
    func duplicates() {
        let yaml = Configs.spec.replacingOccurrences(of: "name: shop-https", with: "name: shop-http")
            .replacingOccurrences(of: "443", with: "80")
        let e = Configs.errors(yaml).map(\.description)
        #expect(
            e.contains("t.yaml:17: services.shop-http.name: shop-http is already the name of the service at line 6"),
            "\(e)")
        #expect(e.contains { $0.contains("198.18.0.100:80/tcp is already served by shop-http (line 6)") }, "\(e)")
    }

    @Test("DSR: a real's port must be the service's; its family the VIP's")
    func realRules() {
        let yaml = Configs.spec.replacingOccurrences(
            of: "address: 198.18.0.21, port: 443", with: "address: 2001:db8::21, port: 8443")
        let e = Configs.errors(yaml).map(\.description)
        #expect(
            e.contains(
                "t.yaml:26: services.shop-https.reals[0].address: 2001:db8::21 is not of the VIP's family (198.18.0.100)"
            ), "\(e)")
        #expect(
            e.contains(
                "t.yaml:26: services.shop-https.reals[0].port: 8443 differs from the service port 443: direct server return forwards without changing the port"
            ), "\(e)")
    }

    @Test("HTTP-only check keys on a TCP check are refused")
    func checkKeys() {
        let e = Configs.errors(
            Configs.spec.replacingOccurrences(of: "check: { type: tls }", with: "check: { type: tls, path: /x }"))
        #expect(
            e.map(\.description) == [
                "t.yaml:24: services.shop-https.check.path: applies to http and https checks only (type is tls)"
            ])
    }

    static func check(_ mapping: String) -> (HealthCheck?, [String]) {
        let yaml = Configs.spec.replacingOccurrences(of: "check: { type: tls }", with: "check: \(mapping)")
        do {
            let config = try ConfigParser.parseValidated(yaml, file: "t.yaml").config
            return (config.services[1].check, [])
        } catch let e as ConfigErrors {
            return (nil, e.errors.map(\.description))
        } catch {
            return (nil, ["\(error)"])
        }
    }

    @Test(
        "each check type reads its own options into its case",
        arguments: [
            ("{ type: tcp, port: 8443 }", HealthCheck(.tcp, port: 8443)),
            ("{ type: none }", HealthCheck(.none)),
            ("{ type: tls, verify: true }", HealthCheck(.tls(TLSOptions(verify: true)))),
            (
                "{ type: https, method: head, host: shop.example, expect: [200, 301-302], body: ok, verify: true }",
                HealthCheck(
                    .https(
                        HTTPOptions(method: "HEAD", host: "shop.example", expect: [200...200, 301...302], body: "ok"),
                        TLSOptions(verify: true)))
            ),
            ("{ type: http, expect: 503 }", HealthCheck(.http(HTTPOptions(expect: [503...503])))),
            // As always: verify is accepted, and unused, where no TLS is spoken.
            ("{ type: tcp, verify: true }", HealthCheck(.tcp)),
            ("{ port: 81 }", HealthCheck(.tcp, port: 81))
        ])
    func checkKinds(mapping: String, expected: HealthCheck) {
        let (check, errors) = Self.check(mapping)
        #expect(errors == [])
        #expect(check == expected)
    }

    @Test(
        "check options: errors name file, line and key",
        arguments: [
            (
                "{ type: tcp, method: POST, expect: 99 }",
                [
                    "t.yaml:24: services.shop-https.check.expect: must be status codes such as 200, 200-399 or a list of them, not 99",
                    "t.yaml:24: services.shop-https.check.method: applies to http and https checks only (type is tcp)"
                ]
            ),
            (
                "{ type: none, body: ok }",
                ["t.yaml:24: services.shop-https.check.body: applies to http and https checks only (type is none)"]
            ),
            ("{ type: http, path: health }", ["t.yaml:24: services.shop-https.check.path: must start with /"]),
            (
                "{ type: htp }",
                ["t.yaml:24: services.shop-https.check.type: must be one of tcp, http, https, tls, none, not htp"]
            ),
            ("{ type: tls, verify: yes }", ["t.yaml:24: services.shop-https.check.verify: must be true or false"]),
            (
                "{ type: http, expect: [200, x] }",
                [
                    "t.yaml:24: services.shop-https.check.expect: must be status codes such as 200, 200-399 or a list of them, not x"
                ]
            ),
            (
                "{ type: tcp, port: 0 }",
                ["t.yaml:24: services.shop-https.check.port: must be a whole number in 1...65535, not 0"]
            ),
            (
                "{ type: tcp, paht: /x }",
                [
                    "t.yaml:24: services.shop-https.check.paht: unknown key (expected one of: interval, timeout, rise, fall, type, method, path, host, expect, body, keep-alive, verify, port)"
                ]
            ),
            (
                "{ type: http, keep-alive: sometimes }",
                ["t.yaml:24: services.shop-https.check.keep-alive: must be true or false"]
            ),
            (
                "{ type: https, keep-alive: false }",
                ["t.yaml:24: services.shop-https.check.keep-alive: applies to http checks only (type is https)"]
            )
        ])
    func checkErrors(mapping: String, expected: [String]) {
        #expect(Self.check(mapping).1 == expected)
    }

    @Test("check summaries, as check and status print them")
    func summaries() {
        #expect(Self.check("{ type: https, path: /up, rise: 3 }").0?.summary == "https GET /up every 2s rise 3 fall 3")
        #expect(Self.check("{ type: tls }").0?.summary == "tls every 2s rise 2 fall 3")
        #expect(Self.check("{ type: none }").0?.summary == "none")
    }

    @Test(
        "durations",
        arguments: [
            ("500ms", UInt64(500_000_000)), ("2s", 2_000_000_000), ("30m", 1_800_000_000_000),
            ("1h30m", 5_400_000_000_000)
        ])
    func durations(text: String, ns: UInt64) {
        #expect(DurationText.parse(text) == ns)
    }

    @Test("not durations", arguments: ["", "2", "s", "2x", "-1s", "1.5s"])
    func notDurations(text: String) {
        #expect(DurationText.parse(text) == nil)
    }
}
