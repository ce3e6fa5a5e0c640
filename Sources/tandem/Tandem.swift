import ArgumentParser

@main
struct Tandem: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem",
        abstract: "Layer-4 load balancer on XDP with port following.",
        subcommands: [Check.self, Down.self])
}
