import Control
import Foundation
import Glibc
import SystemCalls

/// The control socket lives in a directory only root can write: anyone
/// who could write there could replace the socket and answer root's
/// `tandem status` with a story of their own.
package enum SocketPath {
    /// Creates `directory` (0700) if needed, and refuses one that is not
    /// a directory owned by root and closed to other writers.
    package static func prepareDirectory(_ directory: String) throws {
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700])
        } catch {
            throw ControlError("cannot create the socket directory \(directory): \(reason(error))")
        }
        if let problem = unsafe(directory, isDirectory: true) {
            throw ControlError(
                "the socket directory \(directory) \(problem): another user could replace the socket; use a directory only root can write, such as /run/tandem"
            )
        }
    }

    /// Why the daemon at `path` cannot be trusted or reached, if it cannot.
    package static func clientProblem(_ path: String) -> String? {
        var st = stat()
        do throws(SystemCallError) {
            try systemCall("reach", path: path, reports: .minusOneAndErrno) { stat($0, &st) }
        } catch {
            switch error.errno {
            case EACCES: return "permission denied on \(path): the control socket is root's (run as root)"
            case ENOENT: return nil  // not running; said by the caller
            default: return error.description  // "cannot reach PATH: ..."
            }
        }
        let directory = (path as NSString).deletingLastPathComponent
        if let problem = unsafe(directory, isDirectory: true) ?? unsafe(path, isDirectory: false) {
            return "refusing to talk to \(path): it \(problem), so its answers could come from anyone"
        }
        return nil
    }

    /// "is writable by others (mode 1777)" and the like, or nil when fine.
    package static func unsafe(_ path: String, isDirectory: Bool) -> String? {
        var st = stat()
        do throws(SystemCallError) {
            try systemCall("examine", path: path, reports: .minusOneAndErrno) { lstat($0, &st) }
        } catch {
            return "cannot be examined (\(error.reason))"
        }
        let type = st.st_mode & S_IFMT
        if isDirectory && type != S_IFDIR { return "is not a directory" }
        if !isDirectory && type != S_IFSOCK { return "is not a socket" }
        if st.st_uid != 0 && st.st_uid != geteuid() { return "belongs to uid \(st.st_uid), not root" }
        if isDirectory && st.st_mode & 0o022 != 0 {
            return "is writable by others (mode \(String(st.st_mode & 0o7777, radix: 8)))"
        }
        return nil
    }

    /// The system's words for a Foundation file error, not its domain and code.
    package static func reason(_ error: any Error) -> String {
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        switch ns.code {
        case NSFileWriteNoPermissionError, NSFileReadNoPermissionError: return "permission denied"
        case NSFileWriteOutOfSpaceError: return "no space left"
        case NSFileWriteVolumeReadOnlyError: return "read-only file system"
        default: return ns.localizedDescription
        }
    }
}
