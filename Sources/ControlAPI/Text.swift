import Foundation
import Model

/// Human output of the read commands, in the manner of `ipvsadm -Ln`.
public enum Text {
    public static func status(_ s: StatusReport) -> String {
        var out =
            "Tandem on \(s.interface) (\(s.xdpMode) XDP), up \(duration(s.uptimeSeconds)), config \(s.configPath)\n"
        out += "flows \(s.flows)/\(s.flowCapacity)  records \(s.records)/\(s.recordCapacity)\n"
        out += pressure(s.pressure)
        if let c = s.checks { out += checks(c) + "\n" }
        out += announcements(s)
        out += syncPeers(s)
        out += "Prot LocalAddress:Port Scheduler Flags\n"
        // Real lines share columns across services; service lines run free.
        var rows: [[String]] = [
            ["  -> RemoteAddress:Port", "Weight", "State", "Health", "Records", "Packets", "Last check"]
        ]
        var serviceLines: [Int: String] = [:]
        for svc in s.services {
            var line = "\(svc.proto.uppercased())  \(hostPort(svc.vip, svc.port)) \(svc.scheduler)"
            if let p = svc.persistence { line += " persistent \(p)" }
            if !svc.follows.isEmpty { line += " follows \(svc.follows.joined(separator: ","))" }
            if svc.dropOnFailure { line += " drop-on-failure" }
            line +=
                "  (\(svc.name))  \(rate(svc.rates.packetsPerSecond)) pkt/s \(rate(svc.rates.newFlowsPerSecond)) new/s"
            if let digest = svc.ringDigest { line += "  ring \(digest)" }
            serviceLines[rows.count] = line
            for r in svc.reals {
                rows.append([
                    "  -> \(hostPort(r.address, r.port))", "\(r.weight)", r.state, r.health, "\(r.records)",
                    "\(r.counters.packets)", r.lastCheck ?? ""
                ])
            }
            if let sorry = svc.sorry { rows.append(["  sorry \(sorry)", "", "", "", "", "", ""]) }
        }
        let lines = table(rows).split(separator: "\n", omittingEmptySubsequences: false)
        for (i, line) in lines.enumerated() where i < rows.count {
            if let service = serviceLines[i] { out += service + "\n" }
            out += line + "\n"
        }
        return out
    }

    /// "checks 10000/s done of 10000/s scheduled (10000 probes), latest round (1s): 2ms late, 0 missed".
    static func checks(_ c: ChecksReport) -> String {
        var line =
            "checks \(String(format: "%.0f", c.donePerSecond))/s done of \(String(format: "%.0f", c.scheduledPerSecond))/s scheduled (\(c.probes) probes), "
            + "latest round (\(DurationText.format(UInt64(c.roundSeconds * 1e9)))): "
            + "\(DurationText.format(UInt64(c.latenessSeconds * 1e9))) late, \(c.missed) missed"
        if c.missedTotal > 0 { line += " (\(c.missedTotal) since start)" }
        if c.behind { line += "  BEHIND SCHEDULE" }
        if let tcp = c.tcpChecks { line += "\ntcp checks: \(tcp)" }
        return line
    }

    /// The node's name and each VIP's route in the announce table.
    static func announcements(_ s: StatusReport) -> String {
        var out = "node: \(s.node)  announce: "
        out += s.announceTable.map { "table \($0)" } ?? "off (no announce table configured)"
        out += s.drained ? "  DRAINED (tandem node resume announces again)\n" : "\n"
        guard s.announceTable != nil, !s.vips.isEmpty else { return out }
        var rows = [["VIP", "Announced", "Services", "Why not"]]
        for v in s.vips {
            rows.append([v.vip, v.announced ? "yes" : "no", v.services.joined(separator: ","), v.reason ?? ""])
        }
        return out + table(rows)
    }

