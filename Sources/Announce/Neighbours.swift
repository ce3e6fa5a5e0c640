import CDaemon
import Control
import Glibc
import Model
import NIOCore
import NIOPosix
import SystemCalls

/// Finds real servers' MAC addresses: the controller's view of ARP and NDP.
public protocol NeighbourResolver: Sendable {
    /// The MAC of every address that answers within `timeout`; those that
    /// do not are left out (the caller keeps them out of service). A real
    /// that is not on the interface's link at all is an error.
    func resolve(_ addresses: Set<IPAddress>, timeout: Duration) async throws -> [IPAddress: MACAddress]
}

extension NeighbourResolver {
    public func resolve(_ addresses: Set<IPAddress>) async throws -> [IPAddress: MACAddress] {
        try await resolve(addresses, timeout: .seconds(3))
    }
}

/// Finds each real's MAC address in the kernel's neighbour table, read
/// over rtnetlink (neigh.c). DSR sends frames straight to the real, so
/// every real must be on-link on the dataplane's interface; resolution is
/// triggered by a UDP datagram to the discard port when the table has no
/// entry yet.
///
/// Netlink reads block their thread (2 s at most), so lookups run on NIO's
/// thread pool, never on the cooperative pool that health transitions and
/// control requests need.
public struct Neighbours: NeighbourResolver {
    let interface: String
    let group: any EventLoopGroup

    public init(interface: String, group: any EventLoopGroup) {
        self.interface = interface
        self.group = group
    }

    public func resolve(_ addresses: Set<IPAddress>, timeout: Duration) async throws -> [IPAddress: MACAddress] {
        let sorted = addresses.sorted()
        var found = try await NIOThreadPool.singleton.runIfActive { [self] in
            for address in sorted { try checkOnLink(address) }
            return try lookup(sorted)
        }
        var missing = addresses.filter { found[$0] == nil }
        guard !missing.isEmpty else { return found }
        for address in missing { await poke(address) }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while !missing.isEmpty, clock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            let waiting = missing
            let more = try await NIOThreadPool.singleton.runIfActive { [self] in try lookup(waiting) }
            found.merge(more) { _, new in new }
            missing.subtract(more.keys)
        }
        return found
    }

    /// A real behind a router cannot be reached by rewriting MACs.
    func checkOnLink(_ address: IPAddress) throws {
        guard let route = try KernelRoute.get(address) else {
            throw ControlError("real \(address): no route (see 'ip route get \(address)')")
        }
        let dev = route.interface ?? "?"
        if let gateway = route.gateway {
            throw ControlError(
                "real \(address) is not on-link: the kernel routes it via \(gateway) dev \(dev); direct server return needs every real on \(interface)'s link"
            )
        }
        if dev != interface, !route.local {
            throw ControlError(
                "real \(address) is reached through \(dev), not \(interface): direct server return needs every real on \(interface)'s link"
            )
        }
        if route.local {
            throw ControlError("real \(address) is an address of this host, not a real server")
        }
    }

    /// The MACs the neighbour table has for `addresses`, leaving out
    /// entries still resolving or failed.
    func lookup(_ addresses: some Collection<IPAddress>) throws -> [IPAddress: MACAddress] {
        guard !addresses.isEmpty else { return [:] }
        let wanted = Set(addresses)
        var found: [IPAddress: MACAddress] = [:]
        for entry in try NeighbourTable.entries(interface: interface)
        where wanted.contains(entry.address) && entry.usable {
            if let mac = entry.mac { found[entry.address] = mac }
        }
        return found
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
}

/// The neighbour table of one interface, as `ip neigh show dev IFACE`
/// lists it (neigh.c).
struct NeighbourTable {
    struct Entry: Equatable {
        var address: IPAddress
        var mac: MACAddress?
        /// NUD_* bits.
        var state: UInt16

        /// An entry `ip neigh show` lists (not NOARP, not NONE) that is
        /// neither still resolving (INCOMPLETE) nor failed (FAILED): the
        /// MAC, if any, is the one frames go to.
        var usable: Bool { state != 0 && state & (Self.incomplete | Self.failed | Self.noARP) == 0 }

        // NUD_* of linux/neighbour.h.
        static let incomplete: UInt16 = 0x01
        static let failed: UInt16 = 0x20
        static let noARP: UInt16 = 0x40
    }

    static func entries(interface: String) throws -> [Entry] {
        let index = try Interfaces.index(interface)
        var room = 256
        while true {
            var buffer = [tandem_neighbour](repeating: tandem_neighbour(), count: room)
            let count = Int(
                try systemCall("read the neighbour table of", interface) {
                    tandem_neigh_list(index, &buffer, Int32(room))
                })
            // The table grew past the buffer: read it again with room for all.
            if count > room {
                room = count + 64
                continue
            }
            return buffer.prefix(count).compactMap { n in
                let length = Int32(n.family) == AF_INET ? 4 : 16
                guard let address = IPAddress(bytes: withUnsafeBytes(of: n.dst) { Array($0.prefix(length)) }) else {
                    return nil
                }
                let mac =
                    n.lladdr_len == 6
                    ? MACAddress(bytes: withUnsafeBytes(of: n.lladdr) { Array($0.prefix(6)) }) : nil
                return Entry(address: address, mac: mac, state: n.state)
            }
        }
    }
}

/// The route the kernel picks for one address (`ip route get`).
struct KernelRoute {
    /// The output interface's name, nil when it has none here.
    var interface: String?
    /// The next hop when the address is not on-link.
    var gateway: IPAddress?
    /// The address is one of this host's.
    var local: Bool

    /// RTN_LOCAL of linux/rtnetlink.h: a route to an address of this host.
    static let localType: UInt8 = 2

    /// Nil when the kernel has no route to `address`.
    static func get(_ address: IPAddress) throws -> KernelRoute? {
        var hop = tandem_route_hop()
        let family = UInt8(address.family == .inet ? AF_INET : AF_INET6)
        let result = address.bytes.withUnsafeBufferPointer { tandem_route_get(family, $0.baseAddress, &hop) }
        if result == -ENETUNREACH || result == -EHOSTUNREACH { return nil }
        if result < 0 { throw SystemCallError("look up the route to", "\(address)", errno: -result) }
        let length = Int32(hop.gateway_family) == AF_INET ? 4 : 16
        let gateway =
            hop.has_gateway != 0 ? IPAddress(bytes: withUnsafeBytes(of: hop.gateway) { Array($0.prefix(length)) }) : nil
        return KernelRoute(interface: Interfaces.name(hop.ifindex), gateway: gateway, local: hop.type == localType)
    }
}
