//! The region index on disk, so that a restart does not rebuild it: one file beside the
//! collection, written to a temporary name, synced and renamed over the old one (a crash leaves
//! the old file or the new, never half of one), and ending in a blake3 hash of everything before
//! it (a truncated or damaged file is detected and rebuilt, never half-read).
//!
//! Layout, little-endian: magic, version, `dim`, list count; centroids (f32); list sizes (u32);
//! tokens, tokens trained on, generation (u64); images (id u64, cols u16, cells per px f32,
//! group i32); ids seen (u64); groups (key i32, then per list its length, slots u32, cells u16);
//! the hash.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use super::{IvfImage, PatchIvf, PostingList};
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"PXRIVF\0\0";
const VERSION: u32 = 1;

struct HashingWriter<W: Write> {
    inner: W,
    hasher: blake3::Hasher,
}

impl<W: Write> HashingWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hasher.update(bytes);
        self.inner.write_all(bytes)
    }

    fn u32s(&mut self, values: impl IntoIterator<Item = u32>) -> std::io::Result<()> {
        let bytes: Vec<u8> = values.into_iter().flat_map(u32::to_le_bytes).collect();
        self.put(&bytes)
    }
}

struct HashingReader<R: Read> {
    inner: R,
    hasher: blake3::Hasher,
    /// Bytes left in the file: no length read from it may ask for more.
    left: u64,
}

