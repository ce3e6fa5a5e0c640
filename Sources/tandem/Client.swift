import ArgumentParser
import Configuration
import Control
import Model
import ControlAPI
import Foundation

/// Options shared by the commands that talk to `tandem serve`.
struct SocketOptions: ParsableArguments {
    @Option(help: "The control socket of tandem serve.")
    var socket = "/run/tandem/tandem.sock"

    /// Sends `request`; prints the error and exits 1 when it failed.
    /// Batches of a record listing go to `onRecords` as they arrive.
    func send(
        _ request: ControlRequest,
        onRecords: ([RecordReport]) throws -> Void = { _ in }
    ) async throws -> ControlResponse {
        var stderr = StandardError()
        let response: ControlResponse
        do {
            response = try await ControlClient.send(request, socket: socket, onRecords: onRecords)
        } catch {
            print("tandem: \(error)", to: &stderr)
            throw ExitCode(1)
        }
        if let error = response.error {
            print("tandem: \(error)", to: &stderr)
            throw ExitCode(1)
        }
        return response
    }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Services, reals with state, weight and health, record counts and rates.")

    @OptionGroup var options: SocketOptions
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        guard let status = try await options.send(.status).status else { return }
        if json { try printJSON(status) } else { print(Text.status(status), terminator: "") }
    }
}

struct RecordOptions: ParsableArguments {
    @Option(help: "Only records of this service's follow group.") var service: String?
    @Option(help: "Only clients in this address or CIDR.") var client: String?
    @Option(help: "Only records pointing at this real address.") var real: String?

    func validate() throws {
        if let client {
            do { _ = try RecordFilter.parseCIDR(client) } catch { throw ValidationError("\(error)") }
        }
        if let real, IPAddress(real) == nil { throw ValidationError("--real \(real) is not an IP address") }
    }

    var filter: RecordFilter { RecordFilter(service: service, client: client, real: real) }
}

struct Persistence: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List or flush source-IP persistence records.", subcommands: [List.self, Flush.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Records with group, client, real and age.")
        @OptionGroup var options: SocketOptions
        @OptionGroup var filter: RecordOptions
        @Flag(help: "Print JSON.") var json = false

        func run() async throws {
            // A listing in one batch prints as one sorted table (or JSON
            // array); a longer one prints batch by batch as it arrives, so
            // a full table never has to fit in memory here either.
            var held: [RecordReport] = []
            var streaming = false
            var widths: [Int]?
            var count = 0
            let json = self.json
            func emit(_ batch: [RecordReport]) throws {
                if json {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                    let items = try batch.map {
                        "  "
                            + String(decoding: try encoder.encode($0), as: UTF8.self)
                            .replacingOccurrences(of: "\n", with: "\n  ")
                    }
                    print((count == batch.count ? "[\n" : ",\n") + items.joined(separator: ",\n"), terminator: "")
                } else {
                    print(Text.recordBatch(batch, widths: &widths), terminator: "")
                }
            }
            _ = try await options.send(.listRecords(filter.filter)) { batch in
                if !streaming && held.isEmpty {
                    held = batch  // maybe the only batch: print it whole at the end
                    return
                }
                if !streaming {
                    streaming = true
                    count = held.count
                    try emit(held)
                }
                count += batch.count
                try emit(batch)
            }
            if streaming {
                print(json ? "\n]" : Text.recordCount(count), terminator: json ? "\n" : "")
            } else if json {
                try printJSON(held)
            } else {
                print(Text.records(held), terminator: "")
            }
        }
    }

    struct Flush: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete matching records for their whole follow group; their clients are scheduled afresh.")
        @OptionGroup var options: SocketOptions
        @OptionGroup var filter: RecordOptions
        @Flag(help: "Delete every record (required when no filter is given).") var all = false

        func validate() throws {
            let filtered = filter.service != nil || filter.client != nil || filter.real != nil
            if !filtered && !all {
                throw ValidationError(
                    "no filter given: add --service, --client or --real, or --all to delete every record")
            }
            if filtered && all { throw ValidationError("--all deletes every record; leave out the filters or --all") }
        }

        func run() async throws {
            print(try await options.send(.flushRecords(filter.filter)).message ?? "")
        }
    }
}

