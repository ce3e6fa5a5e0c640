import Glibc
import SystemCalls

/// The shared secret of record sync. A secret others can read is no
/// secret: the file must belong to the user running tandem and carry no
/// group or other permission bits, as ssh asks of its keys.
public enum SecretFile {
    public struct Problem: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    static let maxBytes = 4096

    public static func read(_ path: String) throws -> [UInt8] {
        let fd: Int32
        do throws(SystemCallError) {
            fd = try systemCall("read", path: path, reports: .minusOneAndErrno) {
                open($0, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
            }
        } catch {
            throw Problem(description: "cannot read \(Limits.printable(path)): \(error.reason)")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            throw Problem(description: "\(Limits.printable(path)) is not a regular file")
        }
        if st.st_uid != geteuid() {
            throw Problem(
                description:
                    "\(Limits.printable(path)) belongs to uid \(st.st_uid), not to the user running tandem (uid \(geteuid())); chown it"
            )
        }
        if st.st_mode & 0o077 != 0 {
            throw Problem(
                description:
                    "\(Limits.printable(path)) can be read or written by others (mode \(String(st.st_mode & 0o777, radix: 8))); chmod 600 it"
            )
        }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1024)
        let size = buffer.count
        while bytes.count <= maxBytes {
            let n: Int
            do throws(SystemCallError) {
                n = try systemCall("read", path, reports: .minusOneAndErrno) { Glibc.read(fd, &buffer, size) }
            } catch {
                throw Problem(description: "cannot read \(Limits.printable(path)): \(error.reason)")
            }
            if n == 0 { break }
            bytes += buffer[..<n]
        }
        if bytes.count > maxBytes {
            throw Problem(
                description: "\(Limits.printable(path)) is longer than \(maxBytes) bytes; a secret is 32 to \(maxBytes)"
            )
        }
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        if bytes.count < Config.Sync.minSecretBytes {
            throw Problem(
                description:
                    "\(Limits.printable(path)) holds \(bytes.count) bytes; a secret needs at least \(Config.Sync.minSecretBytes) (e.g. 'openssl rand -hex 32 > \(Limits.printable(path))')"
            )
        }
        return bytes
    }
}
