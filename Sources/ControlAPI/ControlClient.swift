import Control
import Foundation
import NIOCore
import NIOPosix

/// The CLI's side of the control socket.
public enum ControlClient {
    /// Sends `request` and returns the reply. A record listing arrives as
    /// batches, each handed to `onRecords` as it comes, then a closing
    /// reply; a connection that ends before the closing reply is an error.
    public static func send(
        _ request: ControlRequest, socket path: String,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        onRecords: ([RecordReport]) throws -> Void = { _ in }
    ) async throws -> ControlResponse {
        if let problem = SocketPath.clientProblem(path) { throw ControlError(problem) }
        guard FileManager.default.fileExists(atPath: path) else {
            throw ControlError(
                "tandem serve is not running: no control socket at \(path) (start it with 'tandem serve --config FILE')"
            )
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
            var pending = ByteBuffer()
            var partials = 0
            for try await chunk in inbound {
                var chunk = chunk
                pending.writeBuffer(&chunk)
                while let newline = pending.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
                    let length = newline - pending.readerIndex
                    let line = pending.readSlice(length: length)!
                    pending.moveReaderIndex(forwardBy: 1)
                    let response = try JSONDecoder().decode(ControlResponse.self, from: Data(line.readableBytesView))
                    if response.error != nil || response.records == nil { return response }
                    // A batch of a streamed listing; the closing line has no records.
                    partials += 1
                    try onRecords(response.records!)
                }
                pending.discardReadBytes()
            }
            throw ControlError(
                partials == 0
                    ? "tandem serve closed the connection without answering"
                    : "tandem serve closed the connection before its reply was complete (\(partials) batch\(partials == 1 ? "" : "es") of records received); is it still running?"
            )
        }
    }

    /// True when a `tandem serve` answers on `path`.
    public static func isServing(socket path: String) async -> Bool {
        guard FileManager.default.fileExists(atPath: path) else { return false }
        return
            (try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(unixDomainSocketPath: path).get().close().get()) != nil
    }
}

extension JSONEncoder {
    /// The control protocol's encoding: keys sorted, one line.
    package static var control: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }
}