struct RealCommands: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "real", abstract: "Operator state of a real: enable, disable (like a failure) or drain.",
        subcommands: [Enable.self, Disable.self, Drain.self])

    struct Target: ParsableArguments {
        @Option(help: "The service; omitted: every service with that address.") var service: String?
        @Argument(help: "The real's address.") var address: String

        func validate() throws {
            if IPAddress(address) == nil { throw ValidationError("\(address) is not an IP address") }
        }
    }

    static func send(_ action: RealCommand.Action, _ target: Target, _ options: SocketOptions) async throws {
        let command = RealCommand(action: action, address: target.address, service: target.service)
        print(try await options.send(.setReal(command)).message ?? "")
    }

    struct Enable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Schedule the real again (once its checks pass).")
        @OptionGroup var options: SocketOptions
        @OptionGroup var target: Target
        func run() async throws { try await RealCommands.send(.enable, target, options) }
    }

    struct Disable: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Take the real out as if it failed: its records are cleared and its clients move.")
        @OptionGroup var options: SocketOptions
        @OptionGroup var target: Target
        func run() async throws { try await RealCommands.send(.disable, target, options) }
    }

    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "No new clients; records and flows stay until they expire.")
        @OptionGroup var options: SocketOptions
        @OptionGroup var target: Target
        func run() async throws { try await RealCommands.send(.drain, target, options) }
    }
}

struct NodeCommands: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node", abstract: "Withdraw every VIP of this node from the router, or announce them again.",
        discussion: """
            Needs `announce: { table: N }` in the config: Tandem keeps one route per announced VIP in \
            that kernel routing table, which the node's routing daemon (BIRD) carries to the router. \
            Forwarding goes on while drained: connections the router still sends here are served.
            """,
        subcommands: [Drain.self, Resume.self])

    static func send(_ action: NodeCommand.Action, _ options: SocketOptions) async throws {
        print(try await options.send(.node(NodeCommand(action: action))).message ?? "")
    }

    struct Drain: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Withdraw every VIP route; kept through restarts of tandem serve until 'tandem node resume'.")
        @OptionGroup var options: SocketOptions
        func run() async throws { try await NodeCommands.send(.drain, options) }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Announce the VIPs again: each one that has a usable real.")
        @OptionGroup var options: SocketOptions
        func run() async throws { try await NodeCommands.send(.resume, options) }
    }
}

struct Reload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-read the config and apply the difference.",
        discussion: """
            Services and reals that stay keep their flows and records. A real removed from a service loses \
            its flows there at once (their next packets are scheduled afresh, so open TCP connections to it \
            are reset by the new real) and its records; a removed service stops forwarding: its established \
            flows are passed to the host. A changed `announce` table moves the VIP routes to it. Changes to \
            interface, xdp-mode, pin-directory, socket, metrics, node, sync.listen or sync.peers need a restart \
            and are refused; so are changes to tables, which the pinned maps keep until tandem down. A config \
            that fails validation changes nothing.
            """)
    @OptionGroup var options: SocketOptions

    func run() async throws {
        print(try await options.send(.reload).message ?? "")
    }
}

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Counters and rates.")
    @OptionGroup var options: SocketOptions
    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Print again every --interval seconds until interrupted.") var watch = false
    @Option(help: "Seconds between prints with --watch.") var interval: Double = 2

    func validate() throws {
        guard interval >= 0.1 && interval <= 3600 else { throw ValidationError("--interval must be 0.1-3600 seconds") }
    }

    func run() async throws {
        repeat {
            guard let stats = try await options.send(.stats).stats else { return }
            if json {
                try printJSON(stats)
            } else {
                if watch { print("--- \(Date())") }
                print(Text.stats(stats), terminator: "")
            }
            if watch { try await Task.sleep(for: .seconds(interval)) }
        } while watch
    }
}
