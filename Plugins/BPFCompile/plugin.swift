// Compiles every bpf/*.bpf.c with the toolchain's clang for the BPF target
// and embeds the objects into the target as EmbeddedObjects.<name>. A target
// named *TestObjects gets bpf/test/*.bpf.c instead.
import Foundation
import PackagePlugin

@main
struct BPFCompile: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let package = context.package.directoryURL
        let root = package.appending(path: "bpf")
        let bpfDir = target.name.hasSuffix("TestObjects") ? root.appending(path: "test") : root
        let abiInclude = package.appending(path: "Sources/TandemABI/include")
        let clang = try context.tool(named: "clang").url
        let embed = try context.tool(named: "BPFEmbed").url
        let work = context.pluginWorkDirectoryURL

        let fm = FileManager.default
        let sources = try fm.contentsOfDirectory(atPath: bpfDir.path())
            .filter { $0.hasSuffix(".bpf.c") }
            .sorted()
        let headers = (try? fm.contentsOfDirectory(atPath: root.appending(path: "lib").path())) ?? []
        let dependencies =
            headers.map { root.appending(path: "lib/\($0)") }
            + [abiInclude.appending(path: "tandem_abi.h")]

        #if arch(x86_64)
            let multiarch = "/usr/include/x86_64-linux-gnu"
        #elseif arch(arm64)
            let multiarch = "/usr/include/aarch64-linux-gnu"
        #else
            let multiarch = "/usr/include"
        #endif

        var commands: [Command] = []
        var embedArgs: [String] = []
        var objects: [URL] = []
        for file in sources {
            let name = String(file.dropLast(".bpf.c".count))
            let input = bpfDir.appending(path: file)
            let object = work.appending(path: "\(name).bpf.o")
            commands.append(
                .buildCommand(
                    displayName: "clang -target bpf \(file)",
                    executable: clang,
                    arguments: [
                        "-O2", "-g", "-Wall", "-Werror", "-target", "bpf",
                        "-I", multiarch, "-I", abiInclude.path(), "-I", root.path(),
                        "-c", input.path(), "-o", object.path()
                    ],
                    inputFiles: [input] + dependencies,
                    outputFiles: [object]
                ))
            embedArgs.append("\(name)=\(object.path())")
            objects.append(object)
        }
        let swiftFile = work.appending(path: "EmbeddedObjects.swift")
        commands.append(
            .buildCommand(
                displayName: "Embedding BPF objects",
                executable: embed,
                arguments: [swiftFile.path()] + embedArgs,
                inputFiles: objects,
                outputFiles: [swiftFile]
            ))
        return commands
    }
}
