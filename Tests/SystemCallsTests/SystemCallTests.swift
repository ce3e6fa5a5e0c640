import Glibc
import SystemCalls
import Testing

/// A C call played back from a script: each run returns the next result
/// and leaves the next errno, as libc does.
final class ScriptedCall {
    private var steps: [(result: Int32, errno: Int32)]
    private(set) var runs = 0

    init(_ steps: [(result: Int32, errno: Int32)]) { self.steps = steps }

    func run() -> Int32 {
        let step = steps.removeFirst()
        runs += 1
        errno = step.errno
        return step.result
    }
}

@Suite("systemCall: EINTR retried, errno captured at the call")
struct SystemCallTests {
    @Test("a call interrupted by a signal runs again until it is not")
    func retriesEINTR() throws {
        let call = ScriptedCall([(-1, EINTR), (-1, EINTR), (7, 0)])
        let result = try systemCall("read", "a pipe", reports: .minusOneAndErrno) { call.run() }
        #expect(result == 7)
        #expect(call.runs == 3)

        let negative = ScriptedCall([(-EINTR, 0), (0, 0)])
        #expect(try systemCall("update map", "flows") { negative.run() } == 0)
        #expect(negative.runs == 2)
    }

    @Test("a call that must not run twice fails with EINTR instead")
    func noRetry() {
        let call = ScriptedCall([(-EINTR, 0), (0, 0)])
        let error = #expect(throws: SystemCallError.self) {
            try systemCall("load BPF object", "tandem", retryingEINTR: false) { call.run() }
        }
        #expect(error?.errno == EINTR)
        #expect(call.runs == 1)
    }

    @Test("the errno is the call's, not what runs after it")
    func capturesErrnoAtTheCall() {
        let call = ScriptedCall([(-1, ENOENT)])
        // Building the message changes errno (as a malloc or a log line
        // may); the error keeps the call's.
        func target() -> String {
            errno = EBADF
            return "/run/netns/missing"
        }
        let error = #expect(throws: SystemCallError.self) {
            try systemCall("open network namespace", target(), reports: .minusOneAndErrno) { call.run() }
        }
        #expect(error?.errno == ENOENT)
        #expect(error?.description == "cannot open network namespace /run/netns/missing: No such file or directory")
    }

    @Test("-errno results carry their errno whatever the thread's errno says")
    func negativeErrno() {
        let call = ScriptedCall([(-EACCES, EPERM)])
        let error = #expect(throws: SystemCallError.self) {
            try systemCall("pin program at", "/sys/fs/bpf/x") { call.run() }
        }
        #expect(error?.errno == EACCES)
    }

    @Test("the message is built only for a failure")
    func targetOnlyOnFailure() throws {
        var built = 0
        func target() -> String {
            built += 1
            return "fd 3"
        }
        #expect(try systemCall("poll ring buffer", target()) { Int32(5) } == 5)
        #expect(built == 0)
        #expect(throws: SystemCallError.self) { try systemCall("poll ring buffer", target()) { Int32(-EBADF) } }
        #expect(built == 1)
    }

    @Test("real calls: open's -1 and errno, if_nametoindex's 0 and errno")
    func realCalls() {
        let path = "/nonexistent-\(getpid())/file"
        let opened = #expect(throws: SystemCallError.self) {
            try path.withCString { cPath in
                try systemCall("open", path, reports: .minusOneAndErrno) { open(cPath, O_RDONLY | O_CLOEXEC) }
            }
        }
        #expect(opened?.errno == ENOENT)

        let index = #expect(throws: SystemCallError.self) {
            try "tdm-no-such-if".withCString { name in
                try systemCall("find interface", "tdm-no-such-if", hint: "see 'ip link'", reports: .zeroAndErrno) {
                    Int64(if_nametoindex(name))
                }
            }
        }
        #expect(index?.errno == ENODEV)
        #expect(index?.description == "cannot find interface tdm-no-such-if: No such device (see 'ip link')")
    }

    @Test("non-blocking calls: would-block and in-progress are nil, other failures throw")
    func nonBlocking() throws {
        var fds: [Int32] = [-1, -1]
        try systemCall("create", "a socket pair", reports: .minusOneAndErrno) {
            socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds)
        }
        defer { for fd in fds { close(fd) } }
        var byte: UInt8 = 0
        let nothing = try nonBlockingSystemCall("read", "an empty socket", reports: .minusOneAndErrno) {
            recv(fds[0], &byte, 1, 0)
        }
        #expect(nothing == nil)
        #expect(
            try nonBlockingSystemCall("send", "a socket", reports: .minusOneAndErrno) { send(fds[1], &byte, 1, 0) } == 1
        )
        #expect(
            try nonBlockingSystemCall("read", "a socket", reports: .minusOneAndErrno) { recv(fds[0], &byte, 1, 0) } == 1
        )

        let connecting = ScriptedCall([(-1, EINPROGRESS)])
        #expect(
            try nonBlockingSystemCall("connect", "socket 9", reports: .minusOneAndErrno) { connecting.run() } == nil)

        let reset = ScriptedCall([(-1, EINTR), (-1, ECONNRESET)])
        let error = #expect(throws: SystemCallError.self) {
            try nonBlockingSystemCall("read", "socket 9", reports: .minusOneAndErrno) { reset.run() }
        }
        #expect(error?.errno == ECONNRESET)
        #expect(reset.runs == 2)
    }
}

@Suite("SystemCallError says what failed, on what, and what to do")
struct SystemCallErrorTests {
    @Test("the message: operation, target, the system's reason, the hint")
    func description() {
        let attach = SystemCallError("attach XDP to", "eth1", errno: ENODEV, hint: "see 'ip link'")
        #expect(attach.description == "cannot attach XDP to eth1: No such device (see 'ip link')")
        #expect(attach.reason == "No such device")
        let delete = SystemCallError("delete from map", "svc_gens", errno: EINVAL)
        #expect(delete.description == "cannot delete from map svc_gens: Invalid argument")
    }
}
