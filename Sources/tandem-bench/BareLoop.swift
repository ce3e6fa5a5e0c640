import Dataplane
import Foundation
import Glibc
import Model
import Synchronization
import SystemCalls
import TestSupport

/// The kernel's share of an http check on a kept connection, measured
/// apart from any checker: one thread holding a connection to each target
/// that, every turn (4 ms, as Tandem's loop), sends the request of each
/// target due (the same bytes Tandem's check sends, spread evenly over the
/// interval) and reads the answers to the last turn's requests with one
/// `recv` each. Nothing else: no timeouts, no results, no epoll, no parsing
/// beyond the status line. What it costs is what one send and one recv a
/// check cost the kernel here, with this lab's packets (request, answer,
/// ACK); a checker can come close to it, not under it.
final class BareLoop: @unchecked Sendable {
    let targets: [(address: IPAddress, port: UInt16)]
    let intervalNs: UInt64
    private let stopped = Atomic<Bool>(false)
    private let connected = Atomic<Int>(0)
    /// Answers that began "HTTP/1.1 200", and everything else: a connection
    /// closed or failed, an answer of another status.
    let answered = Atomic<UInt64>(0)
    let failed = Atomic<UInt64>(0)
    /// Set once every connection is made (true) or one could not be (false).
    private let ready = Atomic<Int>(0)
    private let done = DispatchSemaphore(value: 0)

    static let turnMs: Int32 = 4

    /// Starts the thread, which connects to every target from the calling
    /// thread's network namespace and then checks.
    init(targets: [(address: IPAddress, port: UInt16)], intervalNs: UInt64) {
        self.targets = targets
        self.intervalNs = intervalNs
        let thread = Thread { [self] in run() }
        thread.name = "bare-loop"
        thread.start()
    }

    /// Waits until every connection is made; throws if one was not.
    func waitConnected() async throws {
        while ready.load(ordering: .acquiring) == 0 { try await Task.sleep(for: .milliseconds(50)) }
        guard ready.load(ordering: .acquiring) == 1 else {
            throw DataplaneError(
                description: "bare loop: \(connected.load(ordering: .relaxed)) of \(targets.count) connections made")
        }
    }

    /// Ends the thread and closes its connections.
    func stop() {
        stopped.store(true, ordering: .releasing)
        done.wait()
    }

    private func run() {
        defer { done.signal() }
        var limit = rlimit(rlim_cur: 1 << 20, rlim_max: 1 << 20)
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        var fds: [Int32] = []
        defer { for fd in fds { close(fd) } }
        for target in targets {
            guard let fd = Self.connect(target.address, target.port) else {
                ready.store(-1, ordering: .releasing)
                return
            }
            fds.append(fd)
            connected.add(1, ordering: .relaxed)
        }
        ready.store(1, ordering: .releasing)
        // Tandem's request to each target, byte for byte.
        let requests = targets.map { target in
            Array(
                ("GET /health HTTP/1.1\r\nHost: \(target.address)\r\n"
                    + "User-Agent: tandem-health-check\r\nConnection: keep-alive\r\n\r\n").utf8)
        }
        let status = Array("HTTP/1.1 200".utf8)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { buffer.deallocate() }
        var awaiting: [Int32] = [], still: [Int32] = []
        var alive = [Bool](repeating: true, count: fds.count)
        let start = TestClock.nowNs()
        var next = 0, round: UInt64 = 0
        let n = UInt64(fds.count)
        while !stopped.load(ordering: .acquiring) {
            // Last turn's answers: one recv each.
            still.removeAll(keepingCapacity: true)
            for i in awaiting {
                let got: Int?  // nil: nothing yet
                do throws(SystemCallError) {
                    got = try nonBlockingSystemCall("read", "an answer", reports: .minusOneAndErrno) {
                        recv(fds[Int(i)], buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT))
                    }
                } catch {
                    got = -1
                }
                if let got, got >= status.count, memcmp(buffer.baseAddress!, status, status.count) == 0 {
                    answered.add(1, ordering: .relaxed)
                } else if got == nil {
                    still.append(i)
                } else {
                    failed.add(1, ordering: .relaxed)
                    alive[Int(i)] = false
                }
            }
            swap(&awaiting, &still)
            // This turn's requests.
            let now = TestClock.nowNs()
            while start + round * intervalNs + UInt64(next) * intervalNs / n <= now {
                if alive[next] {
                    let request = requests[next]
                    if send(fds[next], request, request.count, Int32(MSG_NOSIGNAL)) == request.count {
                        awaiting.append(Int32(next))
                    } else {
                        failed.add(1, ordering: .relaxed)
                        alive[next] = false
                    }
                }
                next += 1
                if next == fds.count {
                    next = 0
                    round += 1
                }
            }
            _ = poll(nil, 0, Self.turnMs)
        }
    }

    /// A blocking connect; nil if it fails.
    private static func connect(_ address: IPAddress, _ port: UInt16) -> Int32? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        let bytes = address.bytes
        withUnsafeMutableBytes(of: &sin.sin_addr) { $0.copyBytes(from: bytes.prefix(4)) }
        let ok = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        if !ok {
            close(fd)
            return nil
        }
        return fd
    }
}
