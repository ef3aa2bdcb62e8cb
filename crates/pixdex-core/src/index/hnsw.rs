//! The HNSW graph over global vectors (hnsw_rs), a cache of the `global` tree.
//!
//! * The graph's distance is [`CosineDistance`], `1 − a·b` clamped at 0, with this crate's SIMD
//!   dot product: on unit vectors it ranks as cosine, and it is cheaper than anndists' `CosineDistance`
//!   (DistCosine is scalar, DistDot asserts on rounding).
//! * hnsw_rs has no delete: removed ids are tombstones filtered at query time until a rebuild.
//! * Persisted as `hnsw/` next to sled with a `state.json` naming the sled generation it reflects
//!   and its member ids, so that opening can load it and catch up with what changed since.

use hnsw_rs::anndists::dist::distances::Distance;
use hnsw_rs::api::AnnT;
use hnsw_rs::prelude::{Hnsw, HnswIo};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

use super::dump_files::{check_dump_files, dump_files, sync_dir_files};

use super::flat_graph::FlatGraph;
use super::vector_table::VectorTable;
use super::{EXACT_SCAN_BELOW, SEARCH_EF};
use crate::error::{Error, Result};

const MAX_CONNECTIONS: usize = 16;
const MAX_LAYERS: usize = 16;
/// Beam width while inserting, by dimension (benches/hnsw_recall.rs, 100k clustered vectors, 2
/// cores; faiss uses 200). At 384-d, 64 builds in 41 s against 63 s at 100, for about 12 % fewer
/// queries per second at recall@10 ≥ 0.99. At 1280-d, 64 left recall at ef 32 at 0.949 (faiss:
/// 0.994); 128 reaches 0.997 there and builds in 195 s.
fn ef_construction(dim: usize) -> usize {
    if dim <= 512 { 64 } else { 128 }
}
const BASENAME: &str = "global";

/// `1 − a·b` for unit vectors, never negative (hnsw_rs asserts that distances are not).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CosineDistance;

impl Distance<f32> for CosineDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - super::dot::dot(a, b)).max(0.0)
    }
}

pub(crate) struct HnswIndex {
    /// Built and persisted by hnsw_rs; searched through `frozen`.
    graph: Hnsw<'static, f32, CosineDistance>,
    /// Every member's vector (dead slots are tombstones).
    table: VectorTable,
    /// The graph's links as of some earlier insert; slots after `frozen.covered()` are scanned
    /// exactly until the next freeze.
    frozen: Option<FlatGraph>,
    /// The beam width chosen by [`HnswIndex::calibrate`], with the live count it was measured
    /// at; until measured, [`SEARCH_EF`].
    search_ef: Option<(usize, usize)>,
}

#[derive(Clone, Serialize, Deserialize)]
struct State {
    generation: u64,
    dim: usize,
    basename: String,
    members: Vec<u64>,
    tombstones: Vec<u64>,
    /// The calibrated beam width and the live count it was measured at (absent in old states).
    #[serde(default)]
    search_ef: Option<(usize, usize)>,
    /// Every dump file's name, size and BLAKE3 hash (hex), checked before hnsw_rs reads them: it
    /// panics on a truncated file, which would make every open crash. Absent in states written
    /// before the check: such a dump is rebuilt once.
    #[serde(default)]
    files: Option<Vec<(String, u64, String)>>,
    /// BLAKE3 (hex) of this state written without it: a damaged file that still parses (a
    /// changed tombstone would hide or show an image) is rebuilt rather than trusted.
    #[serde(default)]
    checksum: Option<String>,
}

impl State {
    fn digest(&self) -> String {
        let unsigned = State { checksum: None, ..self.clone() };
        blake3::hash(&serde_json::to_vec(&unsigned).expect("state serialises")).to_hex().to_string()
    }
}

/// Recall@10 the default beam width is chosen to reach.
const TARGET_RECALL: f64 = 0.995;
/// Beam widths tried, narrowest first.
const EF_LADDER: [usize; 11] = [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512];
/// Queries the calibration measures recall with.
const CALIBRATION_QUERIES: usize = 200;

/// Slots inserted since the last freeze that trigger a new one: a fixed floor, and a sixteenth
/// of the graph so that freezing (linear in the graph) stays a small share of inserting.
fn refreeze_after(covered: usize) -> usize {
    (covered / 16).max(2048)
}

impl HnswIndex {
    pub(crate) fn new(dim: usize, capacity: usize) -> Self {
        let graph = Hnsw::new(MAX_CONNECTIONS, capacity.max(1024), MAX_LAYERS, ef_construction(dim), CosineDistance);
        Self { graph, table: VectorTable::new(dim), frozen: None, search_ef: None }
    }

    /// Live points (members that are not tombstones).
    pub(crate) fn live_len(&self) -> usize {
        self.table.live_len()
    }

    pub(crate) fn tombstone_count(&self) -> usize {
        self.table.len() - self.table.live_len()
    }

    pub(crate) fn tombstone_ratio(&self) -> f64 {
        if self.table.len() == 0 { 0.0 } else { self.tombstone_count() as f64 / self.table.len() as f64 }
    }

