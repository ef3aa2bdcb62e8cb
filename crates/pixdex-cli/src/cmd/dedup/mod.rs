//! `pixdex dedup`: the exact and near-duplicate groups of a collection (opened offline, or found by
//! a running server with `--server`, `served.rs`), reported
//! as text, JSON, CSV or a self-contained HTML page with thumbnails. The copies that are not
//! keepers can be moved aside (`--move-to DIR`): a dry run unless `--apply`, every move logged,
//! and undone with `--undo LOG`. Nothing is ever deleted, and the collection is left as it is
//! (the next `pixdex index` notices the moves).

mod fsops;
mod html;
mod moves;
mod report;
mod served;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use pixdex_core::{DedupOptions, DedupPhase, DuplicateGroup};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::args::DedupArgs;

/// Where messages go: stdout, unless stdout carries a machine-readable report (`--json`,
/// `--csv -`); then stderr.
pub(crate) struct Messages {
    to_stderr: bool,
}

impl Messages {
    pub(crate) fn say(&self, line: impl std::fmt::Display) -> std::io::Result<()> {
        if self.to_stderr {
            writeln!(std::io::stderr().lock(), "{line}")
        } else {
            writeln!(std::io::stdout().lock(), "{line}")
        }
    }
}

/// What the groups add up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Summary {
    pub groups: usize,
    pub exact: usize,
    pub near: usize,
    /// Images in some group.
    pub images: usize,
    /// Members that are not keepers.
    pub copies: usize,
    /// Bytes of the members that are not keepers.
    pub reclaimable: u64,
}

impl Summary {
    pub(crate) fn of(groups: &[DuplicateGroup]) -> Self {
        let mut s = Self { groups: groups.len(), ..Self::default() };
        for g in groups {
            match g.kind {
                pixdex_core::DuplicateKind::Exact => s.exact += 1,
                pixdex_core::DuplicateKind::Near => s.near += 1,
            }
            s.images += g.members.len();
            s.copies += g.members.len().saturating_sub(1);
            s.reclaimable += g.members.iter().skip(1).map(|m| m.record.size).sum::<u64>();
        }
        s
    }

    pub(crate) fn line(&self) -> String {
        if self.groups == 0 {
            return "no duplicates found".to_string();
        }
        format!(
            "{} {} ({} exact, {} near), {} images in groups; {} reclaimable ({} bytes in the {} {} not kept)",
            self.groups,
            plural(self.groups, "group", "groups"),
            self.exact,
            self.near,
            self.images,
            human_bytes(self.reclaimable),
            self.reclaimable,
            self.copies,
            plural(self.copies, "copy", "copies"),
        )
    }
}

pub(crate) fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 { one } else { many }
}

/// A byte count for people: `812 B`, `20.7 kB`, `3.4 MB` (decimal units, as file managers show).
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    while value >= 999.95 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A path as text for reports (lossy where it is not UTF-8).
pub(crate) fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The scope as the collection stores paths (absolute, symbolic links resolved, as `index` does
/// with its roots): an existing folder means the images inside it; anything else is the start of
/// a path, made absolute when relative.
fn resolve_prefix(prefix: &str) -> String {
    let path = Path::new(prefix);
    if path.is_dir()
        && let Ok(dir) = std::fs::canonicalize(path)
    {
        let mut s = path_text(&dir);
        if !s.ends_with(std::path::MAIN_SEPARATOR) {
            s.push(std::path::MAIN_SEPARATOR);
        }
        return s;
    }
    if path.is_relative()
        && let Ok(abs) = std::path::absolute(path)
    {
        return path_text(&abs);
    }
    prefix.to_string()
}

/// What the progress bar says in each phase of the search.
fn phase_name(phase: DedupPhase) -> &'static str {
    match phase {
        DedupPhase::Searching => "neighbours (images)",
        DedupPhase::Verifying => "verifying (pairs)",
    }
}

/// A progress bar on stderr (hidden with `--quiet`; indicatif also hides it when stderr is not a
/// terminal).
fn bar(quiet: bool, template: &str) -> anyhow::Result<ProgressBar> {
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
    bar.set_style(ProgressStyle::with_template(template)?);
    Ok(bar)
}

