import Foundation

/// BPF objects compiled from bpf/test/ for tests only.
public enum TestObjects {
    /// One XDP program, `rejected`, that the verifier refuses.
    public static var rejected: [UInt8] { [UInt8](Data(base64Encoded: EmbeddedObjects.rejected)!) }
}
