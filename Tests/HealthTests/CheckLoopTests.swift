import Model
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
@testable import Health

/// A loopback HTTP server that keeps connections open and answers every
/// request with 200 "ok" (`delayMs` late; not at all after the first
/// `answers`); it counts connections and notes each request's path, its
/// Connection header and when it came.
final class KeepAliveServer: @unchecked Sendable {
    struct Request {
        var path: String
        var connectionHeader: String
        var at: UInt64
    }

    let channel: any Channel
    let connections = NIOLockedValueBox(0)
    let requests = NIOLockedValueBox<[Request]>([])
    var port: UInt16 { UInt16(channel.localAddress!.port!) }

    init(delayMs: Int64 = 0, answers: Int = .max, goodbyeMs: Int64? = nil) throws {
        let (connections, requests) = (connections, requests)
        channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                connections.withLockedValue { $0 += 1 }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        Answerer(requests: requests, delayMs: delayMs, answers: answers, goodbyeMs: goodbyeMs))
                }
            }
            .bind(host: "127.0.0.1", port: 0).wait()
    }

    deinit { try? channel.close().wait() }

    var requestCount: Int { requests.withLockedValue { $0.count } }

    final class Answerer: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let requests: NIOLockedValueBox<[Request]>
        let delayMs: Int64
        let answers: Int
        let goodbyeMs: Int64?
        var pending = ""
        init(requests: NIOLockedValueBox<[Request]>, delayMs: Int64, answers: Int, goodbyeMs: Int64? = nil) {
            self.requests = requests
            self.delayMs = delayMs
            self.answers = answers
            self.goodbyeMs = goodbyeMs
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            pending += buffer.readString(length: buffer.readableBytes) ?? ""
            while let end = pending.range(of: "\r\n\r\n") {
                let head = String(pending[..<end.lowerBound])
                pending = String(pending[end.upperBound...])
                let path = head.split(separator: " ").dropFirst().first.map(String.init) ?? ""
                let connection =
                    head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("connection:") }
                    .map { $0.dropFirst("connection:".count).trimmingCharacters(in: .whitespaces) } ?? ""
                let count = requests.withLockedValue {
                    $0.append(Request(path: path, connectionHeader: connection, at: KernelClock.monotonicNs()))
                    return $0.count
                }
                guard count <= answers else { continue }
                let reply = ByteBuffer(string: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                if let goodbyeMs {
                    // Answers, then says 408 and closes while the connection is idle.
                    context.writeAndFlush(wrapOutboundOut(reply), promise: nil)
                    let channel = context.channel
                    let bye = "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    context.eventLoop.scheduleTask(in: .milliseconds(goodbyeMs)) {
                        channel.writeAndFlush(ByteBuffer(string: bye)).whenComplete { _ in channel.close(promise: nil) }
                    }
                } else if delayMs == 0 {
                    context.writeAndFlush(wrapOutboundOut(reply), promise: nil)
                } else {
                    let channel = context.channel
                    context.eventLoop.scheduleTask(in: .milliseconds(delayMs)) {
                        channel.writeAndFlush(reply, promise: nil)
                    }
                }
            }
        }
    }
}

enum Loop {
    static let localhost = IPAddress("127.0.0.1")!

    /// A check every `intervalMs`. Its timeout is 5 s unless a test is about
    /// timeouts: a loopback real answers in microseconds, but a machine whose
    /// CPUs are busy may not run the loop's thread for a good part of a
    /// second, and a check that times out for that fails a test about
    /// something else.
    static func check(
        _ kind: HealthCheck.Kind, intervalMs: UInt64, timeoutMs: UInt64 = 5000, rise: Int = 2, fall: Int = 2
    ) -> HealthCheck {
        var check = HealthCheck(kind)
        check.timing.intervalNs = intervalMs * 1_000_000
        check.timing.timeoutNs = timeoutMs * 1_000_000
        check.timing.rise = rise
        check.timing.fall = fall
        return check
    }

