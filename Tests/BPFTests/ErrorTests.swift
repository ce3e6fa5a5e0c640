import BPF
import Dataplane
import Glibc
import SystemCalls
import TestSupport
import TestTraits
import Testing

/// Failures carry the errno of the call that failed, not a stale or made-up one.
@Suite("BPF errors name the failing call's errno")
struct ErrorTests {
    @Test("an unknown interface is ENODEV, from if_nametoindex")
    func unknownInterface() throws {
        let error = try #require(throws: SystemCallError.self) { try Interface.index("tdm-no-such-if") }
        #expect(error.errno == ENODEV)
        #expect(error.description == "cannot find interface tdm-no-such-if: No such device (see 'ip link')")
    }

    @Test(
        "an unknown namespace is ENOENT, from open",
        .privileged)
    func unknownNamespace() throws {
        let error = try #require(throws: SystemCallError.self) { try NetworkNamespace.enter("tandem-no-such-ns") }
        #expect(error.errno == ENOENT)
        #expect(error.description.hasPrefix("cannot open network namespace /run/netns/tandem-no-such-ns: No such file"))
    }

    @Test(
        "map errors come from libbpf's return value",
        .privileged)
    func mapErrors() throws {
        let missing = "/sys/fs/bpf/tandem-test-\(getpid())-no-such-map"
        let noPin = try #require(throws: SystemCallError.self) { try BPFMap<UInt32, UInt32>.pinned(at: missing) }
        #expect(noPin.errno == ENOENT)

        let pins = "/sys/fs/bpf/tandem-test-\(getpid())-errors"
        defer { BPFFS.removeTree(pins) }
        let object = try BPFObject(bytes: Objects.tandem, name: "tandem", pinRoot: pins)
        try object.load()
        // backends: hash map, (service, real) -> (state, weight, index, pad): 8 and 16 bytes.
        let backends = try object.map("backends", key: UInt64.self, value: SIMD2<UInt64>.self)
        #expect(try backends.delete(7) == false)  // ENOENT: not there
        try backends.update(7, SIMD2(1, 0))
        #expect(try backends.delete(7) == true)
        // svc_gens: an array map; its entries cannot be deleted (EINVAL).
        let generations = try object.map("svc_gens", key: UInt32.self, value: UInt32.self)
        let error = try #require(throws: SystemCallError.self) { try generations.delete(0) }
        #expect(error.errno == EINVAL)
        #expect(error.description == "cannot delete from map svc_gens: Invalid argument")
    }
}
