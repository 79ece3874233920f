//! The `button` binary: parse the command line, start logging, run the subcommand.

use clap::Parser;

use button::cli::{Cli, Command, ServeArgs};

/// Requests allocate and free small blocks on many threads (and events are freed
/// on the store's writer thread): mimalloc does that with less contention than
/// the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A missing .env is normal; a broken one is worth saying.
    if let Err(e) = dotenvy::dotenv() {
        if !e.not_found() {
            eprintln!("warning: ignoring .env: {e}");
        }
    }
    let cli = Cli::parse();
    button::telemetry::init(cli.log_format, std::io::stderr);
    let shutdown = button::shutdown::on_signal();

    let result = match cli.command {
        Some(Command::Serve(args)) => serve(&args, shutdown).await,
        None => serve(&ServeArgs::from_env(), shutdown).await,
        Some(Command::Migrate(args)) => button::migrate::run(args).await,
        Some(Command::Tail(args)) => button::tail::run(args, shutdown).await,
        Some(Command::Generate(args)) => button::generate::run(args, shutdown).await,
        Some(Command::Sink(args)) => button::sink::run(args, shutdown).await,
        Some(Command::Analyze(args)) => button::analyze::run(args, shutdown).await,
    };
    report(result)
}

async fn serve(
    args: &ServeArgs,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    button::web::run(args.config()?, shutdown).await
}

fn report(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
