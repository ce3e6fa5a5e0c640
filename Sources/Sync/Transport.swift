import Logging
import Model
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// What the node does with records: install those it receives, list its
/// table for a peer's pull. The controller implements it.
public protocol SyncStore: Sendable {
    /// Installs what the rules allow; returns how many were installed and
    /// why the others were not.
    func apply(_ records: [SyncRecord], from node: String) async -> (installed: Int, rejected: [Rejection: Int])
    /// The node's live records, a batch at a time (bounded memory).
    func forEachRecordBatch(_ body: ([SyncRecord]) throws -> Void) async throws
}

/// Record sync on the wire. Live records go as UDP datagrams: a record
/// lost now and then costs one rescheduled client at worst, while a down
/// peer costs no connection state, retries or queue, only a send. A
/// starting node pulls whole tables over TCP (same address and port): a
/// million records are ~64 MB, which needs flow control and delivery in
/// order, and the end of the table must be known before it announces.
public final class SyncTransport: @unchecked Sendable {
    public let engine: SyncEngine
    let listen: Endpoint
    let store: any SyncStore
    let group: any EventLoopGroup
    let logger: Logger
    private let channels = NIOLockedValueBox<(udp: (any Channel)?, tcp: (any Channel)?)>((nil, nil))
    /// Where live records and heartbeats leave from (the caller's thread).
    private let sender = NIOLockedValueBox<DatagramSender?>(nil)
    private let inbox: AsyncStream<Received>
    private let inboxIn: AsyncStream<Received>.Continuation
    private let activePulls = NIOLockedValueBox(0)
    static let maxActivePulls = 4
    static let maxFrame = 1 << 20
    /// The UDP socket's receive buffer: a burst of a peer's record writes
    /// (its new clients after a failover) waits here while this node
    /// installs them. The kernel's default (about 200 KB, some 90
    /// datagrams) lost records in the sync benchmark's burst.
    static let receiveBuffer = 8 << 20

    public init(
        engine: SyncEngine, listen: Endpoint, store: any SyncStore, group: any EventLoopGroup, logger: Logger
    ) {
        self.engine = engine
        self.listen = listen
        self.store = store
        self.group = group
        self.logger = logger
        (inbox, inboxIn) = AsyncStream.makeStream(of: Received.self, bufferingPolicy: .bufferingOldest(65_536))
    }