    /// Record sync: each peer, up or down, counts and lag.
    static func syncPeers(_ s: StatusReport) -> String {
        guard let peers = s.sync else { return "" }
        var rows = [["Sync peer", "Node", "State", "Sent", "Received", "Installed", "Rejected", "Lag"]]
        for p in peers {
            let rejected = p.rejected.values.reduce(0, +)
            let why = p.rejected.filter { $0.value > 0 }.sorted { $0.key < $1.key }
                .map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            rows.append([
                p.endpoint, p.node ?? "-", p.up ? "up" : "down", "\(p.recordsSent)", "\(p.recordsReceived)",
                "\(p.recordsInstalled)", rejected == 0 ? "0" : "\(rejected) (\(why))",
                p.lagMs.map { String(format: "%.2fms", $0) } ?? "-"
            ])
        }
        let unsent = s.syncUnsent.map {
            "record writes not sent to the peers: \($0)\($0 > 0 ? " (the event ring buffer was full; a peer gets them at its next pull or the client's next write)" : "")\n"
        }
        return table(rows) + (unsent ?? "")
    }

    /// Writes that found a table full pushed out live clients, or soon
    /// will; SYNs given no state are what a SYN flood costs.
    static func pressure(_ p: TablePressure) -> String {
        "written into a full table: flows \(p.flowsWrittenFull)/\(p.flowsWritten)  "
            + "records \(p.recordsWrittenFull)/\(p.recordsWritten)  SYNs given no state \(p.synStateless)\n"
    }

    public static func stats(_ s: StatsReport) -> String {
        var rows: [[String]] = [
            [
                "SERVICE", "PACKETS", "BYTES", "NEW FLOWS", "PERSIST HITS", "FOLLOW HITS", "DROPS",
                "PKTS/S", "NEW/S"
            ]
        ]
        for svc in s.services {
            let c = svc.counters
            rows.append([
                svc.name, "\(c.packets)", "\(c.bytes)", "\(c.newFlows)", "\(c.persistHits)", "\(c.followHits)",
                "\(c.drops)", rate(svc.rates.packetsPerSecond), rate(svc.rates.newFlowsPerSecond)
            ])
        }
        var out = table(rows)
        out += "\nflows \(s.flows)/\(s.flowCapacity)  records \(s.records)/\(s.recordCapacity)\n"
        out += pressure(s.pressure)
        let reasons = s.packets.filter { $0.value > 0 }.sorted { $0.key < $1.key }
        out +=
            "packets not forwarded: "
            + (reasons.isEmpty ? "none" : reasons.map { "\($0.key) \($0.value)" }.joined(separator: ", ")) + "\n"
        return out
    }

    public static func records(_ records: [RecordReport]) -> String {
        if records.isEmpty { return "no records\n" }
        return table(recordRows(records, header: true)) + recordCount(records.count)
    }

    /// A listing too long for one reply, a batch at a time: the first
    /// batch sets the column widths (with the header), later batches keep
    /// them; `recordCount` closes it.
    public static func recordBatch(_ records: [RecordReport], widths: inout [Int]?) -> String {
        let rows = recordRows(records, header: widths == nil)
        if widths == nil { widths = columnWidths(rows) }
        return table(rows, widths: widths!)
    }

    public static func recordCount(_ count: Int) -> String { "\(count) record\(count == 1 ? "" : "s")\n" }

    static func recordRows(_ records: [RecordReport], header: Bool) -> [[String]] {
        var rows: [[String]] = header ? [["GROUP", "CLIENT", "REAL", "LAST SERVICE", "AGE", "NODE", "SERVICES"]] : []
        for r in records {
            rows.append([
                "\(r.group)", r.client, r.real, r.service, duration(r.ageSeconds), r.node ?? "-",
                r.services.joined(separator: ",")
            ])
        }
        return rows
    }

    static func hostPort(_ address: String, _ port: Int) -> String {
        address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)"
    }

    static func rate(_ value: Double) -> String { String(format: "%.1f", value) }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded(.down))
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m\(s % 60)s" }
        return "\(s / 3600)h\((s % 3600) / 60)m"
    }

    /// Left-aligned columns, two spaces apart; the last column is free.
    static func table(_ rows: [[String]]) -> String { table(rows, widths: columnWidths(rows)) }

    static func columnWidths(_ rows: [[String]]) -> [Int] {
        let columns = rows.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: columns)
        for row in rows {
            for (i, cell) in row.enumerated() where i < columns - 1 { widths[i] = max(widths[i], cell.count) }
        }
        return widths
    }

    static func table(_ rows: [[String]], widths: [Int]) -> String {
        rows.map { row in
            row.enumerated().map { i, cell in
                // Never cut: a cell wider than its column (a later batch) just pushes the row.
                i == row.count - 1 || cell.count >= widths[i]
                    ? cell : cell + String(repeating: " ", count: widths[i] - cell.count)
            }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        }.joined(separator: "\n") + "\n"
    }
}
