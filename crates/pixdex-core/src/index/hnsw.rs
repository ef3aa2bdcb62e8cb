//! The HNSW graph over global vectors (hnsw_rs), a cache of the `global` tree.
//!
//! * `DistL2` on unit vectors ranks exactly as cosine and is SIMD (DistCosine is scalar, DistDot
//!   asserts on rounding); similarity is recovered as `1 − d²/2`.
//! * hnsw_rs has no delete: removed ids are tombstones filtered at query time until a rebuild.
//! * Persisted as `hnsw/` next to sled with a `state.json` naming the sled generation it reflects
//!   and its member ids, so that opening can load it and catch up with what changed since.

use hnsw_rs::api::AnnT;
use hnsw_rs::prelude::{DistL2, Hnsw, HnswIo};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const MAX_CONNECTIONS: usize = 16;
const MAX_LAYERS: usize = 16;
const EF_CONSTRUCTION: usize = 200;
const BASENAME: &str = "global";

pub(crate) struct HnswIndex {
    graph: Hnsw<'static, f32, DistL2>,
    members: HashSet<u64>,
    tombstones: HashSet<u64>,
    dim: usize,
}

#[derive(Serialize, Deserialize)]
struct State {
    generation: u64,
    dim: usize,
    basename: String,
    members: Vec<u64>,
    tombstones: Vec<u64>,
}

impl HnswIndex {
    pub(crate) fn new(dim: usize, capacity: usize) -> Self {
        let graph = Hnsw::new(MAX_CONNECTIONS, capacity.max(1024), MAX_LAYERS, EF_CONSTRUCTION, DistL2 {});
        Self { graph, members: HashSet::new(), tombstones: HashSet::new(), dim }
    }

    /// Live points (members that are not tombstones).
    pub(crate) fn live_len(&self) -> usize {
        self.members.len() - self.tombstones.len()
    }

    pub(crate) fn tombstone_count(&self) -> usize {
        self.tombstones.len()
    }

    pub(crate) fn tombstone_ratio(&self) -> f64 {
        if self.members.is_empty() { 0.0 } else { self.tombstones.len() as f64 / self.members.len() as f64 }
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        self.members.contains(&id) && !self.tombstones.contains(&id)
    }

    pub(crate) fn member_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.members.iter().copied()
    }

    /// Adds vectors (parallel insert); ids already present are skipped.
    pub(crate) fn insert(&mut self, items: &[(u64, Vec<f32>)]) {
        let fresh: Vec<(&Vec<f32>, usize)> = items
            .iter()
            .filter(|(id, v)| v.len() == self.dim && !self.members.contains(id))
            .map(|(id, v)| (v, *id as usize))
            .collect();
        if fresh.is_empty() {
            return;
        }
        self.graph.parallel_insert(&fresh);
        self.members.extend(fresh.iter().map(|(_, id)| *id as u64));
    }

    pub(crate) fn remove(&mut self, id: u64) {
        if self.members.contains(&id) {
            self.tombstones.insert(id);
        }
    }

    /// The `k` nearest live ids for which `keep` (if given) is true, with cosine similarity,
    /// best first. Filtering happens inside the graph search, which walks past rejected ids, so
    /// `k` results come back when the graph has them.
    pub(crate) fn search_where(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Vec<(u64, f32)> {
        if query.len() != self.dim || self.live_len() == 0 || k == 0 {
            return Vec::new();
        }
        let ef = ef.max(k);
        let found = match keep {
            None if self.tombstones.is_empty() => self.graph.search(query, k, ef),
            _ => {
                let filter = |id: &usize| {
                    let id = *id as u64;
                    !self.tombstones.contains(&id) && keep.is_none_or(|keep| keep(id))
                };
                self.graph.search_filter(query, k, ef, Some(&filter))
            }
        };
        found.into_iter().map(|n| (n.d_id as u64, 1.0 - n.distance * n.distance / 2.0)).collect()
    }

    /// Writes the graph into `dir/hnsw` atomically (temp folder, then rename).
    pub(crate) fn save(&self, dir: &Path, generation: u64) -> Result<()> {
        let final_dir = dir.join("hnsw");
        let tmp = dir.join(format!("hnsw.tmp-{}", std::process::id()));
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        let basename = if self.members.is_empty() {
            String::new()
        } else {
            self.graph
                .file_dump(&tmp, BASENAME)
                .map_err(|e| Error::Index { path: tmp.clone(), reason: e.to_string() })?
        };
        let mut members: Vec<u64> = self.members.iter().copied().collect();
        members.sort_unstable();
        let mut tombstones: Vec<u64> = self.tombstones.iter().copied().collect();
        tombstones.sort_unstable();
        let state = State { generation, dim: self.dim, basename, members, tombstones };
        let state_path = tmp.join("state.json");
        let json = serde_json::to_vec(&state).expect("state serialises");
        std::fs::write(&state_path, json).map_err(io_err(&state_path))?;
        sync_dir_files(&tmp)?;
        // Swap: a crash in between leaves no `hnsw/`, and the next open rebuilds from sled.
        let old = dir.join(format!("hnsw.old-{}", std::process::id()));
        if final_dir.exists() {
            std::fs::rename(&final_dir, &old).map_err(io_err(&final_dir))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(io_err(&final_dir))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    /// Loads `dir/hnsw` if present and readable; returns the generation it reflects.
    pub(crate) fn load(dir: &Path) -> Option<(Self, u64)> {
        let path = dir.join("hnsw");
        let state: State = serde_json::from_slice(&std::fs::read(path.join("state.json")).ok()?).ok()?;
        let graph = if state.basename.is_empty() {
            Hnsw::new(MAX_CONNECTIONS, 1024, MAX_LAYERS, EF_CONSTRUCTION, DistL2 {})
        } else {
            // hnsw_rs ties the graph's lifetime to its loader; the loader (~100 bytes, no mmap)
            // is leaked so the graph can live as long as the collection.
            let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(&path, &state.basename)));
            match io.load_hnsw::<f32, DistL2>() {
                Ok(g) => g,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable HNSW index; rebuilding");
                    return None;
                }
            }
        };
        let index = Self {
            graph,
            members: state.members.into_iter().collect(),
            tombstones: state.tombstones.into_iter().collect(),
            dim: state.dim,
        };
        Some((index, state.generation))
    }

    pub(crate) fn dim(&self) -> usize {
        self.dim
    }
}

fn sync_dir_files(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::Io { path: dir.to_path_buf(), source })?;
    for entry in entries.flatten() {
        let p: PathBuf = entry.path();
        if let Ok(f) = std::fs::File::open(&p) {
            f.sync_all().map_err(|source| Error::Io { path: p.clone(), source })?;
        }
    }
    Ok(())
}
