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

    init(reply: String?, tls: NIOSSLContext? = nil, port: UInt16 = 0) throws {
        let received = self.received
        channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tls)) }
                    try channel.pipeline.syncOperations.addHandler(Replier(reply: reply, received: received))
                }
            }
            .bind(host: "127.0.0.1", port: Int(port)).wait()
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
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: reply))).whenComplete { _ in
                bound.value.close(promise: nil)
            }
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
        try await Command.output(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-subj", "/CN=127.0.0.1",
                "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem"
            ])
        let config = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(dir + "/cert.pem").map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: dir + "/key.pem", format: .pem)))
        return try NIOSSLContext(configuration: config)
    }

    /// A check whose timeout (5 s unless a test is about timeouts) a
    /// loopback server meets even on a machine whose CPUs are busy.
    static func check(_ kind: HealthCheck.Kind, timeoutMs: UInt64 = 5000) -> HealthCheck {
        var check = HealthCheck(kind)
        check.timing.timeoutNs = timeoutMs * 1_000_000
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
        let check = Fixtures.check(.http(HTTPOptions(path: "/health", host: "shop.example", body: "good")))
        #expect(try Fixtures.probe(ok.port, check) == .success)
        let request = ok.received.withLockedValue { $0 }
        #expect(request.hasPrefix("GET /health HTTP/1.1\r\n"))
        #expect(request.contains("Host: shop.example\r\n"))

        let failing = try CannedServer(reply: Fixtures.http("503 Service Unavailable", body: "busy"))
        #expect(
            try Fixtures.probe(failing.port, Fixtures.check(.http(HTTPOptions())))
                == .failure("HTTP 503, expected 200-299"))

        let accepted = Fixtures.check(.http(HTTPOptions(expect: [503...503])))
        #expect(try Fixtures.probe(failing.port, accepted) == .success, "expected codes are configurable")

        let wrongBody = try CannedServer(reply: Fixtures.http("200 OK", body: "maintenance"))
        #expect(try Fixtures.probe(wrongBody.port, check) == .failure("HTTP 200 but the body lacks \"good\""))
    }

    @Test("a server that never answers fails at the timeout")
    func timeout() throws {
        let silent = try CannedServer(reply: nil)
        let start = Date()
        #expect(
            try Fixtures.probe(silent.port, Fixtures.check(.http(HTTPOptions()), timeoutMs: 200))
                == .failure("no answer within 200ms"))
        #expect(Date().timeIntervalSince(start) < 5, "the probe ended near its timeout, not at the default 5 s")
    }

    @Test("tls and https: handshake with a self-signed server; plain TCP or verification fails")
    func tls() async throws {
        let secure = try CannedServer(reply: Fixtures.http("200 OK", body: "ok"), tls: try await Fixtures.tls())
        #expect(try Fixtures.probe(secure.port, Fixtures.check(.tls(TLSOptions()))) == .success)
        #expect(try Fixtures.probe(secure.port, Fixtures.check(.https(HTTPOptions(), TLSOptions()))) == .success)
        let verified = try Fixtures.probe(secure.port, Fixtures.check(.tls(TLSOptions(verify: true))))
        #expect(!verified.ok, "an untrusted certificate fails when verification is asked: \(verified)")

        let plain = try CannedServer(reply: "SSH-2.0-not-tls\r\n")
        let result = try Fixtures.probe(plain.port, Fixtures.check(.tls(TLSOptions())))
        #expect(!result.ok, "a plain server fails the TLS check: \(result)")
    }
}

@Suite("Health state machine")
struct RiseFallTests {
    @Test("down after fall failures in a row, up after rise successes in a row; a good result resets the count")
    func counting() {
        var s = RiseFall(up: true, rise: 2, fall: 3)
        // Each result, and whether it flipped the state.
        let script: [(Bool, Bool)] = [
            (false, false), (false, false), (true, false),  // a success breaks the run
            (false, false), (false, false), (false, true),  // third failure in a row
            (true, false), (false, false), (true, false), (true, true)
        ]  // two in a row
        var flips: [Bool] = []
        var states: [Bool] = []
        for (ok, _) in script {
            flips.append(s.record(ok))
            states.append(s.up)
        }
        #expect(flips == script.map(\.1))
        #expect(states == [true, true, true, true, true, false, false, false, false, true])
    }

