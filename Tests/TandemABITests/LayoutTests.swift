import Testing
import TandemABI

/// The XDP program (compiled for BPF) and Swift read the same bytes: these
/// sizes and offsets must match the C layout the BPF object was built with.
@Suite("ABI layout")
struct LayoutTests {
    @Test func serviceKey() {
        #expect(MemoryLayout<tandem_service_key>.size == 20)
        #expect(MemoryLayout<tandem_service_key>.offset(of: \.port) == 16)
        #expect(MemoryLayout<tandem_service_key>.offset(of: \.proto) == 18)
        #expect(MemoryLayout<tandem_service_key>.offset(of: \.af) == 19)
    }

    @Test func service() {
        #expect(MemoryLayout<tandem_service>.size == 72)
        #expect(MemoryLayout<tandem_service>.offset(of: \.prev_ring_id) == 56)
        #expect(MemoryLayout<tandem_service>.offset(of: \.ring_changed_ns) == 64)
        #expect(MemoryLayout<tandem_service>.offset(of: \.ring_len) == 12)
        #expect(MemoryLayout<tandem_service>.offset(of: \.scheduler) == 16)
        #expect(MemoryLayout<tandem_service>.offset(of: \.sorry_real) == 20)
        #expect(MemoryLayout<tandem_service>.offset(of: \.mask) == 24)
        #expect(MemoryLayout<tandem_service>.alignment == 8)
        #expect(MemoryLayout<tandem_service>.offset(of: \.persist_timeout_ns) == 40)
        #expect(MemoryLayout<tandem_service>.offset(of: \.hash_seed) == 48)
    }

    @Test func real() {
        #expect(MemoryLayout<tandem_real>.size == 32)
        #expect(MemoryLayout<tandem_real>.offset(of: \.mac) == 16)
        #expect(MemoryLayout<tandem_real>.offset(of: \.af) == 22)
        #expect(MemoryLayout<tandem_real>.offset(of: \.flags) == 23)
        #expect(MemoryLayout<tandem_real>.offset(of: \.rec_gen) == 24)
        #expect(MemoryLayout<tandem_real>.offset(of: \.flow_gen) == 28)
    }

    @Test func flowAndPersistence() {
        #expect(MemoryLayout<tandem_flow_key>.size == 40)
        #expect(MemoryLayout<tandem_flow_key>.offset(of: \.sport) == 32)
        #expect(MemoryLayout<tandem_flow_key>.offset(of: \.proto) == 36)
        #expect(MemoryLayout<tandem_flow>.size == 24)
        #expect(MemoryLayout<tandem_flow>.offset(of: \.svc_gen) == 12)
        #expect(MemoryLayout<tandem_flow>.offset(of: \.backend) == 16)
        #expect(MemoryLayout<tandem_port_filter>.size == 8192)
        #expect(MemoryLayout<tandem_persist_key>.size == 24)
        #expect(MemoryLayout<tandem_persist_key>.offset(of: \.client) == 4)
        #expect(MemoryLayout<tandem_persist_key>.offset(of: \.af) == 20)
        #expect(MemoryLayout<tandem_persist>.size == 32)
        #expect(MemoryLayout<tandem_persist>.offset(of: \.origin) == 12)
        #expect(MemoryLayout<tandem_persist>.offset(of: \.written_ns) == 24)
        #expect(MemoryLayout<tandem_persist>.offset(of: \.last_seen_ns) == 16)
        #expect(MemoryLayout<tandem_record_event>.size == 40)
        #expect(MemoryLayout<tandem_record_event>.offset(of: \.real) == 24)
        #expect(MemoryLayout<tandem_record_event>.offset(of: \.written_ns) == 32)
        #expect(MemoryLayout<tandem_backend_key>.size == 8)
        #expect(MemoryLayout<tandem_backend>.size == 16)
        #expect(MemoryLayout<tandem_backend>.offset(of: \.index) == 8)
        #expect(MemoryLayout<tandem_counters>.size == 48)
        #expect(MemoryLayout<tandem_syn_choice>.size == 8)
        #expect(MemoryLayout<tandem_table_fill>.size == 24)
        #expect(MemoryLayout<tandem_ring>.size == Int(TANDEM_RING_SIZE) * 4)
        #expect(MemoryLayout<tandem_node>.size == 8)
        #expect(MemoryLayout<tandem_node>.offset(of: \.announce_table) == 4)
    }

    @Test("the client hash reads the seed, not the node-local group id")
    func clientHashIgnoresGroup() {
        var a = tandem_persist_key()
        a.group = 1
        a.client = (198, 18, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        a.af = 4
        var b = a
        b.group = 2
        #expect(tandem_hash_client(7, &a) == tandem_hash_client(7, &b))
        #expect(tandem_hash_client(7, &a) != tandem_hash_client(8, &a))
        var c = a
        c.client.3 = 2
        #expect(tandem_hash_client(7, &a) != tandem_hash_client(7, &c))
    }
}
