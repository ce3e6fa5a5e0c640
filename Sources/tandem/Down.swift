import ArgumentParser
import BPF
import Foundation
import Glibc

/// `tandem down`: stop forwarding and forget all state.
struct Down: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Detach the XDP program and remove the pinned maps, flows and records.")

    @Option(help: "The bpffs directory holding Tandem's pins.")
    var pinDirectory = "/sys/fs/bpf/tandem"

    func validate() throws {
        guard pinDirectory.hasPrefix("/") else { throw ValidationError("--pin-directory must be an absolute path") }
    }

    func run() throws {
        guard geteuid() == 0 else {
            var stderr = StandardError()
            print("tandem down: must run as root (removes BPF pins)", to: &stderr)
            throw ExitCode(1)
        }
        guard BPFFS.isBPFFS(pinDirectory), FileManager.default.fileExists(atPath: pinDirectory) else {
            print("nothing to do: no pins at \(pinDirectory)")
            return
        }
        // A pinned link holds the XDP attachment; removing its pin detaches
        // the program once no process holds the link.
        BPFFS.removeTree(pinDirectory)
        print("removed \(pinDirectory): XDP detached, maps released")
    }
}
