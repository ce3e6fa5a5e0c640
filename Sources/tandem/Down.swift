import ArgumentParser
import BPF
import Configuration
import Controller
import Foundation
import Glibc

/// `tandem down`: stop forwarding and forget all state.
struct Down: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Detach the XDP program and remove the pinned maps, flows and records.",
        discussion: """
            Refused while a tandem serve owns the pins: stop it first (systemctl stop tandem, or SIGTERM), \
            which leaves forwarding running, then run tandem down.
            """)

    @Option(name: .shortAndLong, help: "The config file; its pin-directory is used.")
    var config: String?

    @Option(help: "The bpffs directory holding Tandem's pins (default /sys/fs/bpf/tandem).")
    var pinDirectory: String?

    func validate() throws {
        if config != nil && pinDirectory != nil {
            throw ValidationError("give --config or --pin-directory, not both")
        }
        if let pinDirectory, !pinDirectory.hasPrefix("/") {
            throw ValidationError("--pin-directory must be an absolute path")
        }
    }

    func run() throws {
        var stderr = StandardError()
        guard geteuid() == 0 else {
            print("tandem down: must run as root (removes BPF pins)", to: &stderr)
            throw ExitCode(1)
        }
        var pins = pinDirectory ?? "/sys/fs/bpf/tandem"
        if let config {
            do {
                pins = try ConfigParser.loadValidated(path: config).config.pinDirectory
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
        guard BPFFS.isBPFFS(pins), FileManager.default.fileExists(atPath: pins) else {
            print("nothing to do: no pins at \(pins)")
            return
        }
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
