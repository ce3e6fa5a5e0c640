import CTestSupport
import Foundation
import Glibc
import Subprocess
import SystemPackage

/// What a finished command left.
public struct CommandResult: Sendable {
    /// The exit status; 128 + N when signal N ended it, as a shell reports it.
    public var status: Int32
    /// Standard output and standard error, interleaved as written (2>&1).
    public var output: String
}

/// A command that exited with a status other than 0.
public struct CommandError: Error, CustomStringConvertible {
    public var command: String
    public var status: Int32
    public var output: String

    public var description: String { "\(command): exit \(status): \(output)" }
}

/// Subprocesses of tests and benchmarks (ip, tools/lab, tandem, curl, wrk),
/// through swift-subprocess.
public enum Command {
    /// Runs `executable` (a path, or a name looked up in PATH) to the end,
    /// with `environment` added to this process's. A failing exit status is
    /// a result, not an error.
    public static func run(
        _ executable: String, _ arguments: [String] = [],
        environment: [String: String] = [:]
    ) async throws -> CommandResult {
        let result = try await Subprocess.run(
            Self.executable(executable), arguments: Arguments(arguments),
            environment: Self.environment(environment),
            output: .bytes(limit: 64 << 20), error: .combinedWithOutput)
        return CommandResult(
            status: status(result.terminationStatus),
            output: String(decoding: result.standardOutput, as: UTF8.self))
    }

    /// Runs `executable` and returns its output; throws `CommandError`
    /// unless it exits 0.
    @discardableResult
    public static func output(
        _ executable: String, _ arguments: [String] = [],
        environment: [String: String] = [:]
    ) async throws -> String {
        let result = try await run(executable, arguments, environment: environment)
        guard result.status == 0 else {
            throw CommandError(
                command: ([executable] + arguments).joined(separator: " "),
                status: result.status, output: result.output)
        }
        return result.output
    }

    static func executable(_ name: String) -> Executable {
        name.contains("/") ? .path(FilePath(name)) : .name(name)
    }

    static func environment(_ added: [String: String]) -> Environment {
        added.isEmpty
            ? .inherit
            : .inherit.updating(
                Dictionary(
                    uniqueKeysWithValues: added.compactMap { key, value in
                        Environment.Key(rawValue: key).map { ($0, Optional(value)) }
                    }))
    }

    static func status(_ status: TerminationStatus) -> Int32 {
        switch status {
        case .exited(let code): code
        case .signaled(let signal): 128 + signal
        }
    }
}

/// A long-running child (tandem serve, haproxy, a test server) that the
/// caller signals or waits for later, or that stops when its handle goes.
///
/// swift-subprocess hands out a running process only inside the closure of
/// its `run`; here that closure runs in a task of its own and returns when
/// the process exits or `stop` asks it to send a signal.
public final class BackgroundProcess: Sendable {
    public let pid: Int32
    private let task: Task<Int32, any Error>
    private let stopRequest: AsyncStream<Int32>.Continuation

    /// Starts `executable`; its standard output and error are appended to
    /// `log` (nil: discarded).
    public static func start(
        _ executable: String, _ arguments: [String], log: String? = nil
    ) async throws -> BackgroundProcess {
        let fd = try FileDescriptor.open(
            FilePath(log ?? "/dev/null"), .writeOnly, options: [.append, .create],
            permissions: [.ownerReadWrite, .groupRead, .otherRead])
        let (pids, pidSink) = AsyncStream.makeStream(of: Int32.self)
        let (stops, stopSink) = AsyncStream.makeStream(of: Int32.self)
        let task = Task {
            defer { pidSink.finish() }
            let result = try await Subprocess.run(
                Command.executable(executable), arguments: Arguments(arguments),
                input: .none, output: .fileDescriptor(fd, closeAfterSpawningProcess: true), error: .combinedWithOutput
            ) { execution in
                let pid = execution.processIdentifier.value
                pidSink.yield(pid)
                pidSink.finish()
                guard let signal = await firstStopOrExit(pid, stops) else { return }
                // The signal; SIGKILL if the process is still there 5 s later.
                try? execution.send(signal: Signal(rawValue: signal))
                for _ in 0..<100 where isRunning(pid) { try? await Task.sleep(nanoseconds: 50_000_000) }
                if isRunning(pid) { try? execution.send(signal: .kill) }
            }
            return Command.status(result.terminationStatus)
        }
        var started = pids.makeAsyncIterator()
        guard let pid = await started.next() else {
            stopSink.finish()
            _ = try await task.value  // throws why it did not start
            throw CommandError(command: executable, status: -1, output: "did not start")
        }
        return BackgroundProcess(pid: pid, task: task, stopRequest: stopSink)
    }

