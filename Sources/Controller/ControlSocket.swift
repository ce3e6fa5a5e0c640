import Configuration
import Control
import ControlAPI
import Model
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The control socket of `tandem serve`: a unix socket only root may open
/// (mode 0600, directory 0700). Each connection carries one JSON request
/// line and gets one JSON response line, except a record listing: one line
/// per batch of records (`{"records": [...]}`), then a closing line with
/// the count; anything else gets an error line.
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
        try SocketPath.prepareDirectory((path as NSString).deletingLastPathComponent)
        let server = try await ServerBootstrap(group: group)
            .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true) { channel in
                channel.eventLoop.makeCompletedFuture {
                    // Half-closure: the reply's end is a shutdown of our
                    // side after every byte was written (see serve).
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(isOutboundHalfClosureEnabled: true))
                }
            }
        do {
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        } catch {
            throw ControlError("cannot restrict the control socket \(path) to root: \(SocketPath.reason(error))")
        }
        logger.info("control socket ready", metadata: ["socket": "\(path)"])
        await controller.controlSocketBound()
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await serveUntilGracefulShutdown {
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
        try? await connection.executeThenClose { inbound, outbound -> Void in
            var incoming = inbound.makeAsyncIterator()
            var request = ByteBuffer()
            while var chunk = try await incoming.next() {
                request.writeBuffer(&chunk)
                if request.readableBytesView.contains(UInt8(ascii: "\n"))
                    || request.readableBytes > Self.maxRequestBytes
                {
                    break
                }
            }
            let send: @Sendable (ControlResponse) async throws -> Void = { response in
                var data = try JSONEncoder.control.encode(response)
                data.append(UInt8(ascii: "\n"))
                try await outbound.write(ByteBuffer(bytes: data))
            }
            switch decode(request) {
            case .failure(let failure):
                try await send(failure.response)
            case .success(let request):
                try await answer(request, send: send)
            }
            // Closing now would drop what the socket has not sent yet (a
            // long listing): shut our side down once it is all written, and
            // close when the client, having read the reply, closes its side.
            outbound.finish()
            while try await incoming.next() != nil {}
        }
    }

    /// Reads run on a copy of the controller's state, off its actor, so a
    /// slow one never delays a health transition or another client; a
    /// record listing streams in batches. Changes go through the actor.
    private func answer(
        _ request: ControlRequest,
        send: @escaping @Sendable (ControlResponse) async throws -> Void
    ) async throws {
        do {
            switch request {
            case .status:
                let view = await controller.readView()
                try await send(ControlResponse(status: try await offload { view.status() }))
            case .stats:
                let view = await controller.readView()
                try await send(ControlResponse(stats: try await offload { view.stats() }))
            case .listRecords(let filter):
                let view = await controller.readView()
                let count = try await RecordStream.run(view: view, filter: filter, send: send)
                try await send(ControlResponse(message: "\(count) record\(count == 1 ? "" : "s")"))
            case .flushRecords(let filter):
                let view = await controller.readView()
                try await send(ControlResponse(message: try await offload { try view.flush(filter) }))
            case .setReal, .reload, .node:
                try await send(await controller.handle(request))
            }
        } catch let error as ControlError {
            try await send(ControlResponse(error: error.description))
        } catch is CancellationError {
            return
        } catch {
            try await send(ControlResponse(error: "\(error)"))
        }
    }

    private func decode(_ buffer: ByteBuffer) -> Result<ControlRequest, ControlResponseFailure> {
        guard buffer.readableBytes <= Self.maxRequestBytes else {
            return .failure(.init(ControlResponse(error: "request longer than \(Self.maxRequestBytes) bytes")))
        }
        let line = buffer.readableBytesView.prefix { $0 != UInt8(ascii: "\n") }
        do {
            return .success(try JSONDecoder().decode(ControlRequest.self, from: Data(line)))
        } catch {
            logger.warning("bad control request", metadata: ["error": "\(error)"])
            return .failure(
                .init(
                    ControlResponse(
                        error: "bad request: not a Tandem control request (\(Self.brief(error)))")))
        }
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

/// A reply that ends a request before it reached the controller.
struct ControlResponseFailure: Error {
    let response: ControlResponse
    init(_ response: ControlResponse) { self.response = response }
}

/// Streams the records a filter selects to the client, batch by batch,
/// with the scan on the thread pool and each batch written (and flushed
/// to the socket) before the next is read: the daemon's memory stays at
/// one batch whatever the table size.
enum RecordStream {
    static func run(
        view: ReadView, filter: RecordFilter,
        send: @escaping @Sendable (ControlResponse) async throws -> Void
    ) async throws -> Int {
        let (batches, continuation) = AsyncThrowingStream.makeStream(of: [RecordReport].self)
        // At most two batches are read ahead of what the client took.
        let room = DispatchSemaphore(value: 2)
        let scan = Task {
            do {
                try await offload {
                    try view.records(filter) { batch in
                        room.wait()
                        if case .terminated = continuation.yield(batch) { throw CancellationError() }
                    }
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        defer {
            // The client left early: let a waiting scan see the stream is gone.
            continuation.finish()
            room.signal()
            room.signal()
            scan.cancel()
        }
        var count = 0
        for try await batch in batches {
            try await send(ControlResponse(records: batch))
            count += batch.count
            room.signal()
        }
        return count
    }
}