pub fn run(args: DedupArgs) -> anyhow::Result<ExitCode> {
    // Ctrl-C: stop at the next safe point (between two moves, between two images); a second
    // Ctrl-C exits at once.
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\nstopping (Ctrl-C again to quit now)");
    })?;
    if let Some(log) = &args.undo {
        return moves::undo(log, &cancel);
    }

    let csv_to_stdout = args.csv.as_deref() == Some(Path::new("-"));
    let messages = Messages { to_stderr: args.json || csv_to_stdout };
    let options = DedupOptions {
        threshold: args.threshold,
        verify_from: args.verify_from,
        min_geometry: (!args.no_verify).then_some(args.min_geometry),
        neighbours: args.neighbours,
        path_prefix: args.prefix.as_deref().map(resolve_prefix),
        keeper_rule: args.keep.clone(),
    };
    let searching = bar(args.quiet, "{msg} {bar:30} {pos}/{len}, eta {eta}")?;
    let (groups, source) = match args.server.remote()? {
        Some(remote) => (served::find_groups(&remote, &options, &cancel, &searching)?, remote.url),
        None => {
            let db = args.db.location()?;
            let collection = db.open().with_context(|| format!("opening collection {}", db.describe()))?;
            let progress = |phase: DedupPhase, done: usize, total: usize| {
                searching.set_message(phase_name(phase));
                searching.set_length(total as u64);
                searching.set_position(done as u64);
            };
            let groups = collection.find_duplicates(&options, &progress, &cancel, &mut |_| {})?;
            // Nothing below needs the collection: let another process have it.
            (groups, db.describe())
        }
    };
    searching.finish_and_clear();
    if cancel.load(Ordering::SeqCst) {
        eprintln!("cancelled: nothing reported, nothing moved");
        return Ok(ExitCode::from(130));
    }

    let summary = Summary::of(&groups);
    if args.json {
        report::write_json(&groups, std::io::stdout().lock())?;
    } else if let Some(path) = &args.csv {
        if csv_to_stdout {
            report::write_csv(&groups, std::io::stdout().lock())?;
        } else {
            let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
            report::write_csv(&groups, std::io::BufWriter::new(file))
                .with_context(|| format!("writing {}", path.display()))?;
            messages.say(format_args!("wrote {}", path.display()))?;
        }
    } else if let Some(path) = &args.html {
        let thumbnails = bar(args.quiet, "thumbnails {bar:30} {pos}/{len} images, eta {eta}")?;
        let context = html::Context {
            collection: source.clone(),
            threshold: args.threshold,
            verification: match options.min_geometry {
                Some(g) => format!("patch check from {} at geometry ≥ {g}", options.verify_from),
                None => "no patch check".to_string(),
            },
            keeper_rule: args.keep.clone(),
            scope: options.path_prefix.clone(),
            summary,
        };
        let finished = html::write_report(&groups, &context, path, &thumbnails, &cancel)?;
        thumbnails.finish_and_clear();
        if !finished {
            eprintln!("cancelled: the report {} is incomplete; nothing moved", path.display());
            return Ok(ExitCode::from(130));
        }
        messages.say(format_args!("wrote {}", path.display()))?;
    } else {
        report::write_text(&groups, std::io::stdout().lock())?;
    }
    messages.say(summary.line())?;

    match &args.move_to {
        Some(dir) => moves::move_aside(&groups, dir, args.apply, &cancel, &messages),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// The UTC date and time of `t` as (year, month, day, hour, minute, second).
pub(crate) fn utc(t: std::time::SystemTime) -> (i64, u32, u32, u32, u32, u32) {
    let secs = match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, (rem / 3600) as u32, (rem % 3600 / 60) as u32, (rem % 60) as u32)
}

/// A path that does not exist yet: `path`, else `stem-1.ext`, `stem-2.ext`, … (also avoiding
/// `taken`, names promised to earlier moves of a dry run).
pub(crate) fn free_name(path: &Path, taken: &std::collections::HashSet<PathBuf>) -> std::io::Result<PathBuf> {
    let free = |p: &Path| {
        !taken.contains(p) && matches!(std::fs::symlink_metadata(p), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
    };
    if free(path) {
        return Ok(path.to_path_buf());
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
    for i in 1..100_000u32 {
        let candidate = path.with_file_name(format!("{stem}-{i}{ext}"));
        if free(&candidate) {
            return Ok(candidate);
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, format!("no free name for {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_uses_decimal_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(20_700), "20.7 kB");
        assert_eq!(human_bytes(999_999), "1.0 MB");
        assert_eq!(human_bytes(3_400_000_000), "3.4 GB");
    }

    #[test]
    fn utc_dates() {
        let at = |s: u64| utc(std::time::UNIX_EPOCH + std::time::Duration::from_secs(s));
        assert_eq!(at(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(at(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(at(1_735_689_599), (2024, 12, 31, 23, 59, 59));
        assert_eq!(at(4_107_542_400), (2100, 3, 1, 0, 0, 0));
    }

    #[test]
    fn free_names_get_a_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.jpg");
        let none = std::collections::HashSet::new();
        assert_eq!(free_name(&p, &none).unwrap(), p);
        std::fs::write(&p, b"x").unwrap();
        assert_eq!(free_name(&p, &none).unwrap(), dir.path().join("a-1.jpg"));
        let taken = [dir.path().join("a-1.jpg")].into_iter().collect();
        assert_eq!(free_name(&p, &taken).unwrap(), dir.path().join("a-2.jpg"));
        let bare = dir.path().join("README");
        std::fs::write(&bare, b"x").unwrap();
        assert_eq!(free_name(&bare, &none).unwrap(), dir.path().join("README-1"));
    }
}
