import CDaemon
import Glibc
import Model
import SystemCalls

/// A routing table the announcer writes VIP routes into: the kernel's
/// (`RouteTable`), or a test's.
public protocol AnnounceTable: Sendable {
    var id: UInt32 { get }
    /// Every route of the table, both families.
    func routes() throws -> [RouteTable.Route]
    /// Adds `vip`/32 (or /128) through `interfaceIndex`, Tandem's protocol;
    /// a route to the same prefix already there is an error, not replaced.
    func add(_ vip: IPAddress, interfaceIndex: UInt32) throws
    /// Deletes Tandem's route to `vip`; false when there was none.
    @discardableResult func delete(_ vip: IPAddress) throws -> Bool
}

extension AnnounceTable {
    /// Deletes every route of Tandem's in the table; the VIPs they were for.
    public func deleteAll() throws -> [IPAddress] {
        var deleted: [IPAddress] = []
        for route in try routes() where route.isTandems {
            if try delete(route.destination) { deleted.append(route.destination) }
        }
        return deleted
    }
}

/// Where the announcer finds its table and the interface the VIP routes
/// go through: the kernel's, or a test's stand-in.
public protocol Routing: Sendable {
    func table(_ id: UInt32) -> any AnnounceTable
    /// The index of interface `name`, nil when there is none.
    func interfaceIndex(_ name: String) -> UInt32?
}

/// The kernel's routing tables, over rtnetlink, in the calling thread's
/// network namespace.
public struct KernelRouting: Routing {
    public init() {}
    public func table(_ id: UInt32) -> any AnnounceTable { RouteTable(id: id) }
    public func interfaceIndex(_ name: String) -> UInt32? { try? Interfaces.index(name) }
}

/// One kernel routing table, read and written over rtnetlink (route.c):
/// how Tandem announces a VIP to the routing daemon on the node. Tandem's
/// routes carry protocol 250 (`proto 250` in `ip route`); it deletes only
/// routes of that protocol, never another's.
public struct RouteTable: AnnounceTable, Equatable {
    /// rtm_protocol of Tandem's routes (RTPROT_* values above 200 are free
    /// for daemons; BIRD's `learn` imports them as alien routes).
    public static let tandemProtocol: UInt8 = 250

    public let id: UInt32

    public init(id: UInt32) { self.id = id }

    /// A route of the table, as the kernel lists it.
    public struct Route: Equatable, Sendable {
        public init(destination: IPAddress, prefixLength: Int, interfaceIndex: UInt32, proto: UInt8) {
            self.destination = destination
            self.prefixLength = prefixLength
            self.interfaceIndex = interfaceIndex
            self.proto = proto
        }

        public var destination: IPAddress
        public var prefixLength: Int
        /// The output interface; 0 when none (a multipath or blackhole route).
        public var interfaceIndex: UInt32
        public var proto: UInt8

        /// A host route (/32, /128) of Tandem's protocol.
        public var isTandems: Bool { proto == RouteTable.tandemProtocol && prefixLength == destination.maxPrefix }
    }

    /// Every route of the table, both families.
    public func routes() throws -> [Route] {
        var room = 64
        while true {
            var buffer = [tandem_route](repeating: tandem_route(), count: room)
            let count = Int(
                try systemCall("list the routes of", "table \(id)") { tandem_route_list(id, &buffer, Int32(room)) })
            // The table grew past the buffer: read it again with room for all.
            if count > room {
                room = count + 16
                continue
            }
            return buffer.prefix(count).compactMap { r in
                let length = Int32(r.family) == AF_INET ? 4 : 16
                let bytes = withUnsafeBytes(of: r.dst) { Array($0.prefix(length)) }
                guard let destination = IPAddress(bytes: bytes) else { return nil }
                return Route(
                    destination: destination, prefixLength: Int(r.prefix_len), interfaceIndex: r.ifindex,
                    proto: r.protocol)
            }
        }
    }

    /// Adds `vip`/32 (or /128) through `interfaceIndex`, proto 250. A route
    /// to the same prefix already in the table (of any protocol) is an
    /// error naming it: it is not replaced.
    public func add(_ vip: IPAddress, interfaceIndex: UInt32) throws {
        var route = Self.route(vip, table: id, interfaceIndex: interfaceIndex)
        let result = tandem_route_add(&route)
        if result == -EEXIST {
            throw SystemCallError(
                "add route", "\(vip)/\(vip.maxPrefix) to table \(id)", errno: EEXIST,
                hint: "the table already has a route to it; see 'ip route show table \(id)'")
        }
        if result < 0 { throw SystemCallError("add route", "\(vip)/\(vip.maxPrefix) to table \(id)", errno: -result) }
    }

    /// Deletes Tandem's route to `vip`; false when there was none.
    @discardableResult
    public func delete(_ vip: IPAddress) throws -> Bool {
        var route = Self.route(vip, table: id, interfaceIndex: 0)
        let result = tandem_route_delete(&route)
        if result == -ESRCH || result == -ENOENT { return false }
        if result < 0 {
            throw SystemCallError("delete route", "\(vip)/\(vip.maxPrefix) from table \(id)", errno: -result)
        }
        return true
    }

    static func route(_ vip: IPAddress, table: UInt32, interfaceIndex: UInt32) -> tandem_route {
        var route = tandem_route()
        route.table = table
        route.ifindex = interfaceIndex
        route.family = UInt8(vip.family == .inet ? AF_INET : AF_INET6)
        route.prefix_len = UInt8(vip.maxPrefix)
        route.protocol = tandemProtocol
        withUnsafeMutableBytes(of: &route.dst) { $0.copyBytes(from: vip.bytes) }
        return route
    }
}
