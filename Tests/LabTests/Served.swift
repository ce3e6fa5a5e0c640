import Controller
import Foundation
import Glibc

/// `tandem serve` running in the lab's load-balancer namespace, with its
/// own pins, socket and config file, driven through the real CLI.
final class Served {
    static let tandem = Lab.root + "/.build/debug/tandem"
    let dir: String
    let configPath: String
    let pins: String
    let socket: String
    var log: String { dir + "/serve.log" }
    private(set) var pid: Int32?
    private var process: Process?

    /// `services` is the YAML list under `services:`; checks default to a
    /// 300 ms interval with rise 2 and fall 2.
    init(services: String, interval: String = "300ms", fall: Int = 2) throws {
        let tag = UUID().uuidString.prefix(8).lowercased()
        dir = "/tmp/tandem-test-\(getpid())-\(tag)"
        pins = "/sys/fs/bpf/tandem-test-\(getpid())-serve-\(tag)"
        socket = dir + "/tandem.sock"
        configPath = dir + "/tandem.yaml"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try write(services: services, interval: interval, fall: fall)
        try start()
    }

    func write(services: String, interval: String = "300ms", fall: Int = 2) throws {
        let text = """
            interface: eth0
            pin-directory: \(pins)
            socket: \(socket)
            defaults:
              check: { interval: \(interval), timeout: 250ms, rise: 2, fall: \(fall) }
            services:
            \(services)
            """
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// Starts `tandem serve` and waits until it answers and every checked
    /// real has settled (up or down, no longer in its first interval).
    func start() throws {
        // nsenter execs tandem: the child's pid and exit status are the daemon's.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
        process.arguments = ["--net=/run/netns/tdm-lb", Self.tandem, "serve", "-c", configPath]
        if !FileManager.default.fileExists(atPath: log) { _ = FileManager.default.createFile(atPath: log, contents: nil) }
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        output.seekToEndOfFile()
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        try process.run()
        self.process = process
        pid = process.processIdentifier
        for _ in 0..<100 {
            if (try? status()) != nil { return }
            if process.isRunning == false { break }
            usleep(100_000)
        }
        throw LabError(description: "tandem serve did not come up: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
    }

    /// SIGTERM, as an operator or systemd would stop it.
    func stop() {
        guard let pid else { return }
        kill(pid, SIGTERM)
        process?.waitUntilExit()
        self.pid = nil
    }

    /// How the daemon exited (after `stop` or `crash`), nil while it runs.
    var exitStatus: Int32? { process?.isRunning == false ? process?.terminationStatus : nil }

    /// Exit status and output (stdout and stderr) of any command.
    func attemptPlain(_ args: [String]) -> (status: Int32, output: String) {
        let command = args.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
            + " 2>&1; echo \"exit=$?\""
        let text = (try? Lab.run(["sh", "-c", command], check: false)) ?? ""
        let status = text.components(separatedBy: "exit=").last.flatMap { Int32($0) } ?? -1
        return (status, text.components(separatedBy: "exit=").dropLast().joined())
    }

    deinit {
        stop()
        _ = try? Lab.run([Self.tandem, "down", "--pin-directory", pins], check: false)
        _ = try? Lab.run(["rm", "-rf", dir], check: false)
    }

    /// SIGKILL: a daemon that dies (no clean stop).
    func crash() {
        guard let pid else { return }
        kill(pid, SIGKILL)
        process?.waitUntilExit()
        self.pid = nil
    }

    /// The daemon's peak resident memory so far (VmHWM), in MB.
    func peakMemoryMB() -> Int {
        guard let pid, let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kb = Int(line.split(separator: " ").dropFirst().first ?? "") else { return -1 }
        return kb / 1024
    }

    /// A tandem command against this daemon, running in the background
    /// with its output (stdout and stderr) in `output`.
    func background(_ args: [String], output: String) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.tandem)
        process.arguments = args + ["--socket", socket]
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        return process
    }

    /// Runs a tandem command against this daemon; its output (stdout and stderr).
    @discardableResult
    func cli(_ args: [String], check: Bool = true) throws -> String {
        try Lab.run([Self.tandem] + args + ["--socket", socket], check: check)
    }

    /// Exit status and output of a command that may fail.
    func attempt(_ args: [String]) -> (status: Int32, output: String) {
        let command = ([Self.tandem] + args + ["--socket", socket])
            .map { "'" + $0 + "'" }.joined(separator: " ") + "; echo \"exit=$?\""
        let text = (try? Lab.run(["sh", "-c", command], check: false)) ?? ""
        let status = text.components(separatedBy: "exit=").last.flatMap { Int32($0) } ?? -1
        return (status, text.components(separatedBy: "exit=").dropLast().joined())
    }

    func status() throws -> StatusReport {
        let text = try cli(["status", "--json"])
        return try JSONDecoder().decode(StatusReport.self, from: Data(text.utf8))
    }

    func records() throws -> [RecordReport] {
        let text = try cli(["persistence", "list", "--json"])
        return try JSONDecoder().decode([RecordReport].self, from: Data(text.utf8))
    }

    /// The state of `address` in `service` as `tandem status` shows it.
    func state(_ service: String, _ address: String) -> String? {
        (try? status())?.services.first { $0.name == service }?.reals.first { $0.address == address }?.state
    }

    /// Polls `condition` every 50 ms for up to `seconds`; the time it took, or nil.
    static func within(_ seconds: Double, _ condition: () -> Bool) -> Double? {
        let start = Date()
        while Date().timeIntervalSince(start) < seconds {
            if condition() { return Date().timeIntervalSince(start) }
            usleep(50_000)
        }
        // One last look at the deadline; a condition that itself took past
        // it (a slow status) does not count as met in time.
        let met = condition()
        let took = Date().timeIntervalSince(start)
        return met && took <= seconds + 0.5 ? took : nil
    }
}

/// One kept-alive HTTP connection from a lab client (lab-server.py hold).
final class HeldConnection {
    let dir: String
    private var asked = 0

    init(vip: String = Lab.vip4, port: Int = 80, from source: String) throws {
        dir = "/tmp/tandem-test-\(getpid())-hold-\(UUID().uuidString.prefix(8).lowercased())"
        try Lab.run(["rm", "-rf", dir])
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Lab.run(["sh", "-c", "ip netns exec tdm-client /usr/bin/python3 '\(Lab.root)/tools/lab-server.py' hold \(vip) \(port) \(source) '\(dir)' > /dev/null 2>&1 < /dev/null &"])
    }

    /// The answer to the request that opened the connection.
    var first: String? { wait(for: 0) }

    /// Asks again on the same connection.
    func ask() -> String? {
        asked += 1
        FileManager.default.createFile(atPath: "\(dir)/go-\(asked)", contents: nil)
        return wait(for: asked)
    }

    private func wait(for n: Int) -> String? {
        for _ in 0..<100 {
            if let text = try? String(contentsOfFile: "\(dir)/\(n)", encoding: .utf8) { return text }
            usleep(50_000)
        }
        return nil
    }

    deinit {
        FileManager.default.createFile(atPath: "\(dir)/stop", contents: nil)
        usleep(100_000)
        try? FileManager.default.removeItem(atPath: dir)
    }
}

extension Process {
    /// Waits for the process; its exit status.
    func wait() -> Int32 {
        waitUntilExit()
        return terminationStatus
    }
}
