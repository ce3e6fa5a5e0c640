import Model

/// A model the dataplane took: what the controller tells its observers
/// after each successful apply, in apply order, and once when an observer
/// registers (the model running then). What follows a commit (announcing
/// the VIPs, naming synced records by the rules of the model) hangs here,
/// not after each change by hand.
public struct Committed: Sendable {
    /// What the maps hold now.
    public let model: DataplaneModel
    /// The dataplane's apply count at this commit: rules derived from the
    /// model are stale once it moved.
    public let version: UInt64

    public init(model: DataplaneModel, version: UInt64) {
        self.model = model
        self.version = version
    }
}

/// Told of every `Committed`, on the controller's actor before the next
/// change: an observer must not block (no I/O beyond a netlink write).
public protocol CommitObserver: Sendable {
    func committed(_ commit: Committed)
}
