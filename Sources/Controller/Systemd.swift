import CDaemon

/// Tells systemd (a `Type=notify` unit) how the daemon is doing; does
/// nothing when not started by systemd.
enum Systemd {
    /// XDP is attached and the first round of health checks is done.
    static func ready(status: String) { _ = tandem_sd_notify("READY=1\nSTATUS=\(status)") }

    /// SIGTERM or SIGINT arrived: stopping.
    static func stopping() { _ = tandem_sd_notify("STOPPING=1") }

    /// A reload (SIGHUP) started; `reloaded` ends it.
    static func reloading() { _ = tandem_sd_notify("RELOADING=1") }
    static func reloaded(status: String) { _ = tandem_sd_notify("READY=1\nSTATUS=\(status)") }
}