    pub(crate) fn contains(&self, id: u64) -> bool {
        self.table.slot(id).is_some_and(|s| self.table.is_live(s))
    }

    /// The live ids.
    pub(crate) fn live_ids(&self) -> HashSet<u64> {
        self.table.entries().filter(|(_, live)| *live).map(|(id, _)| id).collect()
    }

    /// Slots in the vector table (grows with every insert).
    pub(crate) fn slots(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn member_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.table.entries().map(|(id, _)| id)
    }

    /// The vector of a live member, from RAM.
    pub(crate) fn vector(&self, id: u64) -> Option<&[f32]> {
        self.table.live_vector(id)
    }

    /// Adds vectors (parallel insert); ids already present are skipped.
    pub(crate) fn insert(&mut self, items: &[(u64, Vec<f32>)]) {
        let dim = self.dim();
        let mut seen = HashSet::new();
        let fresh: Vec<(&Vec<f32>, usize)> = items
            .iter()
            .filter(|(id, v)| v.len() == dim && !self.table.contains(*id) && seen.insert(*id))
            .map(|(id, v)| (v, *id as usize))
            .collect();
        if fresh.is_empty() {
            return;
        }
        self.graph.parallel_insert(&fresh);
        for (v, id) in &fresh {
            self.table.push(*id as u64, v, true);
        }
        let covered = self.frozen.as_ref().map_or(0, FlatGraph::covered);
        if self.table.len() - covered >= refreeze_after(covered) {
            self.freeze();
        }
    }

    /// Copies the graph's current links for searching (linear in the graph: about a tenth of a
    /// second at 100k points).
    pub(crate) fn freeze(&mut self) {
        let covered = self.frozen.as_ref().map_or(0, FlatGraph::covered);
        if covered != self.table.len() {
            self.frozen = FlatGraph::freeze(&self.graph, &self.table);
        }
        let live = self.live_len();
        let stale = self.search_ef.is_none_or(|(_, at)| live * 4 > at * 5 || live * 5 < at * 4);
        if live >= EXACT_SCAN_BELOW && stale {
            self.search_ef = self.calibrate().map(|ef| (ef, live));
        }
    }

    /// The beam width similarity search uses by default: measured on this graph, or
    /// [`SEARCH_EF`] until it is big enough to measure.
    pub(crate) fn search_ef(&self) -> usize {
        self.search_ef.map_or(SEARCH_EF, |(ef, _)| ef)
    }

    /// The narrowest beam width on [`EF_LADDER`] whose recall@10 reaches [`TARGET_RECALL`],
    /// against an exact scan, for stored vectors queried as if they were not stored: the query's
    /// own point is neither returned nor walked through (leave-one-out), so it behaves like a new
    /// photo. On 100k clustered 384-d vectors it picks ef 32, where held-out queries reach 0.995;
    /// on uniform 64-d noise it is pessimistic (0.988 at 256 where held-out queries reach 0.992).
    /// About 0.5 s at 100k vectors on 2 cores.
    fn calibrate(&self) -> Option<usize> {
        let frozen = self.frozen.as_ref()?;
        let table = &self.table;
        let live: Vec<u32> = (0..frozen.covered() as u32).filter(|&s| table.is_live(s)).collect();
        let step = (live.len() / CALIBRATION_QUERIES).max(1);
        let queries: Vec<u32> = live.iter().step_by(step).take(CALIBRATION_QUERIES).copied().collect();
        let k = 10;
        let exact: Vec<HashSet<u64>> = queries
            .iter()
            .map(|&q| {
                let own = table.id(q);
                let keep = move |id: u64| id != own;
                table.scan(table.vector(q), k, 0..frozen.covered(), Some(&keep)).into_iter().map(|(id, _)| id).collect()
            })
            .collect();
        let wanted: usize = exact.iter().map(HashSet::len).sum();
        let reached = EF_LADDER.iter().position(|&ef| {
            let found: usize = queries
                .iter()
                .zip(&exact)
                .map(|(&q, truth)| {
                    let accept = |s: u32| s != q && table.is_live(s);
                    let hits = frozen.search_avoiding(table, table.vector(q), ef, &accept, Some(q));
                    hits.iter().take(k).filter(|(s, _)| truth.contains(&table.id(*s))).count()
                })
                .sum();
            tracing::trace!(ef, recall = found as f64 / wanted as f64, "HNSW calibration step");
            found as f64 >= TARGET_RECALL * wanted as f64
        });
        if reached.is_none() {
            tracing::warn!(
                ef = EF_LADDER[EF_LADDER.len() - 1],
                vectors = live.len(),
                "HNSW recall@10 stays below {TARGET_RECALL} at the widest beam calibrated; searches may miss neighbours (a wider ef per query still helps)"
            );
        }
        let ef = EF_LADDER[reached.unwrap_or(EF_LADDER.len() - 1)];
        tracing::debug!(ef, vectors = live.len(), "HNSW beam width calibrated");
        Some(ef)
    }

    pub(crate) fn remove(&mut self, id: u64) {
        self.table.kill(id);
    }