    /// Binds UDP and TCP on `listen`.
    public func start() async throws {
        let address = try SocketAddress(ipAddress: listen.address.description, port: Int(listen.port))
        let udp = try await DatagramBootstrap(group: group)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            // Up to 64 datagrams per recvmmsg, each with room for the
            // largest a peer sends.
            .channelOption(.datagramVectorReadMessageCount, value: 64)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 64 * 2048))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DatagramIn(self))
                }
            }
            .bind(to: address).get()
        // Root may go past net.core.rmem_max; anyone else gets what it allows.
        let force = ChannelOptions.Types.SocketOption(level: .socket, name: .init(rawValue: SO_RCVBUFFORCE))
        if (try? await udp.setOption(force, value: Self.receiveBuffer).get()) == nil {
            try? await udp.setOption(.socketOption(.so_rcvbuf), value: Self.receiveBuffer).get()
        }
        let tcp: any Channel
        do {
            tcp = try await ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers(
                            ByteToMessageHandler(FrameDecoder()), PullResponder(self))
                    }
                }
                .bind(to: address).get()
        } catch {
            try? await udp.close()
            throw error
        }
        let sender: DatagramSender
        do {
            sender = try DatagramSender(listen: listen)
        } catch {
            try? await udp.close()
            try? await tcp.close()
            throw error
        }
        self.sender.withLockedValue { $0 = sender }
        channels.withLockedValue { $0 = (udp, tcp) }
    }

    public func stop() async {
        let (udp, tcp) = channels.withLockedValue { c in
            defer { c = (nil, nil) }
            return c
        }
        try? await udp?.close()
        try? await tcp?.close()
        sender.withLockedValue { $0 = nil }
        inboxIn.finish()
    }

    /// Applies received records in arrival order until `stop`.
    public func runReceiver() async {
        for await r in inbox {
            let result = await store.apply(r.message.records, from: r.message.node)
            engine.countApplied(peer: r.peer, installed: result.installed, rejected: result.rejected)
        }
    }

    /// Sends a heartbeat to every peer every `SyncEngine.heartbeatNs`, so
    /// peers know this node is up (and their lag) when no record moves.
    public func runHeartbeat() async {
        while !Task.isCancelled {
            publish([])
            try? await Task.sleep(nanoseconds: SyncEngine.heartbeatNs)
        }
    }

    // MARK: Live records

    /// Sends `records` to every peer, batched into datagrams, from the
    /// calling thread; an empty list sends a heartbeat.
    public func publish(_ records: [SyncRecord]) {
        guard let sender = sender.withLockedValue({ $0 }) else { return }
        let datagrams = engine.seal(records)
        let per = SyncMessage.maxDatagramRecords
        for (i, peer) in engine.peers.enumerated() {
            var (sent, sentRecords, failed) = (0, 0, 0)
            for (k, d) in datagrams.enumerated() {
                if sender.send(d, to: peer) {
                    sent += 1
                    sentRecords += max(0, min(per, records.count - k * per))
                } else {
                    failed += 1
                }
            }
            if failed > 0 { engine.countSent(peer: i, messages: failed, records: 0, failed: true) }
            if sent > 0 { engine.countSent(peer: i, messages: sent, records: sentRecords, failed: false) }
        }
    }

    func received(_ bytes: [UInt8], from source: Endpoint?) {
        guard let r = engine.admit(bytes, from: source), r.message.kind == .records else { return }
        if r.message.records.isEmpty { return }
        if case .dropped = inboxIn.yield(r) {
            engine.countApplied(peer: r.peer, installed: 0, rejected: [.rateLimited: r.message.records.count])
        }
    }

    // MARK: Pulling a table

    /// A connect error in a few words: the errno's text where there is one
    /// ("Connection refused"), not NIO's nested description.
    static func reason(_ error: any Error) -> String {
        func errnoText(_ e: any Error) -> String? {
            if let io = e as? IOError { return String(cString: strerror(io.errnoCode)) }
            if let failure = e as? NIOConnectionError {
                return failure.connectionErrors.lazy.compactMap { errnoText($0.error) }.first
                    ?? failure.dnsAAAAError.flatMap(errnoText) ?? failure.dnsAError.flatMap(errnoText)
            }
            if e is ChannelError, case .connectTimeout = e as! ChannelError { return "timed out" }
            return nil
        }
        return errnoText(error) ?? "\(error)"
    }

    public struct PullResult: Sendable, Equatable {
        public var peer: String
        public var received = 0
        public var installed = 0
        /// nil: the whole table arrived.
        public var error: String?
    }

    /// Pulls every peer's table at once; each pull ends with the table, an
    /// error, or `timeout`.
    public func pullAll(timeout: Duration) async -> [PullResult] {
        await withTaskGroup(of: PullResult.self) { tasks in
            for peer in engine.peers { tasks.addTask { await self.pull(peer, timeout: timeout) } }
            var results: [PullResult] = []
            for await r in tasks { results.append(r) }
            return results.sorted { $0.peer < $1.peer }
        }
    }

    public func pull(_ peer: Endpoint, timeout: Duration) async -> PullResult {
        var result = PullResult(peer: peer.description)
        let nonce = UInt32.random(in: 1...UInt32.max)
        let (frames, framesIn) = AsyncThrowingStream.makeStream(of: [UInt8].self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(.milliseconds(Int64(timeout.inSeconds * 1000)))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers(
                            ByteToMessageHandler(FrameDecoder()), FrameCollector(framesIn))
                    }
                }
                .connect(host: peer.address.description, port: Int(peer.port)).get()
        } catch {
            result.error = "cannot connect: \(Self.reason(error))"
            return result
        }
        defer { channel.close(promise: nil) }
        let timer = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.inSeconds * 1e9))) {
            framesIn.finish(throwing: PullTimeout())
        }
        defer { timer.cancel() }
        let request = engine.seal([], kind: .pullRequest, ref: nonce)[0]
        channel.writeAndFlush(Self.frame(request, allocator: channel.allocator), promise: nil)
        var lastSeq: UInt64 = 0
        do {
            for try await bytes in frames {
                guard let r = engine.admit(bytes, from: peer, pull: nonce), r.message.seq > lastSeq else {
                    result.error = "a frame was refused (see the peer's rejected counters)"
                    return result
                }
                lastSeq = r.message.seq
                if r.message.kind == .pullEnd { return result }
                result.received += r.message.records.count
                let applied = await store.apply(r.message.records, from: r.message.node)
                result.installed += applied.installed
                engine.countApplied(peer: r.peer, installed: applied.installed, rejected: applied.rejected)
            }
            result.error = "the peer closed the connection before the end of its table"
        } catch is PullTimeout {
            result.error = "timed out"
        } catch {
            result.error = "\(error)"
        }
        return result
    }

    struct PullTimeout: Error {}

    /// Serves one pull: the table in frames, then the end.
    func serve(_ request: [UInt8], on channel: any Channel) {
        guard let r = engine.admit(request, from: Endpoint(channel.remoteAddress)), r.message.kind == .pullRequest
        else {
            channel.close(promise: nil)
            return
        }
        let admitted = activePulls.withLockedValue { n in
            guard n < Self.maxActivePulls else { return false }
            n += 1
            return true
        }
        guard admitted else {
            channel.close(promise: nil)
            return
        }
        let nonce = r.message.ref
        // Reads the maps and waits for the socket: off the event loops.
        Task.detached {
            defer { self.activePulls.withLockedValue { $0 -= 1 } }
            do {
                var pending: EventLoopFuture<Void>?
                try await self.store.forEachRecordBatch { batch in
                    for frame in self.engine.seal(
                        batch, kind: .pullRecords, ref: nonce, perMessage: SyncMessage.maxFrameRecords)
                    {
                        try pending?.wait()
                        pending = channel.writeAndFlush(Self.frame(frame, allocator: channel.allocator))
                    }
                }
                let end = self.engine.seal([], kind: .pullEnd, ref: nonce)[0]
                try await channel.writeAndFlush(Self.frame(end, allocator: channel.allocator)).get()
            } catch {
                self.logger.warning("sync: a pull was cut short", metadata: ["error": "\(error)"])
            }
            try? await channel.close()
        }
    }

    static func frame(_ bytes: [UInt8], allocator: ByteBufferAllocator) -> ByteBuffer {
        var b = allocator.buffer(capacity: bytes.count + 4)
        b.writeInteger(UInt32(bytes.count))
        b.writeBytes(bytes)
        return b
    }
}