    static func check(intervalMs: UInt64 = 50, rise: Int = 2, fall: Int = 2) -> HealthCheck {
        var check = Fixtures.check(.tcp, timeoutMs: 2000)
        check.timing.intervalNs = intervalMs * 1_000_000
        check.timing.rise = rise
        check.timing.fall = fall
        return check
    }

    /// The first `count` transitions, read as the controller reads them; at
    /// `seconds`, the checker is stopped and what came is returned.
    static func first(
        _ count: Int, of checker: HealthChecker, within seconds: Int = 30
    ) async -> [HealthChecker.Transition] {
        await withTaskGroup(of: [HealthChecker.Transition]?.self) { group in
            group.addTask {
                var seen: [HealthChecker.Transition] = []
                for await transition in checker.transitions {
                    seen.append(transition)
                    if seen.count == count { break }
                }
                return seen
            }
            group.addTask {
                do { try await Task.sleep(for: .seconds(seconds)) } catch { return nil }
                checker.stop()
                return nil
            }
            for await result in group {
                if let result {
                    group.cancelAll()
                    return result
                }
            }
            return []
        }
    }

    @Test("the checker streams each transition once, in order, with the reason")
    func transitions() async throws {
        let server = try CannedServer(reply: nil)
        let port = server.port
        let checker = try HealthChecker(group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "test"))
        defer { checker.stop() }
        let target = ProbeTarget(address: IPAddress("127.0.0.1")!, port: port, check: Self.check())
        checker.update([target: true])
        try await server.channel.close().get()
        // The port comes back once the checker has seen it fail.
        let reopen = Task {
            for _ in 0..<3000 where checker.snapshot()[target]?.state.up != false {
                try await Task.sleep(for: .milliseconds(10))
            }
            return try CannedServer(reply: nil, port: port)
        }
        let seen = await Self.first(2, of: checker)
        _ = try await reopen.value  // listening until here
        #expect(seen.map(\.up) == [false, true])
        #expect(seen.map(\.target) == [target, target])
        #expect(seen.first?.reason == "2 checks in a row failed, last: connect: connection refused")
        #expect(seen.last?.reason == "2 checks in a row passed")
        #expect(checker.snapshot()[target]?.state.up == true)
        #expect(checker.snapshot()[target]?.transitions == 2)
    }

    @Test("a transition that does not fit in the buffer is sent again after the next check")
    func fullBuffer() async throws {
        let closed = [try Fixtures.closedPort(), try Fixtures.closedPort()]
        let checker = try HealthChecker(
            group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "test"),
            buffer: 1)
        defer { checker.stop() }
        let targets = closed.map { ProbeTarget(address: IPAddress("127.0.0.1")!, port: $0, check: Self.check(fall: 1)) }
        checker.update(Dictionary(uniqueKeysWithValues: targets.map { ($0, true) }))
        // Nobody reads until both are down: the second transition finds the buffer full.
        #expect(try await Loop.wait { !checker.snapshot().values.contains(where: \.state.up) })
        let seen = await Self.first(2, of: checker)
        #expect(Set(seen.map(\.target)) == Set(targets), "both targets' downs arrive: \(seen)")
        #expect(seen.allSatisfy { !$0.up })
        #expect(seen.last?.reason == "state sent again: the transition buffer was full")
    }

    @Test("stop ends the stream")
    func stopEnds() async throws {
        let checker = try HealthChecker(group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "test"))
        checker.update([
            ProbeTarget(address: IPAddress("127.0.0.1")!, port: try Fixtures.closedPort(), check: Self.check()): true
        ])
        checker.stop()
        var count = 0
        for await _ in checker.transitions { count += 1 }
        #expect(count == 0)
        #expect(checker.snapshot().isEmpty)
    }
}
