//! One seed's benchmark library: the dev photos copied as they are, synthetic families of edited
//! originals, and the truth (every pair inside a family) with each pair's type.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use pixdex_benches::csv_fields;

use crate::edits::{EDITS, Edit, apply, save_jpeg};

/// Edits per original.
const EDITS_PER_ORIGINAL: usize = 3;
/// Photos that are similar to other photos of the set without being duplicates: kept as
/// distractors, never edited.
const HARD_DISTRACTORS: [&str; 6] = ["_coins_", "japanese_yen", "plants_thyme", "plants_lavender", "fireman", "bears_"];

/// What an item is in its library.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    Distractor,
    Original,
    Edited(Edit),
    Natural(String),
}

/// One file of a generated library.
#[derive(Debug, Clone)]
pub struct Item {
    /// Relative to the library root.
    pub rel: PathBuf,
    pub family: Option<usize>,
    pub role: Role,
}

/// A benchmark library: its items and truth.
pub struct Library {
    pub name: &'static str,
    pub root: PathBuf,
    pub items: Vec<Item>,
    pub truth: HashSet<(u32, u32)>,
    /// Pair type of each truth pair.
    pub pair_type: HashMap<(u32, u32), String>,
}

/// The unordered pair of items `a` and `b`, smaller index first.
pub fn pair(a: usize, b: usize) -> (u32, u32) {
    (a.min(b) as u32, a.max(b) as u32)
}

fn pair_type(a: &Item, b: &Item) -> String {
    match (&a.role, &b.role) {
        (Role::Natural(kind), _) | (_, Role::Natural(kind)) => format!("natural {kind}"),
        (Role::Original, Role::Edited(e)) | (Role::Edited(e), Role::Original) => e.name().to_string(),
        _ => "edit+edit".to_string(),
    }
}

/// A manifest row: file, family, family kind.
pub struct Row {
    file: String,
    family: String,
    family_kind: String,
}

/// The rows of `manifest.csv` beside the photos.
pub fn read_manifest(photos: &Path) -> anyhow::Result<Vec<Row>> {
    let text = fs::read_to_string(photos.join("manifest.csv"))?;
    let mut lines = text.lines();
    let header = csv_fields(lines.next().unwrap_or_default());
    let col = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| anyhow::anyhow!("manifest has no `{name}` column"))
    };
    let (file, family, kind) = (col("file")?, col("family")?, col("family_kind")?);
    Ok(lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f = csv_fields(l);
            let get = |i: usize| f.get(i).cloned().unwrap_or_default();
            Row { file: get(file), family: get(family), family_kind: get(kind) }
        })
        .collect())
}

pub fn is_hard_distractor(file: &str) -> bool {
    HARD_DISTRACTORS.iter().any(|s| file.contains(s))
}

/// Writes one seed's library under `root` and returns its items and truth.
pub fn build_library(
    name: &'static str,
    seed: u64,
    photos: &Path,
    manifest: &[Row],
    root: &Path,
    originals: usize,
) -> anyhow::Result<Library> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut items = Vec::new();
    let mut families: BTreeMap<String, usize> = BTreeMap::new();
    for row in manifest {
        let dst = root.join(&row.file);
        fs::create_dir_all(dst.parent().expect("parent"))?;
        fs::copy(photos.join(&row.file), &dst)?;
        let (family, role) = if row.family.is_empty() {
            (None, Role::Distractor)
        } else {
            let n = families.len();
            (Some(*families.entry(row.family.clone()).or_insert(n)), Role::Natural(row.family_kind.clone()))
        };
        items.push(Item { rel: PathBuf::from(&row.file), family, role });
    }
    let mut pool: Vec<usize> = (0..manifest.len())
        .filter(|&i| manifest[i].family.is_empty() && !is_hard_distractor(&manifest[i].file))
        .collect();
    pool.shuffle(&mut rng);
    pool.truncate(originals);
    pool.sort_unstable();
    let edits_dir = root.join("edits");
    fs::create_dir_all(&edits_dir)?;
    for (family, &i) in (families.len()..).zip(&pool) {
        items[i].family = Some(family);
        items[i].role = Role::Original;
        let src = image::open(photos.join(&manifest[i].file))?.to_rgb8();
        let stem = manifest[i].file.replace('/', "_");
        let stem = stem.rsplit_once('.').map_or(stem.as_str(), |(s, _)| s).to_string();
        for k in rand::seq::index::sample(&mut rng, EDITS.len(), EDITS_PER_ORIGINAL) {
            let edit = EDITS[k];
            let (img, quality) = apply(edit, &src, &mut rng);
            let rel = PathBuf::from("edits").join(format!("{stem}__{}.jpg", edit.name()));
            save_jpeg(&img, &root.join(&rel), quality)?;
            items.push(Item { rel, family: Some(family), role: Role::Edited(edit) });
        }
    }
    let mut by_family: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(f) = item.family {
            by_family.entry(f).or_default().push(i);
        }
    }
    let (mut truth, mut pair_types) = (HashSet::new(), HashMap::new());
    for members in by_family.values() {
        for (x, &a) in members.iter().enumerate() {
            for &b in &members[x + 1..] {
                truth.insert(pair(a, b));
                pair_types.insert(pair(a, b), pair_type(&items[a], &items[b]));
            }
        }
    }
    Ok(Library { name, root: root.to_path_buf(), items, truth, pair_type: pair_types })
}