extension Endpoint {
    init?(_ address: SocketAddress?) {
        guard let address, let ip = address.ipAddress, let a = IPAddress(ip), let port = address.port,
            let p = UInt16(exactly: port)
        else { return nil }
        self.init(address: a, port: p)
    }
}

extension Duration {
    var inSeconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) / 1e18
    }
}

final class DatagramIn: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let transport: SyncTransport
    init(_ transport: SyncTransport) { self.transport = transport }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        transport.received(Array(envelope.data.readableBytesView), from: Endpoint(envelope.remoteAddress))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP port unreachable from a down peer surfaces here: not fatal.
    }
}

/// u32 length, then that many bytes.
struct FrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = [UInt8]

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return .needMoreData }
        guard length <= SyncTransport.maxFrame else { throw FrameTooLong() }
        guard buffer.readableBytes >= 4 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 4)
        context.fireChannelRead(wrapInboundOut(buffer.readBytes(length: Int(length))!))
        return .continue
    }

    struct FrameTooLong: Error {}
}

final class PullResponder: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = [UInt8]
    let transport: SyncTransport
    var served = false
    init(_ transport: SyncTransport) { self.transport = transport }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !served else { return }
        served = true
        transport.serve(unwrapInboundIn(data), on: context.channel)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}

final class FrameCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = [UInt8]
    let frames: AsyncThrowingStream<[UInt8], any Error>.Continuation
    init(_ frames: AsyncThrowingStream<[UInt8], any Error>.Continuation) { self.frames = frames }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) { frames.yield(unwrapInboundIn(data)) }
    func channelInactive(context: ChannelHandlerContext) { frames.finish() }
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        frames.finish(throwing: error)
        context.close(promise: nil)
    }
}
