import CLibBPF
import Glibc
import SystemCalls

/// The BPF filesystem where maps, programs and links are pinned.
public enum BPFFS {
    /// Makes sure `directory` exists on a bpffs; true when it was created
    /// now (nothing to adopt there). A bpffs is mounted only at /sys/fs/bpf
    /// itself, when the system has none there; any other directory must
    /// already be on a bpffs: mounting one over it would hide what it holds.
    @discardableResult
    public static func prepare(directory: String) throws -> Bool {
        if !isBPFFS(directory) {
            let root = "/sys/fs/bpf"
            guard directory == root || directory.hasPrefix(root + "/"), !isBPFFS(root) else {
                throw SystemCallError(
                    "use pin directory", directory, errno: ENOTSUP,
                    hint: "it is not on a BPF filesystem; use a directory under /sys/fs/bpf, "
                        + "or mount one there first: mount -t bpf bpf DIR")
            }
            try systemCall("mount bpffs on", path: root, hint: "are you root?", reports: .minusOneAndErrno) {
                mount("bpf", $0, "bpf", 0, nil)
            }
        }
        let existed = access(directory, F_OK) == 0
        try makeDirectories(directory)
        return !existed
    }

    /// True when `path` (or its nearest existing parent) is on a bpffs.
    public static func isBPFFS(_ path: String) -> Bool {
        var stats = statfs()
        var probe = path
        while !probe.isEmpty {
            if statfs(probe, &stats) == 0 {
                return UInt(bitPattern: Int(stats.f_type)) == UInt(BPF_FS_MAGIC)
            }
            probe = parent(of: probe)
        }
        return false
    }

    /// Removes every pin below `directory`, then the directory itself.
    public static func removeTree(_ directory: String) {
        guard let dir = opendir(directory) else { return }
        var entries: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { entries.append(name) }
        }
        closedir(dir)
        for name in entries {
            let path = directory + "/" + name
            if unlink(path) != 0 { removeTree(path) }
        }
        rmdir(directory)
    }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else {
            return path == "/" ? "" : "/"
        }
        return String(path[..<slash])
    }

    static func makeDirectories(_ path: String) throws {
        var built = ""
        for part in path.split(separator: "/") {
            built += "/" + part
            do throws(SystemCallError) {
                try systemCall("create directory", path: built, reports: .minusOneAndErrno) { mkdir($0, 0o700) }
            } catch {
                guard error.errno == EEXIST else { throw error }
            }
        }
    }
}
