import Model
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import TestSupport
import Testing
@testable import Health

/// A loopback server that answers every connection with canned bytes (or
/// never answers), optionally over TLS; it keeps what it was sent.
final class CannedServer: @unchecked Sendable {
    let channel: any Channel
    let received = NIOLockedValueBox("")
    var port: UInt16 { UInt16(channel.localAddress!.port!) }

    init(reply: String?, tls: NIOSSLContext? = nil) throws {
        let received = self.received
        channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    try channel.pipeline.syncOperations.addHandler(Replier(reply: reply, received: received))
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
    }

    deinit { try? channel.close().wait() }

    final class Replier: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let reply: String?
        let received: NIOLockedValueBox<String>
        init(reply: String?, received: NIOLockedValueBox<String>) {
            self.reply = reply
            self.received = received
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            let text = buffer.readString(length: buffer.readableBytes) ?? ""
            received.withLockedValue { $0 += text }
            guard let reply, text.contains("\r\n\r\n") || !text.hasPrefix("GET") else { return }
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: reply))).whenComplete { _ in context.close(promise: nil) }
        }
    }
}

enum Fixtures {
    static func http(_ status: String, body: String) -> String {
        "HTTP/1.1 \(status)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
    }

    /// A self-signed certificate for 127.0.0.1, made once with openssl.
    static func tls() async throws -> NIOSSLContext {
        let dir = NSTemporaryDirectory() + "tandem-health-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try await Command.output("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                                                      "-subj", "/CN=127.0.0.1",
                                                      "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem"])
        let config = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(dir + "/cert.pem").map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: dir + "/key.pem", format: .pem)))
        return try NIOSSLContext(configuration: config)
    }

    static func check(_ type: CheckType, timeoutMs: UInt64 = 500, _ edit: (inout HealthCheck) -> Void = { _ in }) -> HealthCheck {
        var check = HealthCheck()
        check.type = type
        check.timing.timeoutNs = timeoutMs * 1_000_000
        edit(&check)
        return check
    }

    static func probe(_ port: UInt16, _ check: HealthCheck) throws -> ProbeResult {
        let prober = try Prober(group: MultiThreadedEventLoopGroup.singleton)
        return try prober.probe(ProbeTarget(address: IPAddress("127.0.0.1")!, port: port, check: check)).wait()
    }

    /// A port nobody listens on.
    static func closedPort() throws -> UInt16 {
        let server = try CannedServer(reply: nil)
        let port = server.port
        try server.channel.close().wait()
        return port
    }
}

@Suite("Health probes against loopback servers")
struct ProbeTests {
    @Test("tcp: a listener is up, a closed port is refused")
    func tcp() throws {
        let server = try CannedServer(reply: nil)
        #expect(try Fixtures.probe(server.port, Fixtures.check(.tcp)) == .success)
        let refused = try Fixtures.probe(try Fixtures.closedPort(), Fixtures.check(.tcp))
        #expect(refused == .failure("connect: connection refused"))
    }

    @Test("http: sends method, path and Host; judges status and body")
    func http() throws {
        let ok = try CannedServer(reply: Fixtures.http("200 OK", body: "all good\n"))
        let check = Fixtures.check(.http) {
            $0.path = "/health"
            $0.host = "shop.example"
            $0.body = "good"
        }
        #expect(try Fixtures.probe(ok.port, check) == .success)
        let request = ok.received.withLockedValue { $0 }
        #expect(request.hasPrefix("GET /health HTTP/1.1\r\n"))
        #expect(request.contains("Host: shop.example\r\n"))

        let failing = try CannedServer(reply: Fixtures.http("503 Service Unavailable", body: "busy"))
        #expect(try Fixtures.probe(failing.port, Fixtures.check(.http)) == .failure("HTTP 503, expected 200-299"))

        let accepted = Fixtures.check(.http) { $0.expect = [503...503] }
        #expect(try Fixtures.probe(failing.port, accepted) == .success, "expected codes are configurable")

        let wrongBody = try CannedServer(reply: Fixtures.http("200 OK", body: "maintenance"))
        #expect(try Fixtures.probe(wrongBody.port, check) == .failure("HTTP 200 but the body lacks \"good\""))
    }

    @Test("a server that never answers fails at the timeout")
    func timeout() throws {
        let silent = try CannedServer(reply: nil)
        let start = Date()
        #expect(try Fixtures.probe(silent.port, Fixtures.check(.http, timeoutMs: 200)) == .failure("no answer within 200ms"))
        #expect(Date().timeIntervalSince(start) < 2, "the probe ended near its timeout, not later")
    }

    @Test("tls and https: handshake with a self-signed server; plain TCP or verification fails")
    func tls() async throws {
        let secure = try CannedServer(reply: Fixtures.http("200 OK", body: "ok"), tls: try await Fixtures.tls())
        #expect(try Fixtures.probe(secure.port, Fixtures.check(.tls)) == .success)
        #expect(try Fixtures.probe(secure.port, Fixtures.check(.https)) == .success)
        let verified = try Fixtures.probe(secure.port, Fixtures.check(.tls) { $0.verify = true })
        #expect(!verified.ok, "an untrusted certificate fails when verification is asked: \(verified)")

        let plain = try CannedServer(reply: "SSH-2.0-not-tls\r\n")
        let result = try Fixtures.probe(plain.port, Fixtures.check(.tls))
        #expect(!result.ok, "a plain server fails the TLS check: \(result)")
    }
}

@Suite("Health state machine")
struct RiseFallTests {
    @Test("down after fall failures in a row, up after rise successes in a row; a good result resets the count")
    func counting() {
        var s = RiseFall(up: true, rise: 2, fall: 3)
        // Each result, and whether it flipped the state.
        let script: [(Bool, Bool)] = [(false, false), (false, false), (true, false), // a success breaks the run
                                      (false, false), (false, false), (false, true),  // third failure in a row
                                      (true, false), (false, false), (true, false), (true, true)] // two in a row
        var flips: [Bool] = []
        var states: [Bool] = []
        for (ok, _) in script {
            flips.append(s.record(ok))
            states.append(s.up)
        }
        #expect(flips == script.map(\.1))
        #expect(states == [true, true, true, true, true, false, false, false, false, true])
    }

    @Test("the checker reports each transition once, with the reason")
    func checker() throws {
        let server = try CannedServer(reply: nil)
        let port = server.port
        let events = NIOLockedValueBox<[(Bool, String)]>([])
        let checker = try HealthChecker(group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "test")) { _, up, reason in
            events.withLockedValue { $0.append((up, reason)) }
        }
        defer { checker.stop() }
        var check = Fixtures.check(.tcp, timeoutMs: 100)
        check.timing.intervalNs = 50_000_000
        check.timing.rise = 2
        check.timing.fall = 2
        let target = ProbeTarget(address: IPAddress("127.0.0.1")!, port: port, check: check)
        checker.update([target: true])
        try server.channel.close().wait()
        for _ in 0..<60 where events.withLockedValue({ $0.isEmpty }) { usleep(50_000) }
        let seen = events.withLockedValue { $0 }
        #expect(seen.count == 1)
        #expect(seen.first?.0 == false)
        #expect(seen.first?.1 == "2 checks in a row failed, last: connect: connection refused")
        #expect(checker.snapshot()[target]?.state.up == false)
    }
}
