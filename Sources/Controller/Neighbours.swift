import Configuration
import Control
import Model
import Foundation
import NIOCore
import NIOPosix

/// Finds each real's MAC address in the kernel's neighbour table, as `ip`
/// shows it. DSR sends frames straight to the real, so every real must be
/// on-link on the dataplane's interface; resolution is triggered by a UDP
/// datagram to the discard port when the table has no entry yet.
///
/// `ip` runs as a subprocess that the calling thread waits for, so lookups
/// are offloaded to NIO's thread pool, never run on the cooperative pool
/// that health transitions and control requests need.
struct Neighbours {
    let interface: String
    let group: any EventLoopGroup

    /// The MAC of every address that answers within `timeout`; those that
    /// do not are left out (the caller keeps them out of service). A real
    /// that is not on this link at all is an error.
    func resolve(_ addresses: Set<IPAddress>, timeout: Duration = .seconds(3)) async throws -> [IPAddress: MACAddress] {
        let sorted = addresses.sorted()
        var found = try await offload { [self] in
            var found: [IPAddress: MACAddress] = [:]
            for address in sorted {
                try checkOnLink(address)
                if let mac = try lookup(address) { found[address] = mac }
            }
            return found
        }
        var missing = addresses.filter { found[$0] == nil }
        guard !missing.isEmpty else { return found }
        for address in missing { await poke(address) }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while !missing.isEmpty, clock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            let waiting = missing
            let more = try await offload { [self] in
                try waiting.reduce(into: [IPAddress: MACAddress]()) { more, address in
                    more[address] = try lookup(address)
                }
            }
            found.merge(more) { _, new in new }
            missing.subtract(more.keys)
        }
        return found
    }

    /// A real behind a router cannot be reached by rewriting MACs.
    private func checkOnLink(_ address: IPAddress) throws {
        let routes = try Self.ipJSON(["route", "get", address.description])
        guard let route = routes.first else {
            throw ControlError("real \(address): no route (see 'ip route get \(address)')")
        }
        let dev = route["dev"] as? String ?? "?"
        if let gateway = route["gateway"] as? String {
            throw ControlError(
                "real \(address) is not on-link: the kernel routes it via \(gateway) dev \(dev); direct server return needs every real on \(interface)'s link"
            )
        }
        if dev != interface, route["type"] as? String != "local" {
            throw ControlError(
                "real \(address) is reached through \(dev), not \(interface): direct server return needs every real on \(interface)'s link"
            )
        }
        if route["type"] as? String == "local" {
            throw ControlError("real \(address) is an address of this host, not a real server")
        }
    }

    private func lookup(_ address: IPAddress) throws -> MACAddress? {
        let entries = try Self.ipJSON(["neigh", "show", "to", address.description, "dev", interface])
        for entry in entries {
            let states = entry["state"] as? [String] ?? []
            if states.contains("FAILED") || states.contains("INCOMPLETE") { continue }
            if let text = entry["lladdr"] as? String, let mac = MACAddress(text) { return mac }
        }
        return nil
    }

    /// Sends one byte to the discard port: the kernel resolves the MAC to send it.
    private func poke(_ address: IPAddress) async {
        guard let target = try? SocketAddress(ipAddress: address.description, port: 9) else { return }
        let bind = address.family == .inet ? "0.0.0.0" : "::"
        guard let channel = try? await DatagramBootstrap(group: group).bind(host: bind, port: 0).get() else { return }
        let envelope = AddressedEnvelope(remoteAddress: target, data: ByteBuffer(bytes: [0]))
        try? await channel.writeAndFlush(envelope).get()
        try? await channel.close().get()
    }

    /// Runs `ip -j ARGS` and parses its JSON array.
    static func ipJSON(_ args: [String]) throws -> [[String: Any]] {
        let process = Process()
        process.executableURL = URL(
            fileURLWithPath: ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
                .first { FileManager.default.isExecutableFile(atPath: $0) } ?? "/usr/sbin/ip")
        process.arguments = ["-j"] + args
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let text = String(decoding: errors, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw ControlError(
                "ip \(args.joined(separator: " ")): \(text.isEmpty ? "exit \(process.terminationStatus)" : text)")
        }
        guard !data.isEmpty else { return [] }
        return (try? JSONSerialization.jsonObject(with: data)) as? [[String: Any]] ?? []
    }
}
