@testable import Controller
import Dataplane
import Model
import Testing

/// The pressure log line: at most one a minute while the tables are
/// full or SYNs go unanswered, none when all is quiet.
@Suite("Pressure log line")
struct PressureWatchTests {
    let sizes = TableSizes.default

    @Test("quiet tables: no line; full-table writes: one line, then none for a minute, then the next")
    func oncePerMinute() {
        var watch = PressureWatch()
        let t0 = ContinuousClock.now
        var c = TableCounters(synStateless: 100, flowsWritten: 100, recordsWritten: 100)
        #expect(watch.observe(c, at: t0, sizes: sizes) == nil)
        c.flowsWritten += 50
        c.synStateless += 50
        #expect(watch.observe(c, at: t0 + .seconds(2), sizes: sizes) == nil, "no pressure")

        c.recordsWritten += 500
        c.recordsWrittenFull += 400
        let line = watch.observe(c, at: t0 + .seconds(4), sizes: sizes)
        #expect(
            line?.message == "tables under pressure: 400 records written into the full record table in the last 4 s")
        #expect(line?.metadata["records_full"] == "400")

        c.recordsWrittenFull += 400
        #expect(watch.observe(c, at: t0 + .seconds(30), sizes: sizes) == nil, "a minute has not passed")
        c.recordsWrittenFull += 100
        let next = watch.observe(c, at: t0 + .seconds(64), sizes: sizes)
        #expect(next?.metadata["records_full"] == "500", "everything since the last line")
    }

    @Test("a SYN flood without full tables: far more SYNs than handshakes is logged")
    func synFlood() {
        var watch = PressureWatch()
        let t0 = ContinuousClock.now
        var c = TableCounters()
        _ = watch.observe(c, at: t0, sizes: sizes)
        c.synStateless = 3_000_000
        c.flowsWritten = 40
        let line = watch.observe(c, at: t0 + .seconds(10), sizes: sizes)
        #expect(
            line?.message
                == "tables under pressure: 3000000 SYNs given no state against 40 handshakes completed in the last 10 s"
        )
    }
}
