import Testing
@testable import Model

/// Check options as plain key/values with lines: what the config parser
/// hands over, without YAML.
@Suite("Health check options")
struct HealthCheckTests {
    static func read(_ values: [String: CheckOptions.Value]) -> (HealthCheck, [CheckOptions.Problem]) {
        var options = CheckOptions(values, line: 9)
        var timing = CheckTiming()
        timing.rise = 5
        let check = HealthCheck(reading: &options, timing: timing)
        return (check, options.problems)
    }

    static func scalar(_ text: String, line: Int = 9) -> CheckOptions.Value { .init(.scalar(text), line: line) }

    @Test("the type picks the case; the case holds only its own options")
    func kinds() {
        let (http, none) = Self.read([
            "type": Self.scalar("http"), "path": Self.scalar("/up"), "method": Self.scalar("post"),
            "port": Self.scalar("8080")
        ])
        #expect(none.isEmpty)
        #expect(
            http
                == HealthCheck(
                    .http(HTTPOptions(method: "POST", path: "/up")),
                    timing: {
                        var t = CheckTiming(); t.rise = 5; return t
                    }(),
                    port: 8080))
        #expect(Self.read([:]).0.kind == .tcp, "tcp when no type is given")
        #expect(
            Self.read(["type": Self.scalar("tls"), "verify": Self.scalar("true")]).0.kind
                == .tls(TLSOptions(verify: true)))
        #expect(HealthCheck.Kind.https(HTTPOptions(path: "/x"), TLSOptions()).http?.path == "/x")
        #expect(HealthCheck.Kind.tls(TLSOptions()).http == nil)
    }

    @Test("problems carry the line of the value, or of the list item")
    func problems() {
        let expect = CheckOptions.Value(.list([Self.scalar("200", line: 10), Self.scalar("2xx", line: 11)]), line: 10)
        let (_, problems) = Self.read(["type": Self.scalar("http"), "expect": expect, "host": .init(.mapping, line: 12)]
        )
        #expect(
            problems == [
                .init(line: 12, key: "host", message: "must be a non-empty string"),
                .init(
                    line: 11, key: "expect",
                    message: "must be status codes such as 200, 200-399 or a list of them, not 2xx")
            ])
        let (_, foreign) = Self.read([
            "type": Self.scalar("tls"), "body": Self.scalar("ok", line: 13), "path": Self.scalar("/", line: 14)
        ])
        #expect(
            foreign == [.init(line: 14, key: "path", message: "applies to http and https checks only (type is tls)")],
            "only the first option of another kind is refused")
    }

    @Test("the keys of a check mapping, in the order messages list them")
    func keys() {
        #expect(
            HealthCheck.keys == ["type", "method", "path", "host", "expect", "body", "keep-alive", "verify", "port"])
        #expect(HealthCheck.list(["http", "https", "tls"]) == "http, https and tls")
    }
}
