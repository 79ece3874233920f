//! Settings parsed from flags exactly as the binary parses its command line, so
//! tests configure the code the way users do (defaults, validation and all).

use button::analyze::AnalyzeArgs;
use button::cli::{Cli, Command, ServeArgs};
use button::generate::GenerateArgs;
use button::migrate::MigrateArgs;
use button::sink::SinkArgs;

/// The subcommand `argv` (without the program name) parses to.
pub fn command(argv: &[&str]) -> Command {
    use clap::Parser;
    Cli::try_parse_from(std::iter::once("button").chain(argv.iter().copied()))
        .unwrap_or_else(|e| panic!("button {}: {e}", argv.join(" ")))
        .command
        .expect("a subcommand")
}

fn with(subcommand: &'static str, flags: &[&str]) -> Command {
    let argv: Vec<&str> = std::iter::once(subcommand)
        .chain(flags.iter().copied())
        .collect();
    command(&argv)
}

/// `button serve FLAGS`.
pub fn serve(flags: &[&str]) -> ServeArgs {
    match with("serve", flags) {
        Command::Serve(args) => args,
        other => unreachable!("`serve` parsed as {other:?}"),
    }
}

/// `button migrate FLAGS`.
pub fn migrate(flags: &[&str]) -> MigrateArgs {
    match with("migrate", flags) {
        Command::Migrate(args) => args,
        other => unreachable!("`migrate` parsed as {other:?}"),
    }
}

/// `button generate FLAGS`.
pub fn generate(flags: &[&str]) -> GenerateArgs {
    match with("generate", flags) {
        Command::Generate(args) => args,
        other => unreachable!("`generate` parsed as {other:?}"),
    }
}

/// `button sink FLAGS`.
pub fn sink(flags: &[&str]) -> SinkArgs {
    match with("sink", flags) {
        Command::Sink(args) => args,
        other => unreachable!("`sink` parsed as {other:?}"),
    }
}

/// `button analyze FLAGS`.
pub fn analyze(flags: &[&str]) -> AnalyzeArgs {
    match with("analyze", flags) {
        Command::Analyze(args) => args,
        other => unreachable!("`analyze` parsed as {other:?}"),
    }
}
