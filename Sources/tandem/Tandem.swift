import ArgumentParser

@main
struct Tandem: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem",
        abstract: "Layer-4 load balancer on XDP with port following.",
        discussion: """
            `tandem serve` runs the balancer; the other commands talk to it over its control
            socket, except `check` (reads a config) and `down` (removes the pinned state).
            Shell completions: tandem --generate-completion-script bash|zsh|fish
            """,
        subcommands: [
            Serve.self, Check.self, Status.self, Persistence.self, RealCommands.self, NodeCommands.self,
            Reload.self, Stats.self, Down.self
        ])
}
