import BPF
import CTestSupport
import Glibc
import SystemCalls

/// Frames from an AF_PACKET socket (Tests/CTestSupport/frames.c): the
/// generator where the kernel refuses `liveFrames` (BPF_PROG_TEST_RUN's
/// live-frames mode answers EPERM on some kernels, to root too). Call it
/// from inside the namespace whose interface it sends from.
public enum FrameSender {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Sends `count` copies of `frame` out of `interface`; with
    /// `newConnections` each gets the source address and port live_gen
    /// would give frame number `first` + k. Returns the frames sent.
    @discardableResult
    public static func send(
        interface: String, frame: [UInt8], count: Int, first: UInt64 = 0, newConnections: Bool = false
    ) throws -> Int {
        let sent = tandem_test_send_frames(
            interface, frame, UInt32(frame.count), UInt(count), UInt(first), newConnections ? 1 : 0)
        if sent < 0 {
            throw Failure(description: "frames out of \(interface): \(String(cString: strerror(Int32(-sent))))")
        }
        return sent
    }

    /// The kernel refused live-frames mode: `error` is `liveFrames`'s EPERM.
    public static func liveFramesRefused(_ error: Error) -> Bool {
        (error as? SystemCallError)?.errno == EPERM
    }
}
