//! Moving one file without ever replacing another, durably, across filesystems too.
//!
//! On one filesystem a move is a hard link to the new name (which fails if the name is taken:
//! no check-then-rename race) and the removal of the old name; where hard links are not
//! available, a rename after checking the name is free. Across filesystems it is a copy into a
//! temporary name beside the destination, fsync, a check that the copy has the expected size and
//! blake3, the placing of the copy, and only then the removal of the original. Directories are
//! fsynced after each step, so a crash leaves the file at one place or the other (or, at worst,
//! at both, never at neither).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The size and blake3 a file must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Content {
    pub size: u64,
    pub blake3: [u8; 32],
}

/// Size and blake3 of a file, read to its end.
pub(crate) fn content_of(path: &Path) -> io::Result<Content> {
    let mut hasher = blake3::Hasher::new();
    let size = io::copy(&mut File::open(path)?, &mut hasher)?;
    Ok(Content { size, blake3: *hasher.finalize().as_bytes() })
}

/// How a file was moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// Linked under the new name, then unlinked from the old one.
    Linked,
    /// Renamed (no hard links on this filesystem).
    Renamed,
    /// Copied to another filesystem, verified, and removed from the first.
    Copied,
}

/// Moves `from` to `to`, failing with `AlreadyExists` if `to` exists. `expected` is what the
/// file holds (checked on the copy when the move crosses filesystems).
pub(crate) fn move_no_replace(from: &Path, to: &Path, expected: Content) -> io::Result<Method> {
    if let Some(method) = move_within_filesystem(from, to)? {
        return Ok(method);
    }
    copy_verify_remove(from, to, expected)?;
    Ok(Method::Copied)
}

/// A move within one filesystem, or `None` when `from` and `to` are on different ones.
fn move_within_filesystem(from: &Path, to: &Path) -> io::Result<Option<Method>> {
    match fs::hard_link(from, to) {
        Ok(()) => {
            sync_parent(to)?;
            if let Err(e) = fs::remove_file(from) {
                // Leave things as they were: the file under its old name only.
                let _ = fs::remove_file(to);
                let _ = sync_parent(to);
                return Err(e);
            }
            sync_parent(from)?;
            return Ok(Some(Method::Linked));
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
        // Another filesystem, or one without hard links: try a rename.
        Err(_) => {}
    }
    if exists(to)? {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", to.display())));
    }
    match fs::rename(from, to) {
        Ok(()) => {
            sync_parent(to)?;
            sync_parent(from)?;
            Ok(Some(Method::Renamed))
        }
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => Ok(None),
        Err(e) => Err(e),
    }
}

/// Copies `from` into a temporary file beside `to`, fsyncs and verifies it (size and blake3 as
/// `expected`, both as read from `from` and as read back), places it at `to` without replacing
/// anything, then removes `from`. On failure before the removal, `from` is untouched and the
/// temporary file is gone.
pub(crate) fn copy_verify_remove(from: &Path, to: &Path, expected: Content) -> io::Result<()> {
    let tmp = temporary_beside(to)?;
    let placed = copy_and_place(from, to, &tmp, expected);
    if placed.is_err() {
        let _ = fs::remove_file(&tmp);
        return placed;
    }
    fs::remove_file(from).map_err(|e| {
        io::Error::new(e.kind(), format!("copied to {}, but could not remove the original: {e}", to.display()))
    })?;
    sync_parent(from)
}

fn copy_and_place(from: &Path, to: &Path, tmp: &Path, expected: Content) -> io::Result<()> {
    let mut source = File::open(from)?;
    let metadata = source.metadata()?;
    let mut copy = OpenOptions::new().write(true).create_new(true).open(tmp)?;
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = match source.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..n]);
        copy.write_all(&buffer[..n])?;
        size += n as u64;
    }
    let read = Content { size, blake3: *hasher.finalize().as_bytes() };
    if read != expected {
        return Err(io::Error::other(format!("{} changed while it was being copied", from.display())));
    }
    // Best effort: the permissions and the modification time travel with the file.
    let _ = copy.set_permissions(metadata.permissions());
    if let Ok(modified) = metadata.modified() {
        let _ = copy.set_modified(modified);
    }
    copy.sync_all()?;
    drop(copy);
    let written = content_of(tmp)?;
    if written != expected {
        return Err(io::Error::other(format!("the copy at {} differs from the original", tmp.display())));
    }
    match move_within_filesystem(tmp, to)? {
        Some(_) => Ok(()),
        None => Err(io::Error::other("the temporary copy is on another filesystem than its destination")),
    }
}

/// An unused name in `to`'s folder for a copy in progress.
fn temporary_beside(to: &Path) -> io::Result<PathBuf> {
    let name = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let folder = to.parent().unwrap_or(Path::new("."));
    for i in 0..1000u32 {
        let candidate = folder.join(format!(".{name}.pixdex-partial-{}-{i}", std::process::id()));
        if !exists(&candidate)? {
            return Ok(candidate);
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("no free temporary name in {}", folder.display())))
}

/// Whether anything (a file, a folder, a dangling link) has this name.
pub(crate) fn exists(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Makes a change of the folder holding `path` (a new or removed name) durable.
pub(crate) fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

/// fsyncs a folder (Unix; elsewhere a no-op).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Whether two names are the same file (hard links of one inode).
pub(crate) fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        a.dev() == b.dev() && a.ino() == b.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, bytes: &[u8]) -> Content {
        fs::write(path, bytes).unwrap();
        content_of(path).unwrap()
    }

    #[test]
    fn moves_and_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let content = write(&a, b"first");
        assert_eq!(move_no_replace(&a, &b, content).unwrap(), Method::Linked);
        assert!(!a.exists());
        assert_eq!(fs::read(&b).unwrap(), b"first");
        let other = write(&a, b"second");
        let err = move_no_replace(&a, &b, other).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&a).unwrap(), b"second");
        assert_eq!(fs::read(&b).unwrap(), b"first");
    }

    #[test]
    fn the_copy_path_verifies_keeps_mtime_and_removes_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.jpg"), dir.path().join("b.jpg"));
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let content = write(&a, &bytes);
        let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        File::options().write(true).open(&a).unwrap().set_modified(mtime).unwrap();
        copy_verify_remove(&a, &b, content).unwrap();
        assert!(!a.exists());
        assert_eq!(fs::read(&b).unwrap(), bytes);
        assert_eq!(fs::metadata(&b).unwrap().modified().unwrap(), mtime);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("b.jpg")]);
    }

    #[test]
    fn a_copy_that_does_not_match_leaves_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write(&a, b"what is there");
        let wrong = Content { size: 13, blake3: [0; 32] };
        assert!(copy_verify_remove(&a, &b, wrong).is_err());
        assert_eq!(fs::read(&a).unwrap(), b"what is there");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no copy or temporary file left");
        // A taken destination: nothing replaced, nothing removed.
        let content = write(&a, b"mine");
        write(&b, b"theirs");
        assert_eq!(copy_verify_remove(&a, &b, content).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&a).unwrap(), b"mine");
        assert_eq!(fs::read(&b).unwrap(), b"theirs");
    }
}
