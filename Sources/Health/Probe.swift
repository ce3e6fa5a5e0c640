import Model
import Glibc
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS

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

    public var description: String {
        let host = address.family == .inet ? "\(address):\(port)" : "[\(address)]:\(port)"
        return "\(check.type.rawValue) \(host)" + (check.type == .http || check.type == .https ? check.path : "")
    }
}

/// What one probe found.
public enum ProbeResult: Sendable, Equatable {
    case success
    case failure(String)

    public var ok: Bool { self == .success }
}

/// Runs single probes on SwiftNIO: `tcp` connects, `tls` completes a
/// handshake, `http`/`https` send one request and judge the status code
/// and, if asked, the body. Every probe ends within the check's timeout.
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
        let check = target.check
        if check.type == .none { return loop.makeSucceededFuture(.success) }
        let outcome = Outcome(promise: loop.makePromise())
        let timeout = TimeAmount.nanoseconds(Int64(clamping: check.timing.timeoutNs))
        let deadline = loop.scheduleTask(in: timeout) {
            outcome.finish(.failure("no answer within \(DurationText.format(check.timing.timeoutNs))"))
        }
        outcome.promise.futureResult.whenComplete { _ in deadline.cancel() }

        let address: SocketAddress
        do {
            address = try SocketAddress(ipAddress: target.address.description, port: Int(target.port))
        } catch {
            outcome.finish(.failure("bad address: \(error)"))
            return outcome.promise.futureResult
        }
        let tls = (check.type == .tls || check.type == .https) ? (check.verify ? verifying : insecure) : nil
        let serverName = check.host ?? (check.verify ? target.address.description : nil)
        let connect = ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls {
                        let name = serverName.flatMap { IPAddress($0) == nil ? $0 : nil }
                        try sync.addHandler(NIOSSLClientHandler(context: tls, serverHostname: name))
                    }
                    switch check.type {
                    case .http, .https:
                        try sync.addHTTPClientHandlers()
                        try sync.addHandler(HTTPProbeHandler(target: target, outcome: outcome))
                    case .tls:
                        try sync.addHandler(HandshakeProbeHandler(outcome: outcome))
                    case .tcp, .none:
                        break
                    }
                    try sync.addHandler(ErrorProbeHandler(outcome: outcome))
                }
            }
            .connect(to: address)
        connect.whenComplete { result in
            switch result {
            case .success(let channel):
                if check.type == .tcp { outcome.finish(.success) }
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
    let outcome: Outcome
    private var status: Int?
    private var body = ""

    init(target: ProbeTarget, outcome: Outcome) {
        self.target = target
        self.outcome = outcome
    }

    func channelActive(context: ChannelHandlerContext) {
        let check = target.check
        var headers = HTTPHeaders()
        let host = target.address.family == .inet ? target.address.description : "[\(target.address)]"
        headers.add(name: "Host", value: check.host ?? host)
        headers.add(name: "User-Agent", value: "tandem-health-check")
        headers.add(name: "Connection", value: "close")
        let head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: check.method), uri: check.path,
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
            if target.check.body != nil, body.utf8.count < Prober.bodyLimit {
                body += buffer.readString(length: min(buffer.readableBytes, Prober.bodyLimit - body.utf8.count)) ?? ""
            }
        case .end:
            outcome.finish(judge())
            context.close(promise: nil)
        }
    }

    private func judge() -> ProbeResult {
        guard let status else { return .failure("no HTTP response") }
        let check = target.check
        guard check.expect.contains(where: { $0.contains(status) }) else {
            return .failure("HTTP \(status), expected \(check.expect.map { $0.lowerBound == $0.upperBound ? "\($0.lowerBound)" : "\($0.lowerBound)-\($0.upperBound)" }.joined(separator: ","))")
        }
        if let pattern = check.body, !body.contains(pattern) {
            return .failure("HTTP \(status) but the body lacks \"\(pattern)\"")
        }
        return .success
    }
}
