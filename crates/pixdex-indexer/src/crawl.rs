//! Finding image files under one or more roots (walkdir): images are recognised by their first
//! bytes, not their names; hidden files, symlinks and include/exclude globs are options.

use globset::{Glob, GlobSet, GlobSetBuilder};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::error::{Error, Result};

/// What to crawl.
#[derive(Debug, Clone, Default)]
pub struct CrawlOptions {
    /// Folders to walk.
    pub roots: Vec<PathBuf>,
    /// Enter hidden files and folders (names starting with `.`).
    pub include_hidden: bool,
    /// Follow symbolic links (loops are detected and reported).
    pub follow_links: bool,
    /// If non-empty, only paths matching one of these globs.
    pub include: Vec<String>,
    /// Paths matching any of these globs are skipped.
    pub exclude: Vec<String>,
}

impl CrawlOptions {
    /// The folders indexed files must resolve into: the roots, canonical, unless links are
    /// followed (then they may lead anywhere, by the user's choice).
    pub fn confinement(&self) -> Vec<PathBuf> {
        if self.follow_links {
            return Vec::new();
        }
        self.roots.iter().filter_map(|r| std::fs::canonicalize(r).ok()).collect()
    }
}

/// A file that looks like an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundFile {
    /// Absolute path.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

/// A file's modification time as the collection records it: nanoseconds since the Unix epoch.
pub(crate) fn mtime_ns(meta: &std::fs::Metadata) -> i64 {
    meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// What a crawl found.
#[derive(Debug, Default)]
pub struct Crawl {
    /// Image files, sorted by path.
    pub files: Vec<FoundFile>,
    /// Roots that do not exist or are not folders.
    pub missing_roots: Vec<PathBuf>,
    /// Entries that could not be read (permissions, symlink loops), with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
    /// Files that are not images.
    pub not_images: usize,
}

/// Image formats recognised by their magic bytes: JPEG, PNG, GIF, BMP, TIFF, WebP.
pub fn sniff_image(head: &[u8]) -> bool {
    head.starts_with(&[0xFF, 0xD8, 0xFF])
        || head.starts_with(b"\x89PNG\r\n\x1a\n")
        || head.starts_with(b"GIF87a")
        || head.starts_with(b"GIF89a")
        || head.starts_with(b"BM")
        || head.starts_with(b"II*\0")
        || head.starts_with(b"MM\0*")
        || (head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP")
}

fn globset(patterns: &[String]) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|e| Error::Options(format!("bad glob `{p}`: {e}")))?);
    }
    Ok(Some(b.build().map_err(|e| Error::Options(e.to_string()))?))
}

fn is_hidden(entry: &walkdir::DirEntry) -> bool {
    entry.depth() > 0 && entry.file_name().to_str().is_some_and(|s| s.starts_with('.'))
}

/// Walks every root and returns the image files (by content) with their size and mtime.
pub fn crawl(opts: &CrawlOptions) -> Result<Crawl> {
    let include = globset(&opts.include)?;
    let exclude = globset(&opts.exclude)?;
    let mut out = Crawl::default();
    let confinement = opts.confinement();
    for root in &opts.roots {
        let root = match std::fs::canonicalize(root) {
            Ok(r) if r.is_dir() => r,
            _ => {
                out.missing_roots.push(root.clone());
                continue;
            }
        };
        let walker = walkdir::WalkDir::new(&root).follow_links(opts.follow_links).into_iter();
        for entry in walker.filter_entry(|e| opts.include_hidden || !is_hidden(e)) {
            let entry = match entry {
                Ok(e) => e,
                Err(err) => {
                    let path = err.path().map(Path::to_path_buf).unwrap_or_else(|| root.clone());
                    tracing::warn!(path = %path.display(), %err, "skipped");
                    out.unreadable.push((path, err.to_string()));
                    continue;
                }
            };
            if !entry.file_type().is_file() {
                continue;
            }
            let path = entry.path();
            let rel = path.strip_prefix(&root).unwrap_or(path);
            if exclude.as_ref().is_some_and(|g| g.is_match(rel) || g.is_match(path))
                || include.as_ref().is_some_and(|g| !g.is_match(rel) && !g.is_match(path))
            {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(err) => {
                    out.unreadable.push((path.to_path_buf(), err.to_string()));
                    continue;
                }
            };
            let mut head = [0u8; 16];
            // Opened as the index job opens it: without blocking, and inside the roots.
            let opened = crate::decode::open_image_file(path, opts.follow_links, &confinement);
            let n = match opened.and_then(|mut f| f.read(&mut head)) {
                Ok(n) => n,
                Err(err) => {
                    out.unreadable.push((path.to_path_buf(), err.to_string()));
                    continue;
                }
            };
            // A file named like an image is taken even if its bytes are not one, so that a corrupt
            // or empty photo is recorded as failed rather than silently ignored.
            let named_like_image = path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                matches!(
                    e.to_ascii_lowercase().as_str(),
                    "jpg" | "jpeg" | "png" | "gif" | "bmp" | "tif" | "tiff" | "webp"
                )
            });
            if !(sniff_image(&head[..n]) || named_like_image) {
                out.not_images += 1;
                continue;
            }
            let mtime_ns = mtime_ns(&meta);
            out.files.push(FoundFile { path: path.to_path_buf(), size: meta.len(), mtime_ns });
        }
    }
    out.files.sort_by(|a, b| a.path.cmp(&b.path));
    out.files.dedup_by(|a, b| a.path == b.path);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_hidden_and_content_sniffing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("keep/raw")).unwrap();
        std::fs::create_dir_all(root.join(".cache")).unwrap();
        let png = b"\x89PNG\r\n\x1a\n0000000000";
        for p in ["keep/a.png", "keep/raw/b.png", ".cache/c.png", "keep/no-extension"] {
            std::fs::write(root.join(p), png).unwrap();
        }
        std::fs::write(root.join("keep/readme.md"), b"# hello").unwrap();
        let names = |opts: CrawlOptions| -> Vec<String> {
            crawl(&opts)
                .unwrap()
                .files
                .iter()
                .map(|f| f.path.strip_prefix(std::fs::canonicalize(root).unwrap()).unwrap().display().to_string())
                .collect()
        };
        let base = CrawlOptions { roots: vec![root.to_path_buf()], ..Default::default() };
        assert_eq!(names(base.clone()), ["keep/a.png", "keep/no-extension", "keep/raw/b.png"]);
        assert_eq!(names(CrawlOptions { include_hidden: true, ..base.clone() }).len(), 4);
        assert_eq!(
            names(CrawlOptions { exclude: vec!["**/raw/**".into()], ..base.clone() }),
            ["keep/a.png", "keep/no-extension"]
        );
        assert_eq!(
            names(CrawlOptions { include: vec!["*.png".into(), "**/*.png".into()], ..base.clone() }),
            ["keep/a.png", "keep/raw/b.png"]
        );
        let missing = crawl(&CrawlOptions { roots: vec![root.join("nope")], ..Default::default() }).unwrap();
        assert_eq!(missing.missing_roots.len(), 1);
        assert!(crawl(&CrawlOptions { exclude: vec!["[".into()], ..base }).is_err());
    }

    #[test]
    fn sniffs_magic_bytes() {
        assert!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0]));
        assert!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "));
        assert!(sniff_image(b"II*\0\x08"));
        assert!(!sniff_image(b"%PDF-1.7"));
        assert!(!sniff_image(b"RIFF\0\0\0\0WAVE"));
    }
}
