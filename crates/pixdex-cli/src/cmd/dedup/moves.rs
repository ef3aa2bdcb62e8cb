//! `--move-to DIR [--apply]` and `--undo LOG`.
//!
//! Every member that is not its group's keeper goes to `DIR/<its absolute path without the
//! leading />`; a name already taken there gets a `-1`, `-2`, … suffix. Without `--apply` this
//! is only printed. With it, each move is logged to `DIR/pixdex-moves-<UTC time>.jsonl`, one JSON
//! line fsynced before the move (`"state":"moving"`) and one after (`"moved"` or `"failed"`), each
//! with `from`, `to`, `size` and `blake3` (hex): a crash leaves a log that `--undo` can follow.
//!
//! Safety rules: nothing is deleted or replaced; a group whose keeper is missing or changed since
//! it was indexed moves nothing; a member whose bytes changed since it was indexed stays;
//! symbolic links stay. The collection is left untouched: the next `pixdex index` notices.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use pixdex_core::{DuplicateGroup, ImageRecord};

use super::fsops::{self, Content};
use super::{Messages, free_name, human_bytes, plural, utc};

/// One line of a move log.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LogLine {
    from: String,
    to: String,
    size: u64,
    blake3: String,
    /// `moving` (written before the move), `moved` or `failed` (after).
    #[serde(default)]
    state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// An append-only log whose every line is on disk before the call returns.
struct MoveLog {
    path: PathBuf,
    file: File,
}

impl MoveLog {
    /// `dir/pixdex-moves-<UTC time>.jsonl` (or with a `-N` suffix if that exists).
    fn create(dir: &Path) -> anyhow::Result<Self> {
        let (y, mo, d, h, mi, s) = utc(std::time::SystemTime::now());
        let stem = format!("pixdex-moves-{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z");
        for i in 0..1000u32 {
            let name = if i == 0 { format!("{stem}.jsonl") } else { format!("{stem}-{i}.jsonl") };
            let path = dir.join(name);
            match File::options().append(true).create_new(true).open(&path) {
                Ok(file) => {
                    fsops::sync_dir(dir).with_context(|| format!("syncing {}", dir.display()))?;
                    return Ok(Self { path, file });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e).with_context(|| format!("creating the move log {}", path.display())),
            }
        }
        anyhow::bail!("no free name for a move log in {}", dir.display())
    }

    fn append(&mut self, line: &LogLine) -> anyhow::Result<()> {
        let mut text = serde_json::to_string(line)?;
        text.push('\n');
        self.file.write_all(text.as_bytes()).with_context(|| format!("writing {}", self.path.display()))?;
        self.file.sync_data().with_context(|| format!("syncing {}", self.path.display()))
    }
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `dir` joined with `path` made relative (its root and any drive prefix dropped).
fn destination(dir: &Path, path: &Path) -> Result<PathBuf, String> {
    let mut out = dir.to_path_buf();
    for component in path.components() {
        match component {
            Component::Prefix(p) => {
                out.push(p.as_os_str().to_string_lossy().replace([':', '\\', '/', '?'], "").trim_matches('.'))
            }
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err("its path has `..` in it".to_string()),
            Component::Normal(part) => out.push(part),
        }
    }
    if out == dir {
        return Err("its path has no file name".to_string());
    }
    Ok(out)
}

/// Why a file must stay where it is, if it must: it is gone, is not a plain file, or (when
/// `content` is given: its bytes were read) is not what was indexed.
fn unchanged_since_indexed(record: &ImageRecord, content: Option<&Content>) -> Result<(), String> {
    let path = &record.path;
    let metadata = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err("is missing".to_string()),
        Err(e) => return Err(format!("cannot be read: {e}")),
    };
    if metadata.file_type().is_symlink() {
        return Err("is a symbolic link".to_string());
    }
    if !metadata.is_file() {
        return Err("is not a file".to_string());
    }
    let changed = "changed since it was indexed (run `pixdex index` first)".to_string();
    if metadata.len() != record.size {
        return Err(changed);
    }
    if let Some(c) = content
        && (c.size != record.size || c.blake3 != record.blake3)
    {
        return Err(changed);
    }
    Ok(())
}

