//! `pixdex`: make image collections searchable by what they look like.
//!
//! **What it owns.** The `pixdex` binary: the command line (clap, `args/`) and one module per
//! command in `cmd/`: `index`, `serve`, `search`, `region`, `dedup`, `embed`, `stats`. Each command
//! turns its arguments into a config once, then works offline (it opens the collection itself,
//! through `pixdex-core` and `pixdex-indexer`) or, with `--server URL`, through a running `pixdex
//! serve` (`remote.rs`; requests are built and answers read with `pixdex_server::convert`, the
//! conversions the server uses). `serve` runs `pixdex-server`. Terminal output (progress bars,
//! reports, the dedup HTML page) and moving duplicates aside are the CLI's; it knows nothing of the
//! other crates beyond their public API.

mod args;
mod cmd;
mod remote;

use std::io::IsTerminal;
use std::process::ExitCode;

// candle allocates a fresh buffer for every op; mimalloc reuses them instead of faulting in new
// pages each time (about 15% of CPU forward time with the system allocator).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = args::Cli::parse_checked();
    // A server reports what it does (listening, model loaded, jobs); the other commands only warn.
    let default_filter = match args.command {
        args::Command::Serve(_) => "warn,pixdex=info,pixdex_server=info",
        args::Command::Embed(_)
        | args::Command::Index(_)
        | args::Command::Search(_)
        | args::Command::Region(_)
        | args::Command::Stats(_)
        | args::Command::Dedup(_)
        | args::Command::Config(_) => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PIXDEX_LOG").unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let serving = matches!(args.command, args::Command::Serve(_));
    let deduping = matches!(args.command, args::Command::Dedup(_));
    let result = match args.command {
        args::Command::Embed(a) => cmd::embed::run(a),
        args::Command::Index(a) => cmd::index::run(a),
        args::Command::Search(a) => cmd::search::run(a),
        args::Command::Region(a) => cmd::region::run(a),
        args::Command::Stats(a) => cmd::stats::run(a),
        args::Command::Serve(a) => cmd::serve::run(a),
        args::Command::Dedup(a) => cmd::dedup::run(a),
        args::Command::Config(args::ConfigCommand::Check { file }) => cmd::config::check(&file),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // A closed pipe (`pixdex embed … | head`) is not a failure.
            if err
                .chain()
                .any(|e| e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            if is_locked(&err) {
                if serving {
                    eprintln!(
                        "hint: another `pixdex serve` (or `pixdex index`) has it open: stop it, or serve another --db"
                    );
                } else if deduping {
                    eprintln!(
                        "hint: probably `pixdex serve` holds it: run `pixdex dedup --server URL` to find the \
                         duplicates through that server (e.g. --server http://127.0.0.1:50051, its --listen \
                         address; or set PIXDEX_SERVER); reports and moves work the same"
                    );
                } else {
                    eprintln!(
                        "hint: probably `pixdex serve` holds it: pass --server URL to go through that server \
                         (e.g. --server http://127.0.0.1:50051, its --listen address; or set PIXDEX_SERVER)"
                    );
                }
            }
            ExitCode::from(2)
        }
    }
}

/// Whether the collection is locked by another process, wherever in the chain that was said. The
/// library errors that wrap `pixdex_core::Error` transparently do not show it as a source, so each
/// wrapper is looked into.
fn is_locked(err: &anyhow::Error) -> bool {
    use pixdex_core::Error::Locked;
    err.chain().any(|e| {
        matches!(e.downcast_ref::<pixdex_core::Error>(), Some(Locked { .. }))
            || matches!(
                e.downcast_ref::<pixdex_indexer::Error>(),
                Some(pixdex_indexer::Error::Collection(Locked { .. }))
            )
            || matches!(
                e.downcast_ref::<pixdex_server::ServeError>(),
                Some(pixdex_server::ServeError::Collection(Locked { .. }))
            )
    })
}
