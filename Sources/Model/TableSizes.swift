/// Entries of the dataplane's two LRU tables (`tables:` in the config),
/// fixed when the maps are created: changing them means starting over
/// (`tandem down`), since pinned maps cannot be resized.
public struct TableSizes: Equatable, Sendable, Codable {
    /// Established flows (5-tuple → real).
    public var flows: Int
    /// Persistence records (group, masked client → real).
    public var records: Int

    public static let defaultFlows = 262_144
    public static let defaultRecords = 1_048_576
    public static let `default` = TableSizes(flows: defaultFlows, records: defaultRecords)
    /// Bounds `tandem check` enforces: below, the LRU's per-CPU free lists
    /// would be most of the table; above, several GiB of kernel memory.
    public static let range = 1024...16_777_216

    public init(flows: Int, records: Int) {
        self.flows = flows
        self.records = records
    }
}