    static var quiet: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }

    static func checker() throws -> HealthChecker {
        try HealthChecker(group: MultiThreadedEventLoopGroup.singleton, logger: quiet)
    }

    /// Checks `path` on a loopback real every 150 ms (http, keep-alive on)
    /// until `checks` are done; the target and its status then.
    static func checkHTTP(
        _ checker: HealthChecker, port: UInt16, path: String, checks: UInt64
    ) async throws -> (ProbeTarget, ProbeStatus) {
        let target = ProbeTarget(
            address: localhost, port: port, check: check(.http(HTTPOptions(path: path)), intervalMs: 150))
        checker.update([target: true])
        #expect(try await wait { (checker.snapshot()[target]?.checks ?? 0) >= checks })
        return (target, try #require(checker.snapshot()[target]))
    }

    /// Polls `condition` every 10 ms for up to `seconds`. The limit is far
    /// above what a passing run takes: it only ends a test that would never
    /// pass, so a slow machine waits longer instead of failing.
    static func wait(seconds: Double = 30, until condition: () -> Bool) async throws -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if condition() { return true }
            try await Task.sleep(for: .milliseconds(10))
        }
        return condition()
    }
}

@Suite("Health checks on the epoll loop")
struct CheckLoopTests {
    @Test("http checks keep their connection where the real allows it; keep-alive: false opens one per check")
    func keepAlive() async throws {
        for keep in [true, false] {
            let server = try KeepAliveServer()
            let checker = try Loop.checker()
            defer { checker.stop() }
            let target = ProbeTarget(
                address: Loop.localhost, port: server.port,
                check: Loop.check(.http(HTTPOptions(path: "/health", keepAlive: keep)), intervalMs: 150))
            checker.update([target: true])
            #expect(try await Loop.wait { (checker.snapshot()[target]?.checks ?? 0) >= 6 })
            checker.stop()
            let requests = server.requests.withLockedValue { $0 }
            let connections = server.connections.withLockedValue { $0 }
            #expect(requests.count >= 6)
            if keep {
                #expect(connections == 1, "one connection carried all \(requests.count) checks")
                #expect(requests.allSatisfy { $0.connectionHeader == "keep-alive" })
            } else {
                // A check stopped between its connect and its request leaves one more connection.
                #expect(
                    (requests.count...requests.count + 1).contains(connections),
                    "a connection per check: \(connections)")
                #expect(requests.allSatisfy { $0.connectionHeader == "close" })
            }
        }
    }

    @Test(
        "on a kept connection an answer that comes late still counts; none at all fails at the timeout, and the next check connects again"
    )
    func keptConnectionLateAndSilent() async throws {
        // 60 ms: well after the loop's next turn, when the answers to a
        // turn's requests are read, so the socket is watched for it.
        let late = try KeepAliveServer(delayMs: 60)
        let checker = try Loop.checker()
        defer { checker.stop() }
        let (slow, status) = try await Loop.checkHTTP(checker, port: late.port, path: "/late", checks: 5)
        #expect(status.failures == 0, "last: \(String(describing: status.last))")
        #expect(late.connections.withLockedValue { $0 } == 1, "every late answer came on the one kept connection")

        // Answers twice, then reads requests and says nothing. The timeout
        // is long enough that the two answered checks pass on a busy machine.
        let silent = try KeepAliveServer(answers: 2)
        let check = Loop.check(.http(HTTPOptions(path: "/silent")), intervalMs: 150, timeoutMs: 1000)
        let mute = ProbeTarget(address: Loop.localhost, port: silent.port, check: check)
        checker.update([slow: true, mute: true])
        #expect(try await Loop.wait { (checker.snapshot()[mute]?.failures ?? 0) >= 2 })
        let muted = try #require(checker.snapshot()[mute])
        #expect(muted.last == .failure("no answer within 1s"), "last: \(String(describing: muted.last))")
        #expect(muted.checks - muted.failures == 2, "the two answered checks passed")
        // A check that timed out closes its connection: the next one opens another.
        #expect(silent.connections.withLockedValue { $0 } >= 2)
    }

    @Test("a kept connection the real ends while idle with a 408 and a close is not taken for the next check's answer")
    func keptConnectionEndedWhileIdle() async throws {
        let server = try KeepAliveServer(goodbyeMs: 30)
        let checker = try Loop.checker()
        defer { checker.stop() }
        let (_, status) = try await Loop.checkHTTP(checker, port: server.port, path: "/bye", checks: 4)
        #expect(status.failures == 0, "last: \(String(describing: status.last))")
    }

    @Test("a real that closes after each response is checked over a new connection each time, and stays up")
    func realWithoutKeepAlive() async throws {
        let server = try CannedServer(reply: Fixtures.http("200 OK", body: "ok"))
        let checker = try Loop.checker()
        defer { checker.stop() }
        let target = ProbeTarget(
            address: Loop.localhost, port: server.port, check: Loop.check(.http(HTTPOptions()), intervalMs: 200))
        checker.update([target: true])
        #expect(try await Loop.wait { (checker.snapshot()[target]?.checks ?? 0) >= 5 })
        let status = try #require(checker.snapshot()[target])
        #expect(status.failures == 0, "last: \(String(describing: status.last))")
    }

    @Test("identical checks of two services run once and feed both, each with its own rise and fall")
    func sharedProbe() async throws {
        let server = try CannedServer(reply: Fixtures.http("200 OK", body: "ok"))
        let checker = try Loop.checker()
        defer { checker.stop() }
        let kind = HealthCheck.Kind.http(HTTPOptions(path: "/shared"))
        // The same real checked the same way by two services; the second
        // names the port in its check and counts with other rise and fall.
        let a = ProbeTarget(address: Loop.localhost, port: server.port, check: Loop.check(kind, intervalMs: 200))
        var other = Loop.check(kind, intervalMs: 200, rise: 3, fall: 1)
        other.port = server.port
        let b = ProbeTarget(real: Loop.localhost, port: 9, check: other)
        #expect(a != b)
        checker.update([a: true, b: true])
        #expect(try await Loop.wait { (checker.snapshot()[a]?.checks ?? 0) >= 5 })
        let snapshot = checker.snapshot()
        let served = server.received.withLockedValue { $0.components(separatedBy: "GET /shared ").count - 1 }
        #expect(checker.stats().probes == 1)
        #expect(snapshot[a]?.checks == snapshot[b]?.checks, "one result feeds both")
        let checks = Int(snapshot[a]?.checks ?? 0)
        #expect(served >= checks && served <= checks + 1, "\(served) requests for \(checks) checks of each target")

        // The real goes away: the fall-1 target is down after one failure,
        // the fall-2 target after two, each reported once.
        try await server.channel.close().get()
        let seen = await RiseFallTests.first(2, of: checker)
        #expect(seen.map(\.target) == [b, a])
        #expect(seen.map(\.up) == [false, false])
    }

    @Test("a dropped service's view goes; the probe runs on while another service uses it")
    func sharedProbeOutlivesOneUser() async throws {
        let server = try KeepAliveServer()
        let checker = try Loop.checker()
        defer { checker.stop() }
        let kind = HealthCheck.Kind.http(HTTPOptions())
        let a = ProbeTarget(address: Loop.localhost, port: server.port, check: Loop.check(kind, intervalMs: 30))
        let b = ProbeTarget(
            address: Loop.localhost, port: server.port, check: Loop.check(kind, intervalMs: 30, rise: 5, fall: 5))
        checker.update([a: true, b: true])
        #expect(try await Loop.wait { (checker.snapshot()[b]?.checks ?? 0) >= 2 })
        checker.update([b: true])
        let before = checker.snapshot()[b]?.checks ?? 0
        #expect(try await Loop.wait { (checker.snapshot()[b]?.checks ?? 0) >= before + 3 })
        #expect(checker.snapshot()[a] == nil)
        #expect(checker.stats().probes == 1)
        checker.update([:])
        #expect(try await Loop.wait { checker.stats().probes == 0 })
    }

    @Test("phases spread any number of probes evenly: no tenth of the interval holds more than 11 % of them")
    func phases() {
        for count in [10, 100, 1000, 10000] {
            var phases = Phases()
            let interval: UInt64 = 1_000_000_000
            let now: UInt64 = 123_456_789_000
            let offsets = (0..<count).map { _ in
                Phases.firstDue(now: now, intervalNs: interval, phase: phases.next()) % interval
            }.sorted()
            // Every slice of a tenth, starting anywhere (here: at each probe).
            var worst = 0
            for (i, start) in offsets.enumerated() {
                var n = 0
                var j = i
                while n < count && (offsets[j % count] + interval - start) % interval < interval / 10 {
                    n += 1
                    j += 1
                }
                worst = max(worst, n)
            }
            #expect(Double(worst) <= Double(count) * 0.11 + 1, "\(worst) of \(count) in one tenth")
        }
    }

    @Test("a server sees the checks of many reals spread over the interval, not at each tick")
    func spreadAtTheServer() async throws {
        let server = try KeepAliveServer()
        let checker = try Loop.checker()
        defer { checker.stop() }
        let targets = (0..<100).map {
            ProbeTarget(
                address: Loop.localhost, port: server.port,
                check: Loop.check(.http(HTTPOptions(path: "/\($0)")), intervalMs: 500))
        }
        checker.update(Dictionary(uniqueKeysWithValues: targets.map { ($0, true) }))
        // Past the first round, then three whole rounds, folded onto one:
        // checks started all at one tick would fill one tenth of it, while a
        // busy machine that holds the loop or the server up for a while in
        // one round moves only that round's checks.
        #expect(try await Loop.wait { server.requestCount >= 100 })
        let start = KernelClock.monotonicNs()
        let interval: UInt64 = 500_000_000
        try await Task.sleep(for: .milliseconds(1500))
        let rounds = server.requests.withLockedValue { $0 }.filter { $0.at >= start && $0.at < start + 3 * interval }
        #expect(rounds.count >= 200, "most of the 300 checks of three rounds: \(rounds.count)")
        var slices = [Int](repeating: 0, count: 10)
        for r in rounds { slices[Int((r.at - start) % interval / (interval / 10))] += 1 }
        #expect(slices.max()! <= rounds.count / 4, "checks per tenth of the interval, three rounds: \(slices)")
    }

    @Test("the loop reports what it schedules and that it keeps up")
    func keepsUp() async throws {
        let server = try KeepAliveServer()
        let checker = try Loop.checker()
        defer { checker.stop() }
        let targets = (0..<20).map {
            ProbeTarget(
                address: Loop.localhost, port: server.port,
                check: Loop.check(.http(HTTPOptions(path: "/\($0)")), intervalMs: 400))
        }
        checker.update(Dictionary(uniqueKeysWithValues: targets.map { ($0, true) }))
        #expect(try await Loop.wait { checker.stats().checksTotal >= 60 })
        let calm = checker.stats()
        #expect(calm.probes == 20)
        #expect(abs(calm.scheduledPerSecond - 50) < 0.001)
        #expect(calm.missedTotal == 0)
    }

    /// Samples `checker.stats()` every 5 ms on a thread of its own (not the
    /// test's task, which a busy machine may not run for a while).
    final class Sampler: @unchecked Sendable {
        private let samples = NIOLockedValueBox<[CheckerStats]>([])
        private let stopped = NIOLockedValueBox(false)

        init(_ checker: HealthChecker) {
            let (samples, stopped) = (samples, stopped)
            Thread {
                while !stopped.withLockedValue({ $0 }) {
                    let s = checker.stats()
                    samples.withLockedValue { $0.append(s) }
                    usleep(5000)
                }
            }.start()
        }

        var all: [CheckerStats] { samples.withLockedValue { $0 } }
        func stop() { stopped.withLockedValue { $0 = true } }
    }

    @Test(
        "a loop held up is reported behind while it is held, then its late round: how late and how many checks it missed"
    )
    func heldUp() async throws {
        let server = try KeepAliveServer()
        let checker = try Loop.checker()
        defer { checker.stop() }
        let targets = (0..<20).map {
            ProbeTarget(
                address: Loop.localhost, port: server.port,
                check: Loop.check(.http(HTTPOptions(path: "/\($0)")), intervalMs: 1000))
        }
        checker.update(Dictionary(uniqueKeysWithValues: targets.map { ($0, true) }))
        #expect(try await Loop.wait(seconds: 10) { checker.stats().checksTotal >= 20 })
        #expect(checker.stats().missedTotal == 0)

        // The loop is held until the test has seen it reported (at least
        // 2.5 s): however late this task runs, the hold lasts until then.
        let gate = DispatchSemaphore(value: 0)
        checker.loops[0].execute { gate.wait() }
        let held = Date()
        var whileHeld = CheckerStats()
        let seen = try await Loop.wait(seconds: 20) {
            whileHeld = checker.stats()
            return Date().timeIntervalSince(held) >= 2.5 && whileHeld.behind && whileHeld.latenessNs >= 500_000_000
        }
        let sampler = Sampler(checker)
        let heldFor = Date().timeIntervalSince(held)
        gate.signal()
        #expect(seen, "while held: \(whileHeld)")
        #expect(whileHeld.donePerSecond == 0)
        #expect(whileHeld.missed >= 10, "the checks due since the last round count as missed: \(whileHeld.missed)")

        // Once it runs again, every probe has skipped at least one check,
        // and the round after the hold is reported with its lateness.
        #expect(try await Loop.wait(seconds: 10) { checker.stats().missedTotal >= 20 })
        #expect(
            try await Loop.wait(seconds: 10) {
                sampler.all.contains { $0.donePerSecond > 0 && $0.latenessNs >= 900_000_000 && $0.missed >= 20 }
            }, "held \(heldFor) s; samples after: \(sampler.all.map { ($0.latenessNs / 1_000_000, $0.missed) })")
        // It catches up: a later round is on time again.
        #expect(try await Loop.wait(seconds: 10) { !checker.stats().behind && checker.stats().donePerSecond > 0 })
        sampler.stop()
    }
}

