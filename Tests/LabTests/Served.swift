import BPF
import ControlAPI
import Foundation
import Glibc
import TestSupport

/// `tandem serve` running in the lab's load-balancer namespace, with its
/// own pins, socket and config file, driven through the real CLI.
final class Served {
    static let tandem = Built.tandem
    let dir: String
    let configPath: String
    let pins: String
    let socket: String
    var log: String { dir + "/serve.log" }
    private var daemon: BackgroundProcess?
    /// The daemon's pid while it runs (nsenter execs tandem).
    var pid: Int32? { daemon?.pid }
    /// How the daemon exited (after `stop` or `crash`), nil while it runs.
    private(set) var exitStatus: Int32?

    /// Top-level keys added to the config (`node:`, `announce:`).
    let extra: String

    /// `services` is the YAML list under `services:`; checks default to a
    /// 300 ms interval with rise 2 and fall 2; `extra`: more top-level keys.
    init(services: String, interval: String = "300ms", fall: Int = 2, extra: String = "") async throws {
        self.extra = extra
        let tag = UUID().uuidString.prefix(8).lowercased()
        dir = "/tmp/tandem-test-\(getpid())-\(tag)"
        pins = "/sys/fs/bpf/tandem-test-\(getpid())-serve-\(tag)"
        socket = dir + "/tandem.sock"
        configPath = dir + "/tandem.yaml"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try write(services: services, interval: interval, fall: fall)
        try await start()
    }

    func write(services: String, interval: String = "300ms", fall: Int = 2) throws {
        let text = """
            interface: eth0
            pin-directory: \(pins)
            socket: \(socket)
            \(extra)
            defaults:
              check: { interval: \(interval), timeout: 250ms, rise: 2, fall: \(fall) }
            services:
            \(services)
            """
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// Starts `tandem serve` and waits until it answers and every checked
    /// real has settled (up or down, no longer in its first interval).
    func start() async throws {
        // nsenter execs tandem: the child's pid and exit status are the daemon's.
        let daemon = try await BackgroundProcess.start(
            "nsenter", ["--net=/run/netns/tdm-lb", Self.tandem, "serve", "-c", configPath],
            log: log)
        self.daemon = daemon
        exitStatus = nil
        for _ in 0..<100 {
            if (try? await status()) != nil { return }
            if !daemon.isRunning { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        throw LabError(
            description: "tandem serve did not come up: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
    }

    /// SIGTERM, as an operator or systemd would stop it.
    func stop() async {
        guard let daemon else { return }
        exitStatus = await daemon.stop()
        self.daemon = nil
    }

    /// SIGKILL: a daemon that dies (no clean stop).
    func crash() async {
        guard let daemon else { return }
        exitStatus = await daemon.stop(signal: SIGKILL)
        self.daemon = nil
    }

    /// Exit status and output (stdout and stderr) of any command.
    func attemptPlain(_ args: [String]) async -> (status: Int32, output: String) {
        guard let result = try? await Command.run(args[0], Array(args.dropFirst())) else { return (-1, "") }
        return (result.status, result.output)
    }

    /// The daemon's peak resident memory so far (VmHWM), in MB.
    func peakMemoryMB() -> Int {
        guard let pid, let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kb = Int(line.split(separator: " ").dropFirst().first ?? "")
        else { return -1 }
        return kb / 1024
    }

    /// A tandem command against this daemon, running in the background
    /// with its output (stdout and stderr) in `output`.
    func background(_ args: [String], output: String) async throws -> BackgroundProcess {
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        return try await BackgroundProcess.start(Self.tandem, args + ["--socket", socket], log: output)
    }

    deinit {
        daemon = nil  // its deinit: SIGTERM, and up to 5 s for the daemon to go
        // What `tandem down --pin-directory` does: detach through the pinned
        // link, then remove the pins.
        if let link = try? XDPLink.pinned(at: pins + "/link", interface: "eth0") { try? link.detach() }
        BPFFS.removeTree(pins)
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// Runs a tandem command against this daemon; its output (stdout and stderr).
    @discardableResult
    func cli(_ args: [String], check: Bool = true) async throws -> String {
        try await Lab.run([Self.tandem] + args + ["--socket", socket], check: check)
    }

    /// Exit status and output of a command that may fail.
    func attempt(_ args: [String]) async -> (status: Int32, output: String) {
        guard let result = try? await Command.run(Self.tandem, args + ["--socket", socket]) else { return (-1, "") }
        return (result.status, result.output)
    }

    func status() async throws -> StatusReport {
        let text = try await cli(["status", "--json"])
        return try JSONDecoder().decode(StatusReport.self, from: Data(text.utf8))
    }

    func records() async throws -> [RecordReport] {
        let text = try await cli(["persistence", "list", "--json"])
        return try JSONDecoder().decode([RecordReport].self, from: Data(text.utf8))
    }

    /// The state of `address` in `service` as `tandem status` shows it.
    func state(_ service: String, _ address: String) async -> String? {
        (try? await status())?.services.first { $0.name == service }?.reals.first { $0.address == address }?.state
    }
}

/// One kept-alive HTTP connection from a lab client (lab-server.py hold).
final class HeldConnection {
    let dir: String
    private var asked = 0
    private let client: BackgroundProcess

    /// `namespace`: the clients' namespace (tdm-n-c in tools/lab-nodes).
    init(vip: String = Lab.vip4, port: Int = 80, from source: String, namespace: String = "tdm-client") async throws {
        dir = "/tmp/tandem-test-\(getpid())-hold-\(UUID().uuidString.prefix(8).lowercased())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        client = try await BackgroundProcess.start(
            "ip",
            [
                "netns", "exec", namespace, "/usr/bin/python3", Lab.root + "/tools/lab-server.py",
                "hold", vip, "\(port)", source, dir
            ])
    }

    /// The answer to the request that opened the connection.
    var first: String? { wait(for: 0) }

    /// The connection's source port (known once `first` is).
    var sourcePort: Int? { (try? String(contentsOfFile: "\(dir)/port", encoding: .utf8)).flatMap { Int($0) } }

    /// Asks again on the same connection.
    func ask() -> String? {
        send()
        return answer()
    }

    /// Asks again without waiting for the answer (`answer` collects it), so
    /// that many connections can be asked at once.
    func send() {
        asked += 1
        _ = FileManager.default.createFile(atPath: "\(dir)/go-\(asked)", contents: nil)
    }

    /// The answer to the last `send`.
    func answer() -> String? { wait(for: asked) }

    private func wait(for n: Int) -> String? {
        for _ in 0..<100 {
            if let text = try? String(contentsOfFile: "\(dir)/\(n)", encoding: .utf8) { return text }
            usleep(50_000)
        }
        return nil
    }

    deinit {
        _ = FileManager.default.createFile(atPath: "\(dir)/stop", contents: nil)
        usleep(100_000)
        try? FileManager.default.removeItem(atPath: dir)
    }
}
