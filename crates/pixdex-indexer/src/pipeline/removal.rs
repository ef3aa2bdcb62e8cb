//! Removing the records of files that are gone, unless that looks like a disconnected drive.

use pixdex_core::{Collection, ImageId};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::crawl::FoundFile;
use crate::error::Result;

use super::{IndexReport, Progress, ProgressEvent};

/// Removes records under the crawled roots whose files are gone, unless that looks like a
/// disconnected drive (a missing or suddenly empty root) and `prune` is off.
pub(super) fn remove_missing(
    collection: &Collection,
    roots: &[PathBuf],
    found: &[FoundFile],
    missing_roots: &[PathBuf],
    prune: bool,
    progress: &dyn Progress,
    report: &mut IndexReport,
) -> Result<()> {
    let present: HashSet<&Path> = found.iter().map(|f| f.path.as_path()).collect();
    // A record is gone only if its file is: the crawl also leaves out files that exist (excluded
    // by a glob, hidden, unreadable folders), and those records must stay.
    let is_gone = |p: &Path| {
        !present.contains(p)
            && matches!(std::fs::symlink_metadata(p), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
    };
    let roots: Vec<(PathBuf, bool)> = roots
        .iter()
        .map(|r| {
            let missing = missing_roots.contains(r);
            let abs = std::fs::canonicalize(r).or_else(|_| std::path::absolute(r)).unwrap_or_else(|_| r.clone());
            (abs, missing)
        })
        .collect();
    let mut gone: Vec<(ImageId, usize)> = Vec::new();
    let mut stored_per_root = vec![0usize; roots.len()];
    for item in collection.records() {
        let (id, rec) = item?;
        // The most specific root that holds the file (roots may nest).
        let root = roots
            .iter()
            .enumerate()
            .filter(|(_, (r, _))| rec.path.starts_with(r))
            .max_by_key(|(_, (r, _))| r.components().count())
            .map(|(i, _)| i);
        if let Some(i) = root {
            stored_per_root[i] += 1;
            if is_gone(&rec.path) {
                gone.push((id, i));
            }
        }
    }
    let mut withheld = Vec::new();
    for (i, (root, missing)) in roots.iter().enumerate() {
        let found_here = found.iter().filter(|f| f.path.starts_with(root)).count();
        if *missing {
            withheld.push(format!("{} is missing", root.display()));
        } else if found_here == 0 && stored_per_root[i] > 0 {
            withheld.push(format!("{} has no images now ({} indexed before)", root.display(), stored_per_root[i]));
        }
    }
    let blocked: HashSet<usize> = if prune {
        HashSet::new()
    } else {
        roots
            .iter()
            .enumerate()
            .filter(|(i, (root, missing))| {
                *missing || (stored_per_root[*i] > 0 && !found.iter().any(|f| f.path.starts_with(root)))
            })
            .map(|(i, _)| i)
            .collect()
    };
    if !prune && !withheld.is_empty() {
        let reason = format!("{}; nothing was removed from it (use --prune to remove)", withheld.join("; "));
        progress.event(&ProgressEvent::RemovalWithheld { reason: reason.clone() });
        report.removal_withheld = Some(reason);
    }
    let removals: Vec<ImageId> = gone.into_iter().filter(|(_, i)| !blocked.contains(i)).map(|(id, _)| id).collect();
    if !removals.is_empty() {
        collection.commit(Vec::new(), &removals)?;
        report.removed = removals.len();
    }
    Ok(())
}
