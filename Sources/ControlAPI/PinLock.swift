import Control
import Foundation
import Glibc
import SystemCalls

/// One daemon per pin directory: `tandem serve` holds an exclusive lock
/// (flock) on a file named after the directory, which also says who holds
/// it. A second daemon on the same pins is refused with that line, and
/// `tandem down` refuses while the lock is held. The kernel drops the lock
/// when the holder exits, however it exits.
public final class PinLock: Sendable {
    public static let directory = "/run/tandem/locks"
    let handle: FileHandle

    private init(handle: FileHandle) { self.handle = handle }

    /// The lock file for `pins`: its path with every "/" spelled "-".
    public static func path(for pins: String) -> String {
        let name = pins.split(separator: "/").joined(separator: "-")
        return "\(directory)/pins-\(name.isEmpty ? "root" : name).lock"
    }

    /// Takes the lock for `pins`, or throws a line naming the holder.
    public static func acquire(pins: String, socket: String, config: String) throws -> PinLock {
        let handle = try open(pins)
        do throws(SystemCallError) {
            try systemCall("lock", path(for: pins), reports: .minusOneAndErrno) {
                flock(handle.fileDescriptor, LOCK_EX | LOCK_NB)
            }
        } catch {
            let owner =
                String(data: (try? handle.readToEnd()) ?? Data(), encoding: .utf8)?
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            try? handle.close()
            guard error.errno == EWOULDBLOCK else { throw ControlError(error.description) }
            throw ControlError(
                "\(pins) is already used by another tandem serve (\(owner.isEmpty ? "owner unknown" : owner)); one daemon per pin directory: stop it first, or give this one its own pin-directory"
            )
        }
        let note = "pid \(getpid()), socket \(socket), config \(config)\n"
        try handle.truncate(atOffset: 0)
        try handle.write(contentsOf: Data(note.utf8))
        return PinLock(handle: handle)
    }

    /// Who holds the lock for `pins` ("pid 12, socket ..., config ..."),
    /// or nil when no daemon does.
    public static func holder(of pins: String) -> String? {
        guard let handle = try? open(pins) else { return nil }
        defer { try? handle.close() }
        if flock(handle.fileDescriptor, LOCK_EX | LOCK_NB) == 0 {
            flock(handle.fileDescriptor, LOCK_UN)
            return nil
        }
        let owner = String(data: (try? handle.readToEnd()) ?? Data(), encoding: .utf8)?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return owner?.isEmpty == false ? owner : "owner unknown"
    }

    private static func open(_ pins: String) throws -> FileHandle {
        try FileManager.default.createDirectory(
            atPath: directory, withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700])
        let file = path(for: pins)
        do throws(SystemCallError) {
            let fd = try systemCall("open the lock", path: file, reports: .minusOneAndErrno) {
                Glibc.open($0, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            }
            return FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        } catch {
            throw ControlError(error.description)
        }
    }
}
