import Glibc
import TestSupport
import Testing

@Suite("Commands and background processes")
struct CommandTests {
    @Test("a command's exit status and its output, stderr interleaved as 2>&1")
    func run() async throws {
        let result = try await Command.run("sh", ["-c", "echo out; echo err >&2; exit 3"])
        #expect(result.status == 3)
        #expect(result.output == "out\nerr\n")
        let error = await #expect(throws: CommandError.self) {
            try await Command.output("sh", ["-c", "echo no; exit 2"])
        }
        #expect(error?.status == 2 && error?.output == "no\n")
    }

    @Test("added environment reaches the command")
    func environment() async throws {
        #expect(
            try await Command.output("sh", ["-c", "echo $TANDEM_TEST_X"], environment: ["TANDEM_TEST_X": "y"]) == "y\n")
    }

    @Test("stop sends SIGTERM and waits; SIGKILL on request; wait for one that exits itself")
    func background() async throws {
        let sleeper = try await BackgroundProcess.start("sleep", ["30"])
        #expect(sleeper.isRunning)
        let start = TestClock.nowNs()
        #expect(await sleeper.stop() == 128 + SIGTERM)
        #expect(
            TestClock.seconds(since: start) < 4.5,
            "stopped on SIGTERM, before the 5 s after which a dropped handle kills")
        #expect(!sleeper.isRunning)

        let stubborn = try await BackgroundProcess.start("sh", ["-c", "trap '' TERM; sleep 30"])
        #expect(await stubborn.stop(signal: SIGKILL) == 128 + SIGKILL)

        let quitter = try await BackgroundProcess.start("sh", ["-c", "exit 7"])
        #expect(await quitter.wait() == 7)
        #expect(await quitter.stop() == 7, "stopping one that has exited only reports how")
    }

    @Test("a background process's output goes to its log")
    func log() async throws {
        let path = "/tmp/tandem-test-\(getpid())-log"
        defer { unlink(path) }
        let child = try await BackgroundProcess.start("sh", ["-c", "echo one; echo two >&2"], log: path)
        #expect(await child.wait() == 0)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "one\ntwo\n")
    }

    @Test("within: how long a condition took to hold, nil if it never did")
    func within() async {
        #expect(await TestClock.within(0.2) { false } == nil)
        let took = await TestClock.within(1) { true }
        #expect(
            took != nil && took! < 1, "a condition that holds at once is not waited on: \(String(describing: took))")
    }
}