@Suite("keep-alive in the config")
struct KeepAliveOptionTests {
    static func read(_ values: [String: String]) -> (HealthCheck, [CheckOptions.Problem]) {
        var options = CheckOptions(values.mapValues { CheckOptions.Value(.scalar($0), line: 7) }, line: 6)
        let check = HealthCheck(reading: &options, timing: CheckTiming())
        return (check, options.problems)
    }

    @Test("keep-alive is on by default for http, off with keep-alive: false, and shown in the summary")
    func values() {
        let (on, none) = Self.read(["type": "http"])
        #expect(none.isEmpty)
        #expect(on.kind.http?.keepAlive == true)
        let (off, _) = Self.read(["type": "http", "keep-alive": "false"])
        #expect(off.kind.http?.keepAlive == false)
        #expect(off.summary.contains(" keep-alive off "))
        #expect(!on.summary.contains("keep-alive"))
    }

    @Test("keep-alive must be true or false, and applies to http checks only")
    func refused() {
        #expect(Self.read(["type": "http", "keep-alive": "yes"]).1.map(\.message) == ["must be true or false"])
        for type in ["https", "tcp", "tls"] {
            let problems = Self.read(["type": type, "keep-alive": "false"]).1
            #expect(problems.map(\.key) == ["keep-alive"])
            #expect(problems.first?.message == "applies to http checks only (type is \(type))")
        }
    }
}

