import CLibBPF
import Glibc

/// The BPF filesystem where maps, programs and links are pinned.
public enum BPFFS {
    /// Makes sure `directory` exists on a bpffs, mounting one at /sys/fs/bpf
    /// (or at the directory's own mount point) when none is there.
    public static func prepare(directory: String) throws {
        if !isBPFFS(directory) {
            let root = mountPoint(for: directory)
            try? makeDirectories(root)
            if !isBPFFS(root) {
                _ = try root.withCString { rootPath in
                    try check("mount bpffs on", root, hint: "are you root?", reports: .minusOneAndErrno) {
                        mount("bpf", rootPath, "bpf", 0, nil)
                    }
                }
            }
        }
        try makeDirectories(directory)
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

    static func mountPoint(for path: String) -> String {
        path.hasPrefix("/sys/fs/bpf") ? "/sys/fs/bpf" : path
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
            do {
                _ = try built.withCString { path in
                    try check("create directory", built, reports: .minusOneAndErrno) { mkdir(path, 0o700) }
                }
            } catch let error as BPFError where error.errno == EEXIST {
                continue
            }
        }
    }
}
