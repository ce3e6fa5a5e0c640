import Foundation

/// The compiled BPF objects, embedded at build time from bpf/*.bpf.c.
public enum Objects {
    /// The dataplane: SEC("xdp") tandem_xdp and its maps.
    public static var tandem: [UInt8] { decode(EmbeddedObjects.tandem) }
    /// Reference programs: baseline_swap (the benchmark floor) and xdp_pass.
    public static var baseline: [UInt8] { decode(EmbeddedObjects.baseline) }
    /// Benchmark entry points sharing the dataplane's maps (bpf/bench.bpf.c).
    public static var bench: [UInt8] { decode(EmbeddedObjects.bench) }
    /// The live-packet benchmark's generator and sink (bpf/live.bpf.c).
    public static var live: [UInt8] { decode(EmbeddedObjects.live) }

    static func decode(_ base64: String) -> [UInt8] {
        [UInt8](Data(base64Encoded: base64)!)
    }
}