@Suite("HTTP responses read a piece at a time")
struct HTTPResponseReaderTests {
    /// Feeds `text` in pieces of `piece` bytes; the progress after the last.
    static func read(
        _ text: String, piece: Int, head: Bool = false, keepBody: Int = 1024
    ) -> (
        HTTPResponseReader.Progress, HTTPResponseReader
    ) {
        var reader = HTTPResponseReader(headRequest: head, keepBody: keepBody)
        let bytes = Array(text.utf8)
        var progress = HTTPResponseReader.Progress.more
        var at = 0
        while at < bytes.count, progress == .more {
            let end = min(bytes.count, at + piece)
            progress = bytes[at..<end].withUnsafeBytes { reader.feed($0) }
            at = end
        }
        return (progress, reader)
    }

    @Test("framing decides whether the connection may be kept, whatever the pieces")
    func framing() {
        let cases: [(String, HTTPResponseReader.Progress, String)] = [
            ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", .done(reusable: true), "hello"),
            ("HTTP/1.1 200 OK\r\ncontent-length:5\r\nConnection: close\r\n\r\nhello", .done(reusable: false), "hello"),
            ("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", .done(reusable: false), "ok"),
            ("HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: Keep-Alive\r\n\r\nok", .done(reusable: true), "ok"),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\nT: 1\r\n\r\n",
                .done(reusable: true), "abcdefg"
            ),
            ("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", .done(reusable: true), ""),
            ("SSH-2.0-OpenSSH\r\n\r\n", .failed("no HTTP response"), ""),
            ("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", .failed("bad Content-Length in the HTTP response"), "")
        ]
        for (text, expected, body) in cases {
            for piece in [1, 3, 1000] {
                let (progress, reader) = Self.read(text, piece: piece)
                #expect(progress == expected, "\(text.debugDescription) in pieces of \(piece)")
                if case .done = expected { #expect(reader.body == Array(body.utf8)) }
            }
        }
    }

