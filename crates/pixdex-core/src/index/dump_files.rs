//! The files of a saved HNSW graph: their sizes and BLAKE3 hashes for `hnsw/state.json`, checked
//! before hnsw_rs reads them (it panics on a cut file), and fsynced before the folder is swapped in.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Name, size and BLAKE3 hash of every file in a dump folder (but the state).
pub(super) fn dump_files(dir: &Path) -> Result<Vec<(String, u64, String)>> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name == "state.json" {
            continue;
        }
        let (size, hash) = hash_file(&path).map_err(io_err(&path))?;
        files.push((name, size, hash));
    }
    files.sort();
    Ok(files)
}

fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::fs::File::open(path)?)?;
    Ok((hasher.count(), hasher.finalize().to_hex().to_string()))
}

/// Whether the dump files are the ones the state lists, byte for byte.
pub(super) fn check_dump_files(dir: &Path, files: &[(String, u64, String)]) -> std::result::Result<(), String> {
    for (name, size, hash) in files {
        if name.contains('/') || name.contains("..") {
            return Err(format!("bad file name {name:?}"));
        }
        let path = dir.join(name);
        let actual = std::fs::metadata(&path).map_err(|e| format!("{name}: {e}"))?.len();
        if actual != *size {
            return Err(format!("{name} has {actual} bytes, {size} were written"));
        }
        let (_, actual) = hash_file(&path).map_err(|e| format!("{name}: {e}"))?;
        if actual != *hash {
            return Err(format!("{name} differs from what was written (checksum)"));
        }
    }
    Ok(())
}

pub(super) fn sync_dir_files(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    for entry in entries.flatten() {
        let p: PathBuf = entry.path();
        if let Ok(f) = std::fs::File::open(&p) {
            f.sync_all().map_err(|source| Error::Io { path: p.clone(), source })?;
        }
    }
    Ok(())
}