    /// The `k` nearest live ids for which `keep` (if given) is true, with cosine similarity,
    /// best first. Filtering happens inside the graph search, which walks past rejected ids, so
    /// `k` results come back when the graph has them. Points inserted since the last freeze are
    /// scanned exactly and merged in.
    pub(crate) fn search_where(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        keep: Option<&(dyn Fn(u64) -> bool + Sync)>,
    ) -> Vec<(u64, f32)> {
        if query.len() != self.dim() || self.live_len() == 0 || k == 0 {
            return Vec::new();
        }
        let ef = ef.max(k);
        let table = &self.table;
        let (mut found, covered) = match &self.frozen {
            Some(frozen) => {
                let accept = |slot: u32| table.is_live(slot) && keep.is_none_or(|keep| keep(table.id(slot)));
                let hits = frozen.search(table, query, ef, &accept);
                (hits.into_iter().take(k).map(|(slot, s)| (table.id(slot), s)).collect(), frozen.covered())
            }
            None => (Vec::new(), 0),
        };
        if covered < table.len() {
            found.extend(table.scan(query, k, covered..table.len(), keep));
            found.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            found.truncate(k);
        }
        found
    }

    /// Exact top `k` over every live vector for which `keep` holds.
    pub(crate) fn scan(&self, query: &[f32], k: usize, keep: Option<&(dyn Fn(u64) -> bool + Sync)>) -> Vec<(u64, f32)> {
        if query.len() != self.dim() {
            return Vec::new();
        }
        self.table.scan(query, k, 0..self.table.len(), keep)
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
        let basename = if self.table.len() == 0 {
            String::new()
        } else {
            self.graph
                .file_dump(&tmp, BASENAME)
                .map_err(|e| Error::Index { path: tmp.clone(), reason: e.to_string() })?
        };
        let mut members: Vec<u64> = self.table.entries().map(|(id, _)| id).collect();
        members.sort_unstable();
        let mut tombstones: Vec<u64> = self.table.entries().filter(|(_, live)| !live).map(|(id, _)| id).collect();
        tombstones.sort_unstable();
        let files = Some(dump_files(&tmp)?);
        let mut state = State {
            generation,
            dim: self.dim(),
            basename,
            members,
            tombstones,
            search_ef: self.search_ef,
            files,
            checksum: None,
        };
        state.checksum = Some(state.digest());
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
        // The renames are durable once the folder holding them is.
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    /// Loads `dir/hnsw` if present and readable; returns the generation it reflects.
    pub(crate) fn load(dir: &Path) -> Option<(Self, u64)> {
        let path = dir.join("hnsw");
        let state: State = serde_json::from_slice(&std::fs::read(path.join("state.json")).ok()?).ok()?;
        match &state.checksum {
            Some(sum) if *sum == state.digest() => {}
            Some(_) => {
                tracing::warn!(path = %path.display(), "damaged HNSW state file; rebuilding");
                return None;
            }
            None => {
                tracing::info!(path = %path.display(), "HNSW state without a checksum (older version); rebuilding");
                return None;
            }
        }
        match &state.files {
            None => {
                tracing::info!(path = %path.display(), "HNSW index without checksums (older version); rebuilding");
                return None;
            }
            Some(files) => {
                if let Err(problem) = check_dump_files(&path, files) {
                    tracing::warn!(path = %path.display(), problem, "damaged HNSW index; rebuilding");
                    return None;
                }
            }
        }
        let graph = if state.basename.is_empty() {
            Hnsw::new(MAX_CONNECTIONS, 1024, MAX_LAYERS, ef_construction(state.dim), CosineDistance)
        } else {
            // hnsw_rs ties the graph's lifetime to its loader; the loader (~100 bytes, no mmap)
            // is leaked so the graph can live as long as the collection.
            let io: &'static mut HnswIo = Box::leak(Box::new(HnswIo::new(&path, &state.basename)));
            match io.load_hnsw::<f32, CosineDistance>() {
                Ok(g) => g,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable HNSW index; rebuilding");
                    return None;
                }
            }
        };
        // The vectors come back from the graph's own points (no sled read).
        let tombstones: HashSet<u64> = state.tombstones.into_iter().collect();
        let mut table = VectorTable::new(state.dim);
        // (hnsw_rs's point iterator panics on an empty graph.)
        let points = if graph.get_nb_point() == 0 { None } else { Some(graph.get_point_indexation()) };
        for point in points.into_iter().flatten() {
            let id = point.get_origin_id() as u64;
            if point.get_v().len() != state.dim || table.contains(id) {
                return None;
            }
            table.push(id, point.get_v(), !tombstones.contains(&id));
        }
        if table.len() != state.members.len() {
            tracing::warn!(path = %path.display(), "HNSW index lists other members than its graph holds; rebuilding");
            return None;
        }
        let mut index = Self { graph, table, frozen: None, search_ef: state.search_ef };
        index.freeze();
        Some((index, state.generation))
    }

    pub(crate) fn dim(&self) -> usize {
        self.table.dim()
    }
}

#[cfg(test)]
mod tests;