impl<R: Read> HashingReader<R> {
    fn take(&mut self, n: usize) -> Result<Vec<u8>> {
        if n as u64 > self.left {
            return Err(corrupt("a length runs past the end of the file"));
        }
        let mut buf = vec![0u8; n];
        self.inner.read_exact(&mut buf).map_err(corrupt)?;
        self.hasher.update(&buf);
        self.left -= n as u64;
        Ok(buf)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn count(&mut self, item_bytes: usize) -> Result<usize> {
        let n = self.u64()?;
        if n.saturating_mul(item_bytes as u64) > self.left {
            return Err(corrupt("a count runs past the end of the file"));
        }
        Ok(n as usize)
    }

    fn u32s(&mut self, n: usize) -> Result<Vec<u32>> {
        Ok(self.take(n * 4)?.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    fn f32s(&mut self, n: usize) -> Result<Vec<f32>> {
        Ok(self.take(n * 4)?.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
}

fn corrupt(reason: impl ToString) -> Error {
    Error::Corrupt { what: "region index file".into(), reason: reason.to_string() }
}

impl PatchIvf {
    /// Writes the index to `path` atomically.
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let io = |source| Error::Io { path: tmp.clone(), source };
        let file = File::create(&tmp).map_err(io)?;
        let mut w = HashingWriter { inner: BufWriter::with_capacity(1 << 20, file), hasher: blake3::Hasher::new() };
        self.write_to(&mut w).map_err(io)?;
        let hash = w.hasher.finalize();
        w.inner.write_all(hash.as_bytes()).map_err(io)?;
        let file = w.inner.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        if let Some(dir) = path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn write_to<W: Write>(&self, w: &mut HashingWriter<W>) -> std::io::Result<()> {
        let n_lists = self.list_sizes.len();
        w.put(MAGIC)?;
        w.u32s([VERSION, self.dim as u32, n_lists as u32])?;
        w.put(&self.centroids.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())?;
        w.u32s(self.list_sizes.iter().copied())?;
        for v in [self.tokens as u64, self.trained_on as u64, self.generation] {
            w.put(&v.to_le_bytes())?;
        }
        w.put(&(self.images.len() as u64).to_le_bytes())?;
        let mut bytes = Vec::with_capacity(self.images.len() * 18);
        for i in &self.images {
            bytes.extend(i.id.to_le_bytes());
            bytes.extend(i.cols.to_le_bytes());
            bytes.extend(i.cells_per_px.to_le_bytes());
            bytes.extend(i.group.to_le_bytes());
        }
        w.put(&bytes)?;
        let mut seen: Vec<u64> = self.seen.iter().copied().collect();
        seen.sort_unstable();
        w.put(&(seen.len() as u64).to_le_bytes())?;
        w.put(&seen.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())?;
        w.put(&(self.groups.len() as u64).to_le_bytes())?;
        for (group, lists) in &self.groups {
            w.put(&group.to_le_bytes())?;
            for list in lists {
                w.put(&(list.slots.len() as u64).to_le_bytes())?;
                w.u32s(list.slots.iter().copied())?;
                w.put(&list.cells.iter().flat_map(|c| c.to_le_bytes()).collect::<Vec<u8>>())?;
            }
        }
        Ok(())
    }

    /// Reads an index written by [`PatchIvf::save`]; `Ok(None)` when there is no file, an error
    /// when it is damaged or of another version (the caller rebuilds).
    pub(crate) fn load(path: &Path) -> Result<Option<Self>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path: path.to_path_buf(), source }),
        };
        let len = file.metadata().map_err(|source| Error::Io { path: path.to_path_buf(), source })?.len();
        if len < 32 {
            return Err(corrupt("shorter than its hash"));
        }
        let mut r = HashingReader {
            inner: BufReader::with_capacity(1 << 20, file),
            hasher: blake3::Hasher::new(),
            left: len - 32,
        };
        let ivf = Self::read_from(&mut r)?;
        if r.left != 0 {
            return Err(corrupt("bytes after the index"));
        }
        let mut hash = [0u8; 32];
        r.inner.read_exact(&mut hash).map_err(corrupt)?;
        if r.hasher.finalize() != blake3::Hash::from_bytes(hash) {
            return Err(corrupt("hash mismatch"));
        }
        Ok(Some(ivf))
    }

    fn read_from<R: Read>(r: &mut HashingReader<R>) -> Result<Self> {
        if r.take(8)? != MAGIC {
            return Err(corrupt("not a region index"));
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(corrupt(format!("version {version}, this build reads {VERSION}")));
        }
        let (dim, n_lists) = (r.u32()? as usize, r.u32()? as usize);
        if dim == 0 || n_lists == 0 {
            return Err(corrupt("empty codebook"));
        }
        let centroids = r.f32s(dim.saturating_mul(n_lists))?;
        let list_sizes = r.u32s(n_lists)?;
        let (tokens, trained_on, generation) = (r.u64()? as usize, r.u64()? as usize, r.u64()?);
        let n_images = r.count(18)?;
        let images = r
            .take(n_images * 18)?
            .chunks_exact(18)
            .map(|b| IvfImage {
                id: u64::from_le_bytes(b[0..8].try_into().expect("8 bytes")),
                cols: u16::from_le_bytes([b[8], b[9]]),
                cells_per_px: f32::from_le_bytes(b[10..14].try_into().expect("4 bytes")),
                group: i32::from_le_bytes(b[14..18].try_into().expect("4 bytes")),
            })
            .collect::<Vec<_>>();
        let n_seen = r.count(8)?;
        let seen: HashSet<u64> =
            r.take(n_seen * 8)?.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))).collect();
        let n_groups = r.count(4 + 8 * n_lists)?;
        let mut groups = BTreeMap::new();
        for _ in 0..n_groups {
            let group = r.u32()? as i32;
            let mut lists = Vec::with_capacity(n_lists);
            for _ in 0..n_lists {
                let n = r.count(6)?;
                let slots = r.u32s(n)?;
                if slots.iter().any(|&s| s as usize >= images.len()) {
                    return Err(corrupt("a posting names no image"));
                }
                let cells = r.take(n * 2)?.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
                lists.push(PostingList { slots, cells });
            }
            groups.insert(group, lists);
        }
        Ok(Self {
            dim,
            centroids,
            groups,
            list_sizes,
            images,
            tokens,
            trained_on,
            generation,
            seen,
            caught_up_to: None,
            unsaved: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_index() -> PatchIvf {
        let dim = 4;
        let sample: Vec<f32> = (0..64).map(|i| ((i * 7 % 13) as f32 - 6.0) / 6.0).collect();
        let mut ivf = PatchIvf::train(&sample, dim, 4, 16);
        for (i, group) in [(1u64, 0), (2, 1), (5, 0)] {
            let grid =
                crate::vectors::PatchGrid::new(2, 2, dim, sample[(i as usize) * 4..(i as usize) * 4 + 16].to_vec())
                    .expect("2×2×4");
            ivf.add(IvfImage { id: i, cols: 2, cells_per_px: 0.5, group }, &grid);
        }
        ivf.seen.insert(9);
        ivf.generation = 7;
        ivf
    }

    #[test]
    fn an_index_survives_a_round_trip_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("region_index");
        assert!(PatchIvf::load(&path).unwrap().is_none());
        let ivf = small_index();
        ivf.save(&path).unwrap();
        let back = PatchIvf::load(&path).unwrap().unwrap();
        assert_eq!(back.centroids, ivf.centroids);
        assert_eq!(back.groups, ivf.groups);
        assert_eq!(back.images, ivf.images);
        assert_eq!(back.seen, ivf.seen);
        assert_eq!((back.tokens, back.trained_on, back.generation), (12, 16, 7));
        let bytes = std::fs::read(&path).unwrap();
        // Cut anywhere, or one byte changed anywhere: refused, never a panic.
        for cut in [0, 7, 40, bytes.len() / 2, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            assert!(PatchIvf::load(&path).is_err(), "cut at {cut}");
        }
        for at in (0..bytes.len()).step_by(5) {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            std::fs::write(&path, &damaged).unwrap();
            assert!(PatchIvf::load(&path).is_err(), "byte {at} changed");
        }
    }
}
