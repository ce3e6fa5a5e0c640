import ArgumentParser
import BPF
import Model
import Dataplane
import Foundation
import Frames
import TestSupport

@main
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem-bench",
        abstract: "Measures Tandem's XDP paths through BPF_PROG_TEST_RUN beside a MAC-swap baseline, in one run.")

    @Option(help: "Runs of one frame inside the kernel's loop, for the stateless rows (pass, established).")
    var `repeat`: Int32 = 1_000_000

    @Option(
        help:
            "New clients per trial of each SYN and first-ACK row; one source address each (11 blocks of them must fit in 198.18.4.0 to 198.19.255.255), at most 11000."
    )
    var clients: Int32 = 10_000

    @Option(
        help:
            "bench.bpf.c built against an earlier commit's bpf/lib (tools/bench builds it from commit 66d961c, or $TANDEM_BENCH_PREVIOUS): its rows are measured beside the current ones, on the same maps."
    )
    var previousObject: String?
    @Option(help: "What to call the previous object's rows (tools/bench passes the commit).")
    var previousLabel = "previous"

    @Option(help: "Persistence records present for the invalidation row.")
    var records: Int = 1_000_000

    @Option(help: "bpffs directory for the benchmark's private maps (removed afterwards).")
    var pinRoot = "/sys/fs/bpf/tandem-bench"

    @Option(help: "Services (in linked pairs) and reals each for the controller apply row.")
    var applyServices = 1000
    @Option(help: "Reals per service for the controller apply row.")
    var applyReals = 64

    @Option(help: "Reals checked every second for the health-check CPU rows.")
    var checkReals = 10_000

    @Option(help: "Seconds the health-check CPU is measured over.")
    var checkSeconds = 10
    @Option(help: "Rounds of the health rows; HAProxy and Tandem alternate within a round, each row shows the median.")
    var checkRounds = 3

    @Option(help: "Spoofed SYNs of the flood row (in the lab).")
    var floodSyns = 3_000_000

    @Option(help: "Prefix of the two network namespaces of the health rows (<prefix>-c, <prefix>-s).")
    var checkNetns = "tdm-hc"

    @Option(help: "Seconds of each live-packet measurement (each program, each round).")
    var liveSeconds = 1.0
    @Option(help: "Rounds of the live-packet rows; programs alternate within a round.")
    var liveRounds = 3

    @Option(help: "Seconds of each wrk run for the connection rows.")
    var connSeconds = 5
    @Option(help: "Rounds of the connection rows; Tandem and HAProxy alternate within a round.")
    var connRounds = 2
    @Option(help: "Connections wrk keeps open at once.")
    var connConcurrency = 64
    @Option(help: "The tandem executable for the connection rows (default: beside tandem-bench).")
    var tandem: String?

    @Option(
        help:
            "Which rows, one or several joined by commas: all, paths (XDP in the test loop), live (packets through the lab), flood (spoofed SYNs through the lab), connections (Tandem beside HAProxy), controller, health (checks beside HAProxy's), sync (record sync between two nodes on loopback)."
    )
    var only = "all"

    @Option(help: "New clients of each record sync phase (one record each).")
    var syncClients = 5000
    @Option(help: .hidden) var syncReceiver: Int?
    @Option(help: .hidden) var syncSenderPort: Int?

    @Flag(help: "Print the table as Markdown.")
    var markdown = false

    @Flag(help: "Leave the path benchmark's maps pinned (inspect them with bpftool; remove the directory after).")
    var keep = false

    func validate() throws {
        guard (1...11_000).contains(clients) else { throw ValidationError("--clients must be 1...11000") }
        guard `repeat` >= 1 else { throw ValidationError("--repeat must be at least 1") }
        guard (1...1_048_576).contains(records) else { throw ValidationError("--records must be 1...1048576") }
        guard !parts.isEmpty,
            parts.allSatisfy(["all", "paths", "live", "flood", "connections", "controller", "health", "sync"].contains)
        else {
            throw ValidationError(
                "--only must be all, paths, live, flood, connections, controller, health or sync (or several, joined by commas)"
            )
        }
        guard (1...600).contains(connSeconds), (1...20).contains(connRounds), (1...4000).contains(connConcurrency)
        else {
            throw ValidationError(
                "--conn-seconds must be 1...600, --conn-rounds 1...20 and --conn-concurrency 1...4000")
        }
        // Four sets of new clients, each its own address in 198.19.0.0/16.
        guard (100...16_000).contains(syncClients) else { throw ValidationError("--sync-clients must be 100...16000") }
        guard (1...100_000_000).contains(floodSyns) else { throw ValidationError("--flood-syns must be 1...100000000") }
        guard (0.1...60).contains(liveSeconds), (1...20).contains(liveRounds) else {
            throw ValidationError("--live-seconds must be 0.1...60 and --live-rounds 1...20")
        }
        guard (2...1024).contains(applyServices), (1...64).contains(applyReals) else {
            throw ValidationError("--apply-services must be 2...1024 and --apply-reals 1...64")
        }
        guard (100...62_500).contains(checkReals), (1...600).contains(checkSeconds), (1...20).contains(checkRounds)
        else {
            throw ValidationError(
                "--check-reals must be 100...62500, --check-seconds 1...600 and --check-rounds 1...20")
        }
        guard !checkNetns.isEmpty, checkNetns.count <= 20,
            checkNetns.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" })
        else { throw ValidationError("--check-netns must be 1 to 20 letters, digits or dashes") }
    }

    /// The row sets --only names.
    var parts: [String] { only.split(separator: ",").map(String.init) }
    func wants(_ rows: String) -> Bool { parts.contains("all") || parts.contains(rows) }

    mutating func run() async throws {
        if let syncReceiver, let syncSenderPort {
            // The receiving node of the sync rows, started by them.
            try await SyncBench.receive(
                port: syncReceiver, senderPort: syncSenderPort, count: syncClients, pinRoot: pinRoot)
            return
        }
        var table = ResultTable()
        if wants("paths") {
            let paths = try PathBench(
                pinRoot: pinRoot, repeat: `repeat`, clients: clients, previousObject: previousObject,
                previousLabel: previousLabel)
            try paths.measure(into: &table)
            if !keep { paths.dataplane.removePins() }
            try InvalidationBench(pinRoot: pinRoot + "-invalidation", records: records).measure(into: &table)
        }
        if wants("live") {
            try await LiveBench(seconds: liveSeconds, rounds: liveRounds, pinRoot: pinRoot + "-live").measure(
                into: &table)
        }
        if wants("flood") {
            try await FloodBench(syns: floodSyns, pinRoot: pinRoot + "-flood").measure(into: &table)
        }
        if wants("connections") {
            let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
                .appendingPathComponent("tandem").path
            try await ConnectionBench(
                seconds: connSeconds, rounds: connRounds, connections: connConcurrency,
                tandem: tandem ?? beside
            ).measure(into: &table)
        }
        if wants("controller") {
            try ControllerBench.apply(
                services: applyServices, reals: applyReals, pinRoot: pinRoot + "-apply", into: &table)
        }
        if wants("health") {
            try await HealthBench(count: checkReals, seconds: checkSeconds, rounds: checkRounds, netns: checkNetns)
                .measure(into: &table)
        }
        if wants("sync") {
            try await SyncBench(clients: syncClients, pinRoot: pinRoot + "-sync").measure(into: &table)
        }
        print(markdown ? table.markdown : table.text)
    }
}