    private init(pid: Int32, task: Task<Int32, any Error>, stopRequest: AsyncStream<Int32>.Continuation) {
        self.pid = pid
        self.task = task
        self.stopRequest = stopRequest
    }

    /// The signal `stop` asked for, or nil once the process has exited on
    /// its own (`awaitExit`: the closure sees no exit event of its own).
    private static func firstStopOrExit(_ pid: Int32, _ stops: AsyncStream<Int32>) async -> Int32? {
        await withTaskGroup(of: Int32?.self) { group in
            group.addTask {
                for await signal in stops { return signal }
                return SIGTERM  // the handle went away
            }
            group.addTask {
                await awaitExit(of: pid)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    /// Returns once `pid` has exited (a zombie counts) or the task is
    /// cancelled. Woken by the process's pidfd, not polled: a benchmark's
    /// process that runs a server in the background measures its own CPU
    /// time, and polling would add to it.
    private static func awaitExit(of pid: Int32) async {
        let fd = tandem_test_pidfd_open(pid)
        if fd < 0 {
            if fd == -ESRCH { return }  // gone already
            // No pidfd here: polled.
            while isRunning(pid) {
                do { try await Task.sleep(nanoseconds: 50_000_000) } catch { return }
            }
            return
        }
        let wait = ExitWait()
        // The pidfd reads as ready once the process has exited.
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: .global())
        // Once: the pidfd stays ready, and the source would fire again.
        source.setEventHandler {
            wait.finish()
            source.cancel()
        }
        source.setCancelHandler { close(fd) }
        source.resume()
        await withTaskCancellationHandler {
            await withCheckedContinuation { wait.wait($0) }
        } onCancel: {
            wait.finish()
        }
        source.cancel()
    }

    /// One waiter, resumed once, by whichever comes first.
    private final class ExitWait: @unchecked Sendable {
        private let lock = NSLock()
        private var continuation: CheckedContinuation<Void, Never>?
        private var done = false

        func wait(_ continuation: CheckedContinuation<Void, Never>) {
            let now = lock.withLock {
                if !done { self.continuation = continuation }
                return done
            }
            if now { continuation.resume() }
        }

        func finish() {
            let waiting = lock.withLock {
                done = true
                defer { continuation = nil }
                return continuation
            }
            waiting?.resume()
        }
    }

    /// Whether the process is still running.
    public var isRunning: Bool { Self.isRunning(pid) }

    /// An exited process not yet reaped (a zombie) is not running.
    static func isRunning(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let end = stat.lastIndex(of: ")")
        else { return false }
        return !stat[end...].hasPrefix(") Z")
    }

    /// Sends `signal` (SIGKILL 5 s later if the process is still there) and
    /// waits for the exit; the exit status (128 + N for signal N).
    @discardableResult
    public func stop(signal: Int32 = SIGTERM) async -> Int32? {
        stopRequest.yield(signal)
        return try? await task.value
    }

    /// Waits for the process to exit on its own; its exit status.
    public func wait() async -> Int32? {
        try? await task.value
    }

    /// A handle dropped while its process runs: SIGTERM, and up to 5 s for
    /// the process to go, on this thread (deinit cannot wait for a task).
    deinit {
        if isRunning {
            kill(pid, SIGTERM)
            for _ in 0..<100 where isRunning { usleep(50_000) }
        }
        stopRequest.finish()
    }
}

/// Runs `body`, then `cleanup` whether or not `body` threw: a `defer` that
/// can await (stopping a daemon, `tools/lab down`).
public func withCleanup<T>(
    isolation: isolated (any Actor)? = #isolation,
    _ body: () async throws -> T, cleanup: () async -> Void
) async throws -> T {
    let result: T
    do {
        result = try await body()
    } catch {
        await cleanup()
        throw error
    }
    await cleanup()
    return result
}
