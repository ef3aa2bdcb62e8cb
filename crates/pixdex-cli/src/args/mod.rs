//! Command-line arguments (clap): one struct per command, the options several commands share
//! (`shared.rs`), and the check that `--server` and the offline-only options exclude each other.
//! Each command turns its arguments into its config once (`IndexArgs::options`,
//! `ServeArgs::config`, …).

mod commands;
pub mod config_file;
mod dedup;
mod serve;
mod shared;
#[cfg(test)]
mod tests;

pub use commands::{EmbedArgs, IndexArgs, RegionArgs, SearchArgs, StatsArgs};
pub use dedup::DedupArgs;
pub use serve::ServeArgs;
pub use shared::{CollectionArgs, DbArgs, ModelArgs, ServerArgs};

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Make image collections searchable by what they look like.
#[derive(Debug, Parser)]
#[command(name = "pixdex", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Read settings from this TOML file (keys are option names; top-level keys for every
    /// command, `[serve]`, `[index]`, … tables for one). The command line and environment
    /// variables override it. `pixdex config check FILE` checks one; deploy/pixdex.example.toml
    /// shows every option.
    #[arg(long, global = true, env = "PIXDEX_CONFIG", value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the Pixio embedding of each image.
    Embed(EmbedArgs),
    /// Index folders of images into a collection (incremental: unchanged files are skipped).
    Index(IndexArgs),
    /// Find the images most similar to an image.
    Search(SearchArgs),
    /// Find the images that contain a region of an image (an object, a detail), and where.
    Region(RegionArgs),
    /// Counts, model and disk use of a collection. `images` counts every record, `embedded` the
    /// images with a stored vector, and `failed` the records whose status is failed (files that
    /// could not be decoded or embedded), offline and with --server alike.
    Stats(StatsArgs),
    /// Serve a collection over gRPC (search, index jobs, stats) until Ctrl-C or SIGTERM.
    Serve(ServeArgs),
    /// Find exact and near-duplicate images, report them (text, JSON, CSV, HTML) and optionally
    /// move the copies that are not keepers aside (never deleting; undoable).
    Dedup(DedupArgs),
    /// Work with config files (`pixdex config check FILE`).
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// `pixdex config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check that every setting in a config file is known and every value accepted.
    Check {
        /// The TOML file.
        file: std::path::PathBuf,
    },
}

/// Options that only make sense when a command opens the collection itself (arg ids).
pub(crate) const OFFLINE_ONLY: [&str; 6] = ["db", "store", "model", "device", "dtype", "batch_size"];

impl Cli {
    /// Parses the command line (exiting with usage on error). With `--server` (or
    /// `PIXDEX_SERVER`), an offline-only option given on the command line is a usage error rather
    /// than silently ignored; one that comes from the environment (`PIXDEX_DB`, `PIXDEX_MODEL`) is
    /// ignored.
    pub fn parse_checked() -> Self {
        let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
        let argv = config_file::merge(&Self::command(), argv).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(2)
        });
        Self::try_parse_checked_from(argv).unwrap_or_else(|e| e.exit())
    }

    fn try_parse_checked_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut command = Self::command();
        let matches = command.try_get_matches_from_mut(args)?;
        let cli = Self::from_arg_matches(&matches).map_err(|e| e.format(&mut command))?;
        let Some((name, sub)) = matches.subcommand() else { return Ok(cli) };
        let Ok(Some(_)) = sub.try_get_one::<String>("server") else { return Ok(cli) };
        let given = sub
            .ids()
            .map(|id| id.as_str())
            .find(|id| OFFLINE_ONLY.contains(id) && sub.value_source(id) == Some(ValueSource::CommandLine));
        let Some(id) = given else { return Ok(cli) };
        let from_env = sub.value_source("server") == Some(ValueSource::EnvVariable);
        let message = format!(
            "--{} only applies when pixdex opens the collection itself; with --server{} the server's collection \
             and model are used{}",
            id.replace('_', "-"),
            if from_env { " (set by PIXDEX_SERVER)" } else { "" },
            if from_env { ": unset PIXDEX_SERVER to work offline" } else { "" },
        );
        let sub_command = command.find_subcommand_mut(name).expect("the parsed subcommand exists");
        Err(sub_command.error(ErrorKind::ArgumentConflict, message))
    }
}