/// Rows of the result table: what, the figure, the baseline beside it.
struct ResultTable {
    struct Row { var name: String, value: String, baseline: String, ratio: String, method: String }
    var rows: [Row] = []

    mutating func add(_ name: String, ns: Double, baseline: Double?, method: String) {
        rows.append(
            Row(
                name: name, value: String(format: "%.1f ns", ns),
                baseline: baseline.map { String(format: "%.1f ns", $0) } ?? "",
                ratio: baseline.map { String(format: "%.2fx", ns / $0) } ?? "", method: method))
    }

    /// A rate (higher is better): ratio is this over the baseline.
    mutating func add(rate name: String, pps: Double, baseline: Double?, method: String) {
        rows.append(
            Row(
                name: name, value: String(format: "%.2f Mpps", pps / 1e6),
                baseline: baseline.map { String(format: "%.2f Mpps", $0 / 1e6) } ?? "",
                ratio: baseline.map { String(format: "%.2fx", pps / $0) } ?? "", method: method))
    }

    /// A figure with a unit; ratio is this over the baseline.
    mutating func add(count name: String, value: Double, unit: String, baseline: Double?, method: String) {
        func text(_ v: Double) -> String {
            v >= 100 ? String(format: "%.0f %@", v, unit) : String(format: "%.2f %@", v, unit)
        }
        rows.append(
            Row(
                name: name, value: text(value), baseline: baseline.map(text) ?? "",
                ratio: baseline.map { String(format: "%.2fx", value / $0) } ?? "", method: method))
    }

    mutating func add(_ name: String, value: String, method: String) {
        rows.append(Row(name: name, value: value, baseline: "", ratio: "", method: method))
    }

    var text: String {
        let header = Row(name: "path", value: "tandem", baseline: "baseline", ratio: "ratio", method: "method")
        let all = [header] + rows
        let w = [
            all.map(\.name.count).max()!, all.map(\.value.count).max()!,
            all.map(\.baseline.count).max()!, all.map(\.ratio.count).max()!
        ]
        return all.map { r in
            [
                r.name.padding(toLength: w[0], withPad: " ", startingAt: 0),
                r.value.padding(toLength: w[1], withPad: " ", startingAt: 0),
                r.baseline.padding(toLength: w[2], withPad: " ", startingAt: 0),
                r.ratio.padding(toLength: w[3], withPad: " ", startingAt: 0), r.method
            ].joined(separator: "  ")
        }.joined(separator: "\n")
    }

    var markdown: String {
        (["| path | tandem | baseline | ratio | method |", "|---|---|---|---|---|"]
            + rows.map { "| \($0.name) | \($0.value) | \($0.baseline) | \($0.ratio) | \($0.method) |" })
            .joined(separator: "\n")
    }
}