    @Test("a response without length ends at the close; HEAD has no body; bytes after a response spoil the connection")
    func untilClose() {
        // (Bytes that come after the check ended close the kept connection in the loop.)
        #expect(
            Self.read("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", piece: 100).0 == .done(reusable: false))
        var (progress, reader) = Self.read("HTTP/1.1 200 OK\r\n\r\nall of it", piece: 4)
        #expect(progress == .more)
        #expect(reader.closed() == .done(reusable: false))
        #expect(reader.body == Array("all of it".utf8))
        (progress, reader) = Self.read("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", piece: 100, head: true)
        #expect(progress == .done(reusable: true))
        (progress, reader) = Self.read("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", piece: 100)
        #expect(reader.closed() == .failed("response cut short"))
    }
}

@Suite("Check timers")
struct TimerWheelTests {
    @Test("every timer comes out once, at or after its time and not a turn later, over the horizon and beyond it")
    func wheel() {
        var wheel = TimerWheel()
        var generator = SystemRandomNumberGenerator()
        let start: UInt64 = 5_000_000_000_000
        // Times over 20 s: most within the wheel's few seconds, the rest in
        // its heap until they come near; some pushed for times already past.
        var pending: [UInt64: UInt64] = [:]
        for i in 0..<20_000 {
            let at = start - 50_000_000 + UInt64.random(in: 0..<20_000_000_000, using: &generator)
            wheel.push(LoopTimer(at: at, slot: Int32(i), token: 0))
            pending[UInt64(i)] = at
        }
        var now = start
        var due: [LoopTimer] = []
        var turns = 0
        while !pending.isEmpty && turns < 10_000 {
            turns += 1
            wheel.popDue(now, into: &due)
            for timer in due {
                #expect(timer.at <= now, "a timer came out early")
                #expect(pending.removeValue(forKey: UInt64(timer.slot)) != nil, "a timer came out twice")
            }
            due.removeAll()
            // None left behind that was due.
            #expect(!pending.values.contains { $0 <= now }, "a due timer stayed in at \(now)")
            if let earliest = wheel.earliest, let first = pending.values.min() {
                #expect(earliest <= first, "the wheel would sleep past its first timer")
            }
            // A timer pushed during the run, due at once or later.
            if turns % 7 == 0 {
                let at = now - 1 + UInt64.random(in: 0..<3_000_000, using: &generator)
                let id = 100_000 + turns
                wheel.push(LoopTimer(at: at, slot: Int32(id), token: 0))
                pending[UInt64(id)] = at
            }
            now += UInt64.random(in: 1_000_000..<9_000_000, using: &generator)
        }
        #expect(pending.isEmpty, "\(pending.count) timers never came out")
        #expect(wheel.earliest == nil)
    }
}

@Suite("Probe ids")
struct GenerationTableTests {
    @Test("an id removed names nothing, even once its index holds another probe; the others keep theirs")
    func reuse() {
        var table = GenerationTable<String>()
        let a = table.insert("a"), b = table.insert("b")
        #expect(table[a] == "a" && table[b] == "b")
        table[a] = nil
        #expect(table[a] == nil)
        #expect(table.nextIndex == Int(a & 0xffff_ffff), "the freed index is used again")
        let c = table.insert("c")
        #expect(c != a)
        // A late result for the removed probe is dropped, not counted for c.
        var touched = false
        table.modify(a) { _ in touched = true }
        #expect(!touched)
        #expect(table[a] == nil)
        #expect(table[c] == "c" && table[b] == "b")
        table.modify(c) { $0 += "!" }
        #expect(table[c] == "c!")
        #expect(Set(table.values) == ["b", "c!"])
        table[a] = "ghost"
        #expect(Set(table.values) == ["b", "c!"], "setting a removed id adds nothing")
    }
}
