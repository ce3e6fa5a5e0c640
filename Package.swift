// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Tandem",
    products: [
        .executable(name: "tandem", targets: ["tandem"]),
        .library(name: "Dataplane", targets: ["Dataplane"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // Subprocesses in tests and benchmarks (ip, tools/lab, tandem, haproxy, wrk).
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        // HMAC-SHA256 for record sync between nodes.
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0")
    ],
    targets: [
        // libbpf from the system (Debian: libbpf-dev).
        .systemLibrary(
            name: "CLibBPF",
            pkgConfig: "libbpf",
            providers: [.apt(["libbpf-dev", "libelf-dev"])]
        ),
        // C shims for the daemon: sd_notify(3) without libsystemd, thread priority.
        .target(name: "CDaemon"),
        // epoll and eventfd for the health checker's loop (not in Glibc's module).
        .target(name: "CHealth"),
        // The one system-call wrapper and its error: errno captured once, at
        // the call, for every module that calls C.
        .target(name: "SystemCalls"),
        // The one header shared by bpf/ and Swift.
        .target(name: "TandemABI"),
        // The only module that calls libbpf: behind typed, throwing APIs.
        .target(name: "BPF", dependencies: ["CLibBPF", "Model", "SystemCalls"]),
        // Pure Swift, no dependencies: addresses, schedulers (maglev, wrr,
        // fixed), the dataplane model, health-check definitions, pinned state.
        .target(name: "Model"),
        // The YAML config: parser (Yams) and the rules that span services.
        .target(name: "Configuration", dependencies: ["Model", "TandemABI", "SystemCalls", "Yams"]),
        // What `tandem serve` decides: stable ids, health and operator
        // states, invalidation, adoption of pinned state.
        .target(name: "Control", dependencies: ["Model", "Configuration", "TandemABI"]),
        // Model -> ABI structs -> maps; carries the compiled XDP objects.
        .target(
            name: "Dataplane",
            dependencies: ["BPF", "TandemABI", "Model"],
            plugins: ["BPFCompile"]
        ),
        // Health checks on SwiftNIO: probes (tcp, http, https, tls) and the
        // rise/fall state machine.
        .target(
            name: "Health",
            dependencies: [
                "Model", "CHealth", "SystemCalls",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log")
            ]
        ),
        // Record sync between nodes: the authenticated message format, the
        // receiver's rules, and the UDP/TCP transport on SwiftNIO.
        .target(
            name: "Sync",
            dependencies: [
                "Model", "SystemCalls",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log")
            ]
        ),
        // The control protocol between the CLI and `tandem serve`: requests,
        // replies and their reports, the client, the text the CLI prints,
        // the socket's trust checks and the pin lock. The CLI's client
        // commands need only this, not the daemon.
        .target(
            name: "ControlAPI",
            dependencies: [
                "Model", "Control", "SystemCalls",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio")
            ]
        ),
        // Announcing VIPs to the node's router: the announce table over
        // rtnetlink, the facts the announce rules read, and each real's
        // MAC from the kernel's neighbour table (also rtnetlink, CDaemon).
        .target(
            name: "Announce",
            dependencies: [
                "Model", "Control", "CDaemon", "SystemCalls",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log")
            ]
        ),
        // Record sync in `tandem serve`: the glue between the Sync module's
        // format and transport (which know nothing of a dataplane) and this
        // node's record table, the feed of the records it writes, and the
        // receive rules applied to it. Apart from Sync so that Sync stays
        // testable and benchable without BPF.
        .target(
            name: "NodeSync",
            dependencies: [
                "Model", "Configuration", "Control", "Dataplane", "Sync",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
            ]
        ),
        // `tandem serve`: the controller's actor (state, commit, health,
        // reload), the dataplane's start, the control socket and /metrics,
        // wired together as lifecycle services.
        .target(
            name: "Controller",
            dependencies: [
                "Model", "Configuration", "Control", "ControlAPI", "Dataplane", "BPF", "Health", "Sync",
                "NodeSync", "Announce", "CDaemon", "SystemCalls",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
            ]
        ),
        // Frame builder shared by tests, benchmarks and the traffic generator.
        .target(name: "Frames", dependencies: ["Model"]),
        // The command: check, serve, down, ... Only `serve` needs Controller.
        .executableTarget(
            name: "tandem",
            dependencies: [
                "Model", "Configuration", "Control", "ControlAPI", "Announce", "Dataplane", "BPF", "Controller",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio")
            ]
        ),
        // Benchmarks (tools/bench).
        .executableTarget(
            name: "tandem-bench",
            dependencies: [
                "Dataplane", "BPF", "Model", "Configuration", "Control", "Frames", "Health", "TestSupport", "TandemABI",
                "NodeSync", "Sync", "SystemCalls",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio")
            ]
        ),
        // Build tools: clang -target bpf, then embed the object as Swift source.
        .executableTarget(name: "BPFEmbed"),
        .plugin(name: "BPFCompile", capability: .buildTool(), dependencies: ["BPFEmbed"]),

        .testTarget(name: "TandemABITests", dependencies: ["TandemABI"]),
        .testTarget(name: "ModelTests", dependencies: ["Model"]),
        .testTarget(name: "SystemCallsTests", dependencies: ["SystemCalls"]),
        .testTarget(
            name: "SyncTests",
            dependencies: [
                "Sync", "Model", "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio")
            ]),
        .testTarget(name: "ConfigurationTests", dependencies: ["Configuration", "Model", "TestSupport"]),
        .testTarget(name: "ControlTests", dependencies: ["Control", "Configuration", "Model", "TestSupport"]),
        .testTarget(
            name: "HealthTests",
            dependencies: [
                "Health", "CHealth", "Model", "TestSupport", "TestTraits",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log")
            ]),
        // What tests and benchmarks share: configs, privilege check, subprocesses,
        // clock, network namespaces and CPU pinning, BPF helpers only they use.
        .target(
            name: "TestSupport",
            dependencies: [
                "BPF", "CLibBPF", "CTestSupport", "Model", "SystemCalls",
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system")
            ],
            path: "Tests/TestSupport"
        ),
        .testTarget(name: "TestSupportTests", dependencies: ["TestSupport"]),
        // What only test targets share: the `.privileged` trait (it needs the
        // Testing module, which the benchmarks do not link).
        .target(name: "TestTraits", dependencies: ["TestSupport"], path: "Tests/TestTraits"),
        // TestSupport's C half: setns and sched_setaffinity need _GNU_SOURCE.
        .target(name: "CTestSupport", path: "Tests/CTestSupport"),
        .target(name: "BPFTestObjects", path: "Tests/BPFTestObjects", plugins: ["BPFCompile"]),
        .testTarget(
            name: "ControllerTests",
            dependencies: [
                "Controller", "ControlAPI", "Control", "Configuration", "Dataplane", "Model", "TestSupport",
                "TestTraits", "Sync",
                "Frames", "BPF", "Announce", "NodeSync", "Health", "ReferenceDataplane",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus")
            ],
            resources: [.copy("Snapshots")]),
        .testTarget(
            name: "AnnounceTests",
            dependencies: [
                "Announce", "Control", "Model", "BPF", "TestSupport", "TestTraits",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio")
            ]),
        .testTarget(
            name: "NodeSyncTests",
            dependencies: [
                "NodeSync", "Sync", "Control", "Configuration", "Dataplane", "Model", "Frames", "BPF", "TestSupport",
                "TestTraits",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio")
            ]),
        .testTarget(
            name: "LabTests",
            dependencies: [
                "Dataplane", "BPF", "Model", "Configuration", "Control", "ControlAPI", "TestSupport", "TestTraits",
                "TandemABI"
            ]),
        .testTarget(
            name: "BPFTests",
            dependencies: ["BPF", "Model", "Dataplane", "BPFTestObjects", "TestSupport", "TestTraits", "SystemCalls"]
        ),
        // The reference model of the maps (what the XDP program must do,
        // in plain Swift) and a dataplane in memory built on it, for
        // running the controller in tests without root.
        .target(
            name: "ReferenceDataplane", dependencies: ["Dataplane", "Model", "Frames", "TandemABI"],
            path: "Tests/ReferenceDataplane"),
        .testTarget(
            name: "DataplaneTests",
            dependencies: [
                "Dataplane", "BPF", "TandemABI", "Model", "Configuration", "Control", "Frames", "TestSupport",
                "TestTraits", "ReferenceDataplane", "SystemCalls"
            ])
    ]
)
