/// The shop example (examples/shop.yaml), and variations with one thing wrong each.
public enum Configs {
    public static let spec = """
        interface: eth0             # NIC whose XDP hook runs the dataplane
        xdp-mode: native            # native | generic
        defaults:
          check: { interval: 2s, timeout: 1s, rise: 2, fall: 3 }
        services:
          - name: shop-http
            vip: 198.18.0.100
            port: 80
            protocol: tcp
            scheduler: maglev
            persistence: { mode: source-ip, timeout: 30m, netmask: 32 }
            follow: [shop-https]
            check: { type: http, path: /health }
            reals:
              - { address: 198.18.0.21, port: 80 }
              - { address: 198.18.0.22, port: 80, weight: 2 }
          - name: shop-https
            vip: 198.18.0.100
            port: 443
            protocol: tcp
            scheduler: maglev
            persistence: { mode: source-ip, timeout: 30m, netmask: 32 }
            follow: [shop-http]
            check: { type: tls }
            reals:
              - { address: 198.18.0.21, port: 443 }
              - { address: 198.18.0.22, port: 443, weight: 2 }
        """
}
