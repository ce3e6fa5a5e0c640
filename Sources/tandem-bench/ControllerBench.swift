import Configuration
import Control
import Model
import Dataplane
import Foundation
import Glibc
import Health
import Logging
import NIOCore
import NIOPosix
import TestSupport

/// The controller's costs: writing a large config into the maps, and the
/// CPU that health checks of many reals take.
enum ControllerBench {
    /// `services` services in linked pairs (:80 and :443 on one VIP), each
    /// with `reals` reals of its own address range, as YAML.
    static func config(services: Int, reals: Int) -> String {
        var yaml = "interface: eth0\nservices:\n"
        for s in 0..<services {
            let pair = s / 2, port = s % 2 == 0 ? 80 : 443
            let vip = "198.18.\(200 + pair / 250).\(pair % 250 + 1)"
            yaml += "  - name: s\(s)\n    vip: \(vip)\n    port: \(port)\n"
            yaml += "    persistence: { mode: source-ip, timeout: 30m, netmask: 32 }\n"
            yaml += "    follow: [s\(s % 2 == 0 ? s + 1 : s - 1)]\n    check: { type: none }\n    reals:\n"
            for r in 0..<reals {
                let n = pair * reals + r
                yaml += "      - { address: 198.19.\(n / 250).\(n % 250 + 1), port: \(port) }\n"
            }
        }
        return yaml
    }

    /// Parse + validate, build the model, write it all; then a reload that
    /// changes one weight.
    static func apply(services: Int, reals: Int, pinRoot: String, into table: inout ResultTable) throws {
        let yaml = config(services: services, reals: reals)
        var parsed: ValidatedConfig!
        let parse = try TestClock.measure { parsed = try ConfigParser.parseValidated(yaml, file: "bench.yaml") }
        var state = try ControlState(parsed)
        let macs = Dictionary(
            uniqueKeysWithValues: state.realAddresses.map { ($0, MACAddress(bytes: [2, 0, 0, 0, 0, 1])!) })
        var model: DataplaneModel!
        let build = TestClock.measure { model = state.model(macs: macs) }
        let dataplane = try Dataplane(pinRoot: pinRoot)
        defer { dataplane.removePins() }
        let write = try TestClock.measure { try dataplane.apply(model) }
        let label = "\(services) services x \(reals) reals"
        table.add(
            "controller: apply \(label)",
            value: String(format: "%.0f ms", (parse + build + write) * 1000),
            method: String(
                format: "first apply: parse+validate %.0f ms, model (ids, %d maglev rings) %.0f ms, map writes %.0f ms",
                parse * 1000, services, build * 1000, write * 1000))

        var changed = parsed.config
        changed.services[0].reals[0].weight = 2
        let reload = try TestClock.measure {
            try state.reload(ConfigValidator.validate(changed, file: "bench.yaml"))
            try dataplane.apply(state.model(macs: macs))
        }
        table.add(
            "controller: reload one changed weight", value: String(format: "%.1f ms", reload * 1000),
            method: "model of all \(services) services rebuilt, only the changed service's ring rewritten")
    }

    /// CPU of this process while `count` reals are checked every second
    /// against a server in another process that answers on every loopback
    /// address (127.0.x.y: one address per real; nothing leaves the host).
    static func health(
        count: Int, kind: HealthCheck.Kind, seconds duration: Int, into table: inout ResultTable
    ) async throws {
        let port = 18_000 + Int(getpid() % 1000)
        let server = try await BackgroundProcess.start(
            "/usr/bin/python3",
            [
                "-c",
                """
                import asyncio, sys
                async def answer(r, w):
                    try:
                        if (await r.read(1024)).startswith(b"GET"):
                            w.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok")
                            await w.drain()
                    except Exception:
                        pass
                    w.close()
                async def main():
                    s = await asyncio.start_server(answer, "0.0.0.0", int(sys.argv[1]), backlog=4096, reuse_address=True)
                    async with s:
                        await s.serve_forever()
                asyncio.run(main())
                """, "\(port)"
            ])
        return try await withCleanup {
            usleep(500_000)
            try measureHealth(count: count, kind: kind, port: port, seconds: duration, into: &table)
        } cleanup: {
            await server.stop()
        }
    }

    static func measureHealth(
        count: Int, kind: HealthCheck.Kind, port: Int, seconds duration: Int, into table: inout ResultTable
    ) throws {

        var check = HealthCheck(kind)
        check.timing.intervalNs = 1_000_000_000
        check.timing.timeoutNs = 900_000_000
        // One address each: 127.0.0.1 and every loopback address after it.
        let targets = (0..<count).map { i in
            ProbeTarget(
                address: IPAddress(bytes: [127, 0, UInt8(i / 250), UInt8(i % 250 + 1)])!, port: UInt16(port),
                check: check)
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { try? group.syncShutdownGracefully() }
        let checker = try HealthChecker(group: group, logger: Logger(label: "bench"))
        checker.update(Dictionary(uniqueKeysWithValues: targets.map { ($0, true) }))
        sleep(2)  // past the random first delays
        let before = usage(), beforeSplit = split(), start = TestClock.nowNs()
        let checksBefore = checker.snapshot().values.reduce(0) { $0 + $1.checks }
        sleep(UInt32(duration))
        let after = usage(), afterSplit = split(), wall = TestClock.seconds(since: start)
        let snapshot = checker.snapshot()
        checker.stop()
        let checks = snapshot.values.reduce(0) { $0 + $1.checks } - checksBefore
        let failures = snapshot.values.filter { $0.last != .success }.count
        let share = (after - before) / wall * 100
        table.add(
            "controller: \(kind.name) checks of \(count) reals at 1 s",
            value: String(format: "%.1f %% of a core", share),
            method: String(
                format:
                    "%.0f checks/s over %.0f s, %d failing; getrusage of the checker (one event loop): user %.1f %%, system %.1f %% (loopback: system time includes the server side's TCP handshake); server in another process",
                Double(checks) / wall, wall, failures,
                (afterSplit.user - beforeSplit.user) / wall * 100, (afterSplit.system - beforeSplit.system) / wall * 100
            ))
    }

    static func split() -> (user: Double, system: Double) {
        var r = rusage()
        getrusage(RUSAGE_SELF.rawValue, &r)
        return (
            Double(r.ru_utime.tv_sec) + Double(r.ru_utime.tv_usec) / 1e6,
            Double(r.ru_stime.tv_sec) + Double(r.ru_stime.tv_usec) / 1e6
        )
    }

    static func usage() -> Double {
        var r = rusage()
        getrusage(RUSAGE_SELF.rawValue, &r)
        return Double(r.ru_utime.tv_sec) + Double(r.ru_utime.tv_usec) / 1e6
            + Double(r.ru_stime.tv_sec) + Double(r.ru_stime.tv_usec) / 1e6
    }
}
