/// Settings that a running `tandem serve` holds in what it built at the
/// start (the attached program, the maps' sizes, the sockets it bound, the
/// node name peers know it by): a reload that changes one is refused
/// whole, since applying the rest would leave a config that the daemon
/// does not run.
extension Config {
    /// The restart-only keys whose value differs in `next`, as the config
    /// file spells them, in file order; empty when a reload may apply `next`.
    public func restartOnlyChanges(to next: Config) -> [String] {
        var changed: [String] = []
        if next.interface != interface { changed.append("interface") }
        if next.xdpMode != xdpMode { changed.append("xdp-mode") }
        if next.pinDirectory != pinDirectory { changed.append("pin-directory") }
        if next.socket != socket { changed.append("socket") }
        if next.metrics != metrics { changed.append("metrics") }
        if next.node != node { changed.append("node") }
        if next.tables != tables { changed.append("tables") }
        if next.sync?.listen != sync?.listen { changed.append("sync.listen") }
        if next.sync?.peers != sync?.peers { changed.append("sync.peers") }
        return changed
    }
}
