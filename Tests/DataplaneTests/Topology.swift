import Configuration
import Control
import Frames
import Model

/// The services and reals every packet test starts from, as a config the
/// controller's own `ControlState` turns into ids and a model; failures,
/// drains and reloads go through `ControlState` too (see `Rig`).
///
///   id group  service                     reals (ids)
///   0  1      198.18.0.100:80/tcp  maglev  .21 .22 .23 (1 2 3)   follows 1, 2
///   1  1      198.18.0.100:443/tcp maglev  same                  follows 0, 2
///   2  1      198.18.0.100:443/udp maglev  same (HTTP/3)         follows 0, 1
///   3  2      198.18.0.100:8080/tcp maglev .21 .22 .23 (4 5 6)   not linked, drop-on-failure
///   4  3      [2001:db8::100]:80/tcp /64   ::21 ::22 (7 8)
///   5  4      198.18.0.101:80/tcp wrr 3:1  .31 .32 (9 10)        no persistence
///   6  5      198.18.0.102:80/tcp fixed    .41 w1, .42 w5 (11 12)
///   7  6      198.18.0.103:80/tcp all down, sorry .99 (13, sorry 14)
///   8  7      198.18.0.104:80/tcp all down, no sorry (15)
enum Topology {
    static let lbMAC = PacketSpec.defaultLBMAC
    static let clientMAC = PacketSpec.defaultClientMAC
    static let timeoutNs: UInt64 = 1_800_000_000_000  // 30 min

    /// Each real id gets a MAC of its own (02:00:00:00:01:ID), so a test can
    /// tell from a frame which (group, address) the program chose.
    static func mac(_ id: UInt32) -> MACAddress { MACAddress(bytes: [0x02, 0, 0, 0, 1, UInt8(id)])! }

    static let yaml = """
        interface: tdm-test0
        services:
          - name: shop-http
            vip: 198.18.0.100
            port: 80
            persistence: { mode: source-ip, timeout: 30m, netmask: 32 }
            follow: [shop-https, shop-quic]
            check: { type: none }
            reals: [{ address: 198.18.0.21, port: 80 }, { address: 198.18.0.22, port: 80 }, { address: 198.18.0.23, port: 80 }]
          - name: shop-https
            vip: 198.18.0.100
            port: 443
            persistence: { mode: source-ip, timeout: 30m, netmask: 32 }
            follow: [shop-http, shop-quic]
            check: { type: none }
            reals: [{ address: 198.18.0.21, port: 443 }, { address: 198.18.0.22, port: 443 }, { address: 198.18.0.23, port: 443 }]
          - name: shop-quic
            vip: 198.18.0.100
            port: 443
            protocol: udp
            persistence: { mode: source-ip, timeout: 30m, netmask: 32 }
            follow: [shop-http, shop-https]
            check: { type: none }
            reals: [{ address: 198.18.0.21, port: 443 }, { address: 198.18.0.22, port: 443 }, { address: 198.18.0.23, port: 443 }]
          - name: alt
            vip: 198.18.0.100
            port: 8080
            persistence: { mode: source-ip, timeout: 30m, netmask: 32 }
            drop-on-failure: true
            check: { type: none }
            reals: [{ address: 198.18.0.21, port: 8080 }, { address: 198.18.0.22, port: 8080 }, { address: 198.18.0.23, port: 8080 }]
          - name: v6
            vip: 2001:db8::100
            port: 80
            persistence: { mode: source-ip, timeout: 30m, netmask: 64 }
            check: { type: none }
            reals: [{ address: "2001:db8::21", port: 80 }, { address: "2001:db8::22", port: 80 }]
          - name: weighted
            vip: 198.18.0.101
            port: 80
            scheduler: wrr
            check: { type: none }
            reals: [{ address: 198.18.0.31, port: 80, weight: 3 }, { address: 198.18.0.32, port: 80 }]
          - name: fixed
            vip: 198.18.0.102
            port: 80
            scheduler: fixed
            persistence: { mode: source-ip, timeout: 30m, netmask: 32 }
            check: { type: none }
            reals: [{ address: 198.18.0.41, port: 80 }, { address: 198.18.0.42, port: 80, weight: 5 }]
          - name: sorry
            vip: 198.18.0.103
            port: 80
            persistence: { mode: source-ip, timeout: 30m, netmask: 32 }
            check: { type: none }
            sorry: { address: 198.18.0.99, port: 80 }
            reals: [{ address: 198.18.0.51, port: 80 }]
          - name: dead
            vip: 198.18.0.104
            port: 80
            persistence: { mode: source-ip, timeout: 30m, netmask: 32 }
            check: { type: none }
            reals: [{ address: 198.18.0.61, port: 80 }]
        """

    static var config: ValidatedConfig { try! ConfigParser.parseValidated(yaml, file: "topology.yaml") }

    /// The start state: every real up but those of `sorry` and `dead`, which
    /// failed their checks.
    static func state() throws -> ControlState {
        var state = try ControlState(config)
        state.setHealth(service: "sorry", address: IPAddress("198.18.0.51")!, up: false)
        state.setHealth(service: "dead", address: IPAddress("198.18.0.61")!, up: false)
        return state
    }

    static let shopReals: [UInt32] = [1, 2, 3]
}
