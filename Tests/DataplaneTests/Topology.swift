import Model
import Frames

/// The services and reals every packet test starts from.
///
///   id group  service                     reals (ids)
///   0  1      198.18.0.100:80/tcp  maglev  .21 .22 .23 (1 2 3)   follows 1, 2
///   1  1      198.18.0.100:443/tcp maglev  same                  follows 0, 2
///   2  1      198.18.0.100:443/udp maglev  same (HTTP/3)         follows 0, 1
///   3  2      198.18.0.100:8080/tcp maglev .21 .22 .23 (4 5 6)   not linked
///   4  3      [2001:db8::100]:80/tcp /64   ::21 ::22 (7 8)
///   5  4      198.18.0.101:80/tcp wrr 3:1  .31 .32 (9 10)        no persistence
///   6  5      198.18.0.102:80/tcp fixed    .41 w1, .42 w5 (11 12)
///   7  6      198.18.0.103:80/tcp all down, sorry .99 (13, sorry 14)
///   8  7      198.18.0.104:80/tcp all down, no sorry (15)
enum Topology {
    static let lbMAC = PacketSpec.defaultLBMAC
    static let clientMAC = PacketSpec.defaultClientMAC
    static let timeoutNs: UInt64 = 1_800_000_000_000   // 30 min

    static func mac(_ id: UInt32) -> MACAddress { MACAddress(bytes: [0x02, 0, 0, 0, 1, UInt8(id)])! }

    static func real(_ id: UInt32, _ address: String) -> DataplaneModel.Real {
        DataplaneModel.Real(id: id, address: IPAddress(address)!, mac: mac(id))
    }

    static func service(_ id: UInt32, group: UInt32, _ vip: String, _ port: UInt16,
                        _ proto: L4Protocol = .tcp, scheduler: Scheduler = .maglev,
                        netmask: Int? = 32, reals: [(UInt32, UInt32)], sorry: UInt32? = nil,
                        state: DataplaneModel.BackendState = .up) -> DataplaneModel.Service {
        DataplaneModel.Service(
            id: id, group: group, vip: IPAddress(vip)!, port: port, proto: proto, scheduler: scheduler,
            persistence: netmask.map { .init(timeoutNs: timeoutNs, netmask: $0) },
            sorryReal: sorry,
            backends: reals.map { .init(real: $0.0, weight: $0.1, state: state) })
    }

    static var model: DataplaneModel {
        let shop = [(UInt32(1), UInt32(1)), (2, 1), (3, 1)]
        return DataplaneModel(
            services: [
                service(0, group: 1, "198.18.0.100", 80, reals: shop),
                service(1, group: 1, "198.18.0.100", 443, reals: shop),
                service(2, group: 1, "198.18.0.100", 443, .udp, reals: shop),
                service(3, group: 2, "198.18.0.100", 8080, reals: [(4, 1), (5, 1), (6, 1)]),
                service(4, group: 3, "2001:db8::100", 80, netmask: 64, reals: [(7, 1), (8, 1)]),
                service(5, group: 4, "198.18.0.101", 80, scheduler: .wrr, netmask: nil, reals: [(9, 3), (10, 1)]),
                service(6, group: 5, "198.18.0.102", 80, scheduler: .fixed, reals: [(11, 1), (12, 5)]),
                service(7, group: 6, "198.18.0.103", 80, reals: [(13, 1)], sorry: 14, state: .down),
                service(8, group: 7, "198.18.0.104", 80, reals: [(15, 1)], state: .down),
            ],
            reals: [
                real(1, "198.18.0.21"), real(2, "198.18.0.22"), real(3, "198.18.0.23"),
                real(4, "198.18.0.21"), real(5, "198.18.0.22"), real(6, "198.18.0.23"),
                real(7, "2001:db8::21"), real(8, "2001:db8::22"),
                real(9, "198.18.0.31"), real(10, "198.18.0.32"),
                real(11, "198.18.0.41"), real(12, "198.18.0.42"),
                real(13, "198.18.0.51"), real(14, "198.18.0.99"), real(15, "198.18.0.61"),
            ])
    }

    static let shopReals: [UInt32] = [1, 2, 3]
}
