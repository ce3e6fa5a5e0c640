import Model

/// A model the dataplane took: what the controller tells its observers
/// after each successful apply, in apply order, and once when an observer
/// registers (the model running then). What follows a commit (announcing
/// the VIPs, naming synced records by the rules of the model) hangs here,
/// not after each change by hand.
public struct Committed: Sendable {
    /// What the maps hold now.
    public let model: DataplaneModel

    public init(model: DataplaneModel) { self.model = model }
}

/// Told of every `Committed`, on the controller's actor before the next
/// change: an observer must not block for long (the announcer's netlink
/// writes, and the sync feed's start, are the most any does).
public protocol CommitObserver: Sendable {
    func committed(_ commit: Committed)
}
