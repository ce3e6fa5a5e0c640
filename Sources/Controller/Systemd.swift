import CDaemon

/// Tells systemd (a `Type=notify` unit) how the daemon is doing; does
/// nothing when not started by systemd.
enum Systemd {
    /// XDP is attached, the control socket answers, the first round of
    /// health checks is done.
    static func ready(status: String) { _ = tandem_sd_notify("READY=1\nSTATUS=\(status)") }

    /// SIGTERM or SIGINT arrived: stopping.
    static func stopping() { _ = tandem_sd_notify("STOPPING=1") }
}
