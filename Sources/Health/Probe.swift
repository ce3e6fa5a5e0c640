import Model
import Glibc
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS
import Logging

/// One thing to check: an address, a port and how. Services that check the
/// same target share one probe.
public struct ProbeTarget: Hashable, Sendable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16
    public var check: HealthCheck

    public init(address: IPAddress, port: UInt16, check: HealthCheck) {
        self.address = address
        self.port = port
        self.check = check
    }

    /// The check of `check` on `real`: at the check's port if it has one.
    public init(real address: IPAddress, port: UInt16, check: HealthCheck) {
        self.init(address: address, port: check.port ?? port, check: check)
    }

    public var description: String {
        let host = address.family == .inet ? "\(address):\(port)" : "[\(address)]:\(port)"
        return "\(check.kind.name) \(host)" + (check.kind.http?.path ?? "")
    }
}

/// What one probe found.
public enum ProbeResult: Sendable, Equatable {
    case success
    case failure(String)

    public var ok: Bool { self == .success }
}

/// Runs single probes, one function per kind of check: tcp and http on the
/// process's one-off `CheckLoop` (raw sockets), tls and https on SwiftNIO
/// with NIOSSL. Every probe ends within the check's timeout.
public struct Prober: Sendable {
    let group: any EventLoopGroup
    let insecure: NIOSSLContext
    let verifying: NIOSSLContext

    /// Largest body read when a body pattern is set.
    static let bodyLimit = 64 * 1024

    public init(group: any EventLoopGroup) throws {
        self.group = group
        var config = TLSConfiguration.makeClientConfiguration()
        config.certificateVerification = .none
        insecure = try NIOSSLContext(configuration: config)
        verifying = try NIOSSLContext(configuration: .makeClientConfiguration())
    }

    public func probe(_ target: ProbeTarget, on loop: (any EventLoop)? = nil) -> EventLoopFuture<ProbeResult> {
        let loop = loop ?? group.next()
        switch target.check.kind {
        case .tcp, .http: return oneOff(target, on: loop)
        case .https(let options, let secure): return http(target, options, tls: secure, on: loop)
        case .tls(let options): return tls(target, options, on: loop)
        case .none: return loop.makeSucceededFuture(.success)
        }
    }

    /// Probes outside a `HealthChecker` share one loop, started on first use.
    static let oneOffLoop = Result {
        try CheckLoop(name: "tandem-probe", logger: Logger(label: "tandem.health")) { _, done in
            done(.failure("tls and https checks do not run here"))
        }
    }
    static let oneOffIDs = NIOLockedValueBox<UInt64>(1 << 62)

    /// `tcp` (the connection is accepted) and `http`, once.
    func oneOff(_ target: ProbeTarget, on loop: any EventLoop) -> EventLoopFuture<ProbeResult> {
        let promise = loop.makePromise(of: ProbeResult.self)
        switch Self.oneOffLoop {
        case .success(let checks):
            let id = Self.oneOffIDs.withLockedValue { id in
                id += 1
                return id
            }
            checks.add([CheckLoop.Spec(id: id, target: target, firstDue: nil) { promise.succeed($0) }])
        case .failure(let error):
            promise.succeed(.failure("cannot run checks: \(error)"))
        }
        return promise.futureResult
    }

    /// `tls`: the handshake completes.
    func tls(_ target: ProbeTarget, _ options: TLSOptions, on loop: any EventLoop) -> EventLoopFuture<ProbeResult> {
        connect(target, on: loop) { pipeline, outcome in
            try pipeline.addHandler(client(options, serverName: nil))
            try pipeline.addHandler(HandshakeProbeHandler(outcome: outcome))
        }
    }

    /// `https`: one request over TLS, judged by its status code and, if
    /// asked, its body.
    func http(
        _ target: ProbeTarget, _ options: HTTPOptions, tls: TLSOptions?,
        on loop: any EventLoop
    ) -> EventLoopFuture<ProbeResult> {
        connect(target, on: loop) { pipeline, outcome in
            if let tls { try pipeline.addHandler(client(tls, serverName: options.host)) }
            try pipeline.addHTTPClientHandlers()
            try pipeline.addHandler(HTTPProbeHandler(target: target, options: options, outcome: outcome))
        }
    }

    /// A TLS client; the server name is sent only if it is a name, not an address.
    func client(_ options: TLSOptions, serverName: String?) throws -> NIOSSLClientHandler {
        let name = serverName.flatMap { IPAddress($0) == nil ? $0 : nil }
        return try NIOSSLClientHandler(context: options.verify ? verifying : insecure, serverHostname: name)
    }

