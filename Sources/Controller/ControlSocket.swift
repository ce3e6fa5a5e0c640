import Configuration
import Control
import Model
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The control socket of `tandem serve`: a unix socket only root may open
/// (mode 0600, directory 0700). Each connection carries one JSON request
/// line and gets one JSON response line; anything else gets an error.
public struct ControlServer: Service {
    public static let maxRequestBytes = 64 * 1024

    let path: String
    let controller: Controller
    let group: any EventLoopGroup
    let logger: Logger

    public init(path: String, controller: Controller, group: any EventLoopGroup, logger: Logger) {
        self.path = path
        self.controller = controller
        self.group = group
        self.logger = logger
    }

    public func run() async throws {
        let directory = (path as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        let server = try await ServerBootstrap(group: group)
            .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        logger.info("control socket ready", metadata: ["socket": "\(path)"])
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await cancelWhenGracefulShutdown {
            try await server.executeThenClose { connections in
                try await withThrowingDiscardingTaskGroup { tasks in
                    for try await connection in connections {
                        tasks.addTask { await serve(connection) }
                    }
                }
            }
        }
    }

    private func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async {
        try? await connection.executeThenClose { inbound, outbound in
            var request = ByteBuffer()
            for try await chunk in inbound {
                var chunk = chunk
                request.writeBuffer(&chunk)
                if request.readableBytesView.contains(UInt8(ascii: "\n")) || request.readableBytes > Self.maxRequestBytes {
                    break
                }
            }
            let response = await respond(to: request)
            var data = try JSONEncoder.control.encode(response)
            data.append(UInt8(ascii: "\n"))
            try await outbound.write(ByteBuffer(bytes: data))
        }
    }

    private func respond(to buffer: ByteBuffer) async -> ControlResponse {
        guard buffer.readableBytes <= Self.maxRequestBytes else {
            return ControlResponse(error: "request longer than \(Self.maxRequestBytes) bytes")
        }
        let line = buffer.readableBytesView.prefix { $0 != UInt8(ascii: "\n") }
        let request: ControlRequest
        do {
            request = try JSONDecoder().decode(ControlRequest.self, from: Data(line))
        } catch {
            logger.warning("bad control request", metadata: ["error": "\(error)"])
            return ControlResponse(error: "bad request: not a Tandem control request (\(Self.brief(error)))")
        }
        return await controller.handle(request)
    }

    static func brief(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let c): c.debugDescription
        case DecodingError.keyNotFound(let key, _): "missing \(key.stringValue)"
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c):
            "\(c.codingPath.map(\.stringValue).joined(separator: ".")): \(c.debugDescription)"
        default: "\(error)"
        }
    }
}

/// The CLI's side of the control socket.
public enum ControlClient {
    public static func send(_ request: ControlRequest, socket path: String,
                            group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> ControlResponse {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ControlError("tandem serve is not running: no control socket at \(path) (start it with 'tandem serve --config FILE')")
        }
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: group).connect(unixDomainSocketPath: path) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        } catch let error as IOError where error.errnoCode == EACCES {
            throw ControlError("permission denied on \(path): the control socket is root's (run as root)")
        } catch {
            throw ControlError("tandem serve is not running: cannot connect to \(path) (\(error))")
        }
        var data = try JSONEncoder.control.encode(request)
        data.append(UInt8(ascii: "\n"))
        let payload = data
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(bytes: payload))
            var response = ByteBuffer()
            for try await chunk in inbound {
                var chunk = chunk
                response.writeBuffer(&chunk)
            }
            let line = response.readableBytesView.prefix { $0 != UInt8(ascii: "\n") }
            guard !line.isEmpty else { throw ControlError("tandem serve closed the connection without answering") }
            return try JSONDecoder().decode(ControlResponse.self, from: Data(line))
        }
    }

    /// True when a `tandem serve` answers on `path`.
    public static func isServing(socket path: String) async -> Bool {
        guard FileManager.default.fileExists(atPath: path) else { return false }
        return (try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(unixDomainSocketPath: path).get().close().get()) != nil
    }
}

extension JSONEncoder {
    static var control: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }
}