/// Reads and checks a file that is about to be moved or relied on.
fn verified(record: &ImageRecord) -> Result<Content, String> {
    unchanged_since_indexed(record, None)?;
    let content = fsops::content_of(&record.path).map_err(|e| format!("cannot be read: {e}"))?;
    unchanged_since_indexed(record, Some(&content))?;
    Ok(content)
}

#[derive(Default)]
struct Tally {
    moved: usize,
    bytes: u64,
    skipped: usize,
    failed: usize,
}

/// Moves (or, without `apply`, lists) the members that are not keepers into `dir`.
pub(crate) fn move_aside(
    groups: &[DuplicateGroup],
    dir: &Path,
    apply: bool,
    cancel: &AtomicBool,
    messages: &Messages,
) -> anyhow::Result<ExitCode> {
    let dir = if apply {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?
    } else {
        fs::canonicalize(dir).or_else(|_| std::path::absolute(dir)).with_context(|| format!("{}", dir.display()))?
    };
    if dir.parent().is_none() {
        anyhow::bail!("--move-to needs a folder other than the root of the filesystem");
    }
    // Made at the first move: a run that moves nothing leaves no log.
    let mut log: Option<MoveLog> = None;
    let mut tally = Tally::default();
    let mut promised = HashSet::new();
    let mut stopped = false;
    'groups: for (g, group) in groups.iter().enumerate() {
        let keeper = &group.keeper().record;
        let others = group.members.get(1..).unwrap_or_default();
        // The copies go only while the kept one is really there.
        let keeper_check = if apply { verified(keeper).map(|_| ()) } else { unchanged_since_indexed(keeper, None) };
        if let Err(why) = keeper_check {
            eprintln!(
                "skipped group {}: its keeper {} {why}; none of its {} other {} moved",
                g + 1,
                keeper.path.display(),
                others.len(),
                plural(others.len(), "image is", "images are"),
            );
            tally.skipped += others.len();
            continue;
        }
        for member in others {
            if cancel.load(Ordering::SeqCst) {
                stopped = true;
                break 'groups;
            }
            let record = &member.record;
            let from = &record.path;
            let skip = |why: &str| eprintln!("skipped {}: {why}", from.display());
            if from.starts_with(&dir) {
                skip(&format!("already inside {}", dir.display()));
                tally.skipped += 1;
                continue;
            }
            let check =
                if apply { verified(record).map(Some) } else { unchanged_since_indexed(record, None).map(|()| None) };
            let content = match check {
                Ok(content) => content,
                Err(why) => {
                    skip(&why);
                    tally.skipped += 1;
                    continue;
                }
            };
            let to = match destination(&dir, from) {
                Ok(to) => to,
                Err(why) => {
                    skip(&why);
                    tally.skipped += 1;
                    continue;
                }
            };
            let Some(content) = content else {
                let to = free_name(&to, &promised).with_context(|| format!("naming {}", to.display()))?;
                messages.say(format_args!("would move {} → {}", from.display(), to.display()))?;
                promised.insert(to);
                tally.moved += 1;
                tally.bytes += record.size;
                continue;
            };
            let log = match &mut log {
                Some(log) => log,
                None => {
                    let created = MoveLog::create(&dir)?;
                    messages.say(format_args!("logging the moves to {}", created.path.display()))?;
                    log.insert(created)
                }
            };
            match move_one(from, &to, content, log) {
                Ok(to) => {
                    messages.say(format_args!("moved {} → {}", from.display(), to.display()))?;
                    tally.moved += 1;
                    tally.bytes += record.size;
                }
                Err(e) => {
                    eprintln!("failed to move {}: {e:#}", from.display());
                    tally.failed += 1;
                }
            }
        }
    }

    let files = |n: usize| format!("{n} {}", plural(n, "file", "files"));
    if !apply {
        messages.say(format_args!(
            "dry run: would move {} ({}) into {}; nothing was moved. Add --apply to move them.",
            files(tally.moved),
            human_bytes(tally.bytes),
            dir.display()
        ))?;
    } else {
        messages.say(format_args!(
            "moved {} ({}) into {}{}",
            files(tally.moved),
            human_bytes(tally.bytes),
            dir.display(),
            if tally.failed > 0 { format!("; {} failed", files(tally.failed)) } else { String::new() }
        ))?;
        if let Some(log) = &log {
            messages.say(format_args!("move log: {}", log.path.display()))?;
            messages.say(format_args!("undo with: pixdex dedup --undo {}", log.path.display()))?;
        }
        if tally.moved > 0 {
            messages.say(
                "the collection still lists the moved files until the next `pixdex index` of their folders \
                 (keep the --move-to folder outside them, or the moved copies are indexed again)",
            )?;
        }
    }
    if tally.skipped > 0 {
        eprintln!("{} skipped (see above)", files(tally.skipped));
    }
    if stopped {
        eprintln!("stopped by Ctrl-C before the end");
        return Ok(ExitCode::from(130));
    }
    Ok(if tally.failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Moves one file to a free name at or next to `to`, logged before and after. Returns where it
/// went.
fn move_one(from: &Path, to: &Path, content: Content, log: &mut MoveLog) -> anyhow::Result<PathBuf> {
    let folder = to.parent().context("a destination has a folder")?;
    fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    let to = free_name(to, &HashSet::new()).with_context(|| format!("naming {}", to.display()))?;
    let (Some(from_text), Some(to_text)) = (from.to_str(), to.to_str()) else {
        anyhow::bail!("the path is not UTF-8, so it cannot be logged (and undone); left where it is");
    };
    let mut line = LogLine {
        from: from_text.to_string(),
        to: to_text.to_string(),
        size: content.size,
        blake3: hex(&content.blake3),
        state: "moving".to_string(),
        error: None,
    };
    log.append(&line)?;
    let moved = fsops::move_no_replace(from, &to, content);
    line.state = if moved.is_ok() { "moved" } else { "failed" }.to_string();
    line.error = moved.as_ref().err().map(|e| e.to_string());
    let logged = log.append(&line);
    moved.with_context(|| format!("moving it to {}", to.display()))?;
    logged?;
    Ok(to)
}

enum Undone {
    Restored,
    AlreadyThere,
}

/// Moves the files of a move log back, newest first; a failure is reported and the others go on.
pub(crate) fn undo(log_path: &Path, cancel: &AtomicBool) -> anyhow::Result<ExitCode> {
    let text = fs::read_to_string(log_path).with_context(|| format!("reading the move log {}", log_path.display()))?;
    // One entry per move, its last line winning (`moving`, then `moved` or `failed`).
    let mut moves: Vec<LogLine> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<LogLine>(line) {
            Ok(entry) => match moves.iter_mut().find(|m| m.from == entry.from && m.to == entry.to) {
                Some(m) => *m = entry,
                None => moves.push(entry),
            },
            // The last line of a log cut short by a crash, or not a move log at all.
            Err(e) => eprintln!("warning: {}:{}: not a move ({e}); ignored", log_path.display(), n + 1),
        }
    }
    if moves.is_empty() {
        anyhow::bail!("{} lists no moves", log_path.display());
    }
    let log_dir = fs::canonicalize(log_path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .context("the move log's folder")?;
    let (mut restored, mut already, mut failed) = (0usize, 0usize, 0usize);
    let mut stopped = false;
    for entry in moves.iter().rev() {
        if cancel.load(Ordering::SeqCst) {
            stopped = true;
            break;
        }
        let (from, to) = (Path::new(&entry.from), Path::new(&entry.to));
        match undo_one(entry) {
            Ok(Undone::Restored) => {
                println!("restored {}", from.display());
                restored += 1;
                remove_empty_folders(to, &log_dir);
            }
            Ok(Undone::AlreadyThere) => {
                println!("already in place: {}", from.display());
                already += 1;
            }
            Err(why) => {
                eprintln!("failed to restore {}: {why}", from.display());
                failed += 1;
            }
        }
    }
    println!("{restored} restored, {already} already in place, {failed} failed");
    if restored > 0 {
        println!("if `pixdex index` ran since the move, run it again so that the collection lists the restored files");
    }
    if stopped {
        eprintln!("stopped by Ctrl-C before the end; run the same --undo again to finish");
        return Ok(ExitCode::from(130));
    }
    Ok(if failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn undo_one(entry: &LogLine) -> Result<Undone, String> {
    let (from, to) = (Path::new(&entry.from), Path::new(&entry.to));
    let lookup = |p: &Path| match fs::symlink_metadata(p) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot look at {}: {e}", p.display())),
    };
    match (lookup(to)?, lookup(from)?) {
        // Never moved (a crash right after the log line), or already moved back.
        (None, Some(_)) => Ok(Undone::AlreadyThere),
        (None, None) => Err(format!("the moved file {} is gone", to.display())),
        // A crash between linking the new name and unlinking the old: one file, two names.
        (Some(moved), Some(original)) if fsops::same_file(&moved, &original) => {
            fs::remove_file(to).map_err(|e| format!("removing the second name {}: {e}", to.display()))?;
            fsops::sync_parent(to).map_err(|e| e.to_string())?;
            Ok(Undone::Restored)
        }
        (Some(_), Some(_)) => Err(format!(
            "a file is at {} again; not overwriting it (the moved file stays at {})",
            from.display(),
            to.display()
        )),
        (Some(_), None) => {
            let content = fsops::content_of(to).map_err(|e| format!("reading {}: {e}", to.display()))?;
            if hex(&content.blake3) != entry.blake3 || content.size != entry.size {
                eprintln!("warning: {} changed since it was moved; restoring it as it is now", to.display());
            }
            if let Some(folder) = from.parent() {
                fs::create_dir_all(folder).map_err(|e| format!("creating {}: {e}", folder.display()))?;
            }
            fsops::move_no_replace(to, from, content).map_err(|e| format!("moving {} back: {e}", to.display()))?;
            Ok(Undone::Restored)
        }
    }
}

/// Removes the folders that a move created and that are empty now, from `path`'s folder up to
/// (not including) `top`. Only empty folders: `remove_dir` refuses anything else.
fn remove_empty_folders(path: &Path, top: &Path) {
    let mut folder = path.parent();
    while let Some(f) = folder {
        if f == top || !f.starts_with(top) || fs::remove_dir(f).is_err() {
            break;
        }
        folder = f.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_keep_the_absolute_layout() {
        let dir = Path::new("/aside");
        assert_eq!(destination(dir, Path::new("/home/u/p/x.jpg")).unwrap(), Path::new("/aside/home/u/p/x.jpg"));
        assert!(destination(dir, Path::new("/home/../etc/x.jpg")).is_err());
        assert!(destination(dir, Path::new("/")).is_err());
    }

    #[test]
    fn log_lines_round_trip_and_tolerate_missing_state() {
        let line = LogLine {
            from: "/a \"b\".jpg".into(),
            to: "/d/a \"b\".jpg".into(),
            size: 3,
            blake3: hex(&[0xab; 32]),
            state: "moved".into(),
            error: None,
        };
        let text = serde_json::to_string(&line).unwrap();
        assert!(!text.contains("error"), "{text}");
        let back: LogLine = serde_json::from_str(&text).unwrap();
        assert_eq!((back.from, back.to, back.size, back.state), (line.from, line.to, 3, line.state));
        let bare: LogLine = serde_json::from_str(r#"{"from":"/a","to":"/b","size":1,"blake3":"00"}"#).unwrap();
        assert_eq!(bare.state, "");
    }
}
