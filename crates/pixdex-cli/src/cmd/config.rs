//! `pixdex config check FILE`.

use clap::CommandFactory;
use std::path::Path;
use std::process::ExitCode;

use crate::args::{Cli, config_file};

pub fn check(file: &Path) -> anyhow::Result<ExitCode> {
    let lines = config_file::check(&Cli::command(), file).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}: ok", file.display());
    for line in lines {
        println!("  {line}");
    }
    Ok(ExitCode::SUCCESS)
}
