import ArgumentParser
import BPF
import Configuration
import Announce
import ControlAPI
import Dataplane
import Foundation
import Glibc

/// `tandem down`: stop forwarding and forget all state.
struct Down: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Withdraw the VIP routes, detach the XDP program and remove the pinned maps, flows and records.",
        discussion: """
            Refused while a tandem serve owns the pins: stop it first (systemctl stop tandem, or SIGTERM), \
            which leaves forwarding and the VIP routes in place, then run tandem down. The routes go first \
            (Tandem's, proto 250, in the announce table of the config or of the pins), and XDP is detached \
            --withdraw-wait seconds later, once the router sends nothing here any more.
            """)

    @Option(name: .shortAndLong, help: "The config file; its pin-directory is used.")
    var config: String?

    @Option(help: "The bpffs directory holding Tandem's pins (default /sys/fs/bpf/tandem).")
    var pinDirectory: String?

    @Option(help: "Seconds between withdrawing the VIP routes and detaching XDP (0-60).")
    var withdrawWait: Double = 2

    func validate() throws {
        if config != nil && pinDirectory != nil {
            throw ValidationError("give --config or --pin-directory, not both")
        }
        if let pinDirectory, !pinDirectory.hasPrefix("/") {
            throw ValidationError("--pin-directory must be an absolute path")
        }
        guard (0...60).contains(withdrawWait) else { throw ValidationError("--withdraw-wait must be 0-60 seconds") }
    }

    func run() throws {
        var stderr = StandardError()
        guard geteuid() == 0 else {
            print("tandem down: must run as root (removes BPF pins)", to: &stderr)
            throw ExitCode(1)
        }
        var pins = pinDirectory ?? "/sys/fs/bpf/tandem"
        var tables = Set<UInt32>()
        if let config {
            do {
                let loaded = try ConfigParser.loadValidated(path: config).config
                pins = loaded.pinDirectory
                if let table = loaded.announce?.table { tables.insert(table) }
            } catch let errors as ConfigErrors {
                print(errors.description, to: &stderr)
                throw ExitCode(1)
            }
        }
        if let holder = PinLock.holder(of: pins) {
            print(
                "tandem down: \(pins) is owned by a running tandem serve (\(holder)); stop it first, then run tandem down (nothing changed)",
                to: &stderr)
            throw ExitCode(1)
        }
        // The routes first: XDP forwards what the router still sends until
        // the withdrawal has reached it, so no connection falls in a hole.
        if BPFFS.isBPFFS(pins), let table = Dataplane.pinnedNodeState(pinRoot: pins)?.announceTable {
            tables.insert(table)
        }
        var withdrew = false
        for table in tables.sorted() {
            do {
                let vips = try RouteTable(id: table).deleteAll()
                if !vips.isEmpty {
                    print("withdrew \(vips.map(\.description).joined(separator: ", ")) from routing table \(table)")
                    withdrew = true
                }
            } catch {
                print("tandem down: \(error) (nothing detached)", to: &stderr)
                throw ExitCode(1)
            }
        }
        guard BPFFS.isBPFFS(pins), FileManager.default.fileExists(atPath: pins) else {
            print(withdrew ? "no pins at \(pins)" : "nothing to do: no pins at \(pins)")
            return
        }
        if withdrew && withdrawWait > 0 { usleep(UInt32(withdrawWait * 1_000_000)) }
        // Detach through the pinned link first: removing the pin alone
        // detaches only once nothing else holds the link.
        let linkPath = pins + "/link"
        var detached: String?
        if FileManager.default.fileExists(atPath: linkPath) {
            let link = try XDPLink.pinned(at: linkPath, interface: "?")
            let index = link.attachedIndex
            // An index names an interface only in the link's own network
            // namespace: name it only when that interface here runs the
            // link's program.
            let name = index.flatMap { i in
                link.programID != nil && Interface.xdpProgram(i) == link.programID ? Interface.name(i) : nil
            }
            do {
                try link.detach()
            } catch {
                print("tandem down: \(error) (nothing removed)", to: &stderr)
                throw ExitCode(1)
            }
            guard link.attachedIndex == nil else {
                print("tandem down: XDP is still attached after detaching \(linkPath) (nothing removed)", to: &stderr)
                throw ExitCode(1)
            }
            detached =
                name ?? index.map { "interface index \($0) (of another network namespace)" }
                ?? "an interface that is gone"
        }
        BPFFS.removeTree(pins)
        if FileManager.default.fileExists(atPath: pins) {
            print("tandem down: could not remove every pin under \(pins)", to: &stderr)
            throw ExitCode(1)
        }
        if let detached {
            print("XDP detached from \(detached); removed \(pins): maps, flows and records released")
        } else {
            print("removed \(pins): maps, flows and records released (no XDP link was pinned there)")
        }
    }
}