    /// Connects to the target with `handlers` in the pipeline (they decide
    /// the result, unless `connected` does) and fails on an error, on close
    /// or at the check's timeout.
    private func connect(
        _ target: ProbeTarget, on loop: any EventLoop,
        handlers: @escaping @Sendable (ChannelPipeline.SynchronousOperations, Outcome) throws -> Void = { _, _ in },
        connected: @escaping @Sendable (Outcome) -> Void = { _ in }
    ) -> EventLoopFuture<ProbeResult> {
        let address: SocketAddress
        do {
            address = try SocketAddress(ipAddress: target.address.description, port: Int(target.port))
        } catch {
            return loop.makeSucceededFuture(.failure("bad address: \(error)"))
        }
        let timing = target.check.timing
        let outcome = Outcome(promise: loop.makePromise())
        let timeout = TimeAmount.nanoseconds(Int64(clamping: timing.timeoutNs))
        let deadline = loop.scheduleTask(in: timeout) {
            outcome.finish(.failure("no answer within \(DurationText.format(timing.timeoutNs))"))
        }
        outcome.promise.futureResult.whenComplete { _ in deadline.cancel() }
        ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try handlers(sync, outcome)
                    try sync.addHandler(ErrorProbeHandler(outcome: outcome))
                }
            }
            .connect(to: address)
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    connected(outcome)
                    outcome.promise.futureResult.whenComplete { _ in channel.close(promise: nil) }
                case .failure(let error):
                    outcome.finish(.failure(Self.describe(error)))
                }
            }
        return outcome.promise.futureResult
    }

    static func describe(_ error: any Error) -> String {
        if let io = error as? IOError { return "connect: \(String(cString: strerror(io.errnoCode)).lowercased())" }
        if let e = error as? NIOConnectionError, let first = e.connectionErrors.first {
            return describe(first.error)
        }
        if error is ChannelError, case ChannelError.connectTimeout = error { return "connect timed out" }
        return "\(error)"
    }
}

/// The one result of a probe; later attempts to finish are ignored.
final class Outcome: @unchecked Sendable {
    let promise: EventLoopPromise<ProbeResult>
    private var done = false

    init(promise: EventLoopPromise<ProbeResult>) { self.promise = promise }

    /// Must run on the promise's event loop.
    func finish(_ result: ProbeResult) {
        promise.futureResult.eventLoop.preconditionInEventLoop()
        guard !done else { return }
        done = true
        promise.succeed(result)
    }
}

final class ErrorProbeHandler: ChannelInboundHandler {
    typealias InboundIn = NIOAny
    let outcome: Outcome
    init(outcome: Outcome) { self.outcome = outcome }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        outcome.finish(.failure(Prober.describe(error)))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        outcome.finish(.failure("connection closed before the check completed"))
    }
}

final class HandshakeProbeHandler: ChannelInboundHandler {
    typealias InboundIn = NIOAny
    let outcome: Outcome
    init(outcome: Outcome) { self.outcome = outcome }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event { outcome.finish(.success) }
        context.fireUserInboundEventTriggered(event)
    }
}

final class HTTPProbeHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    let target: ProbeTarget
    let options: HTTPOptions
    let outcome: Outcome
    private var status: Int?
    private var body = ""

    init(target: ProbeTarget, options: HTTPOptions, outcome: Outcome) {
        self.target = target
        self.options = options
        self.outcome = outcome
    }

    func channelActive(context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        let host = target.address.family == .inet ? target.address.description : "[\(target.address)]"
        headers.add(name: "Host", value: options.host ?? host)
        headers.add(name: "User-Agent", value: "tandem-health-check")
        headers.add(name: "Connection", value: "close")
        let head = HTTPRequestHead(
            version: .http1_1, method: HTTPMethod(rawValue: options.method), uri: options.path,
            headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
        case .body(var buffer):
            if options.body != nil, body.utf8.count < Prober.bodyLimit {
                body += buffer.readString(length: min(buffer.readableBytes, Prober.bodyLimit - body.utf8.count)) ?? ""
            }
        case .end:
            outcome.finish(judge())
            context.close(promise: nil)
        }
    }

    private func judge() -> ProbeResult { options.judge(status: status, body: Array(body.utf8)) }
}

extension HTTPOptions {
    /// An http or https check's verdict on a response.
    func judge(status: Int?, body: [UInt8]) -> ProbeResult {
        guard let status else { return .failure("no HTTP response") }
        guard expect.contains(where: { $0.contains(status) }) else {
            return .failure(
                "HTTP \(status), expected \(expect.map { $0.lowerBound == $0.upperBound ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ","))"
            )
        }
        if let pattern = self.body, !String(decoding: body, as: UTF8.self).contains(pattern) {
            return .failure("HTTP \(status) but the body lacks \"\(pattern)\"")
        }
        return .success
    }
}
