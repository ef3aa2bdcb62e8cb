//! Checkpoint tensors under one canonical naming, whatever layout the file was saved in.
//!
//! Canonical names are those of the published Hub checkpoints (pixio-spec §2a):
//! `embeddings.*`, `encoder.layer.N.{norm1,norm2}`, `encoder.layer.N.attention.attention.{query,key,value}`,
//! `encoder.layer.N.attention.output.dense`, `encoder.layer.N.mlp.{fc1,fc2}`, `layernorm`.
//! Also accepted, and renamed on load (never in `forward`):
//! * transformers 5.x `save_pretrained`: `encoder.layer.N.intermediate.dense` / `encoder.layer.N.output.dense`
//!   for the MLP (while `attention.output.dense` stays the attention output);
//! * transformers' in-memory names: `layers.N.layernorm_before|layernorm_after`,
//!   `layers.N.attention.{q,k,v,o}_proj`, `layers.N.mlp.fc1|fc2`;
//! * a saved `PixioBackbone`: everything prefixed `encoder.` (or `pixio.` in memory), plus the
//!   backbone's own top-level `layernorm`, which becomes [`BACKBONE_NORM`].

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use crate::error::{Error, Result};

/// Canonical prefix of the feature norm that a saved `PixioBackbone` carries besides the model's own.
pub(crate) const BACKBONE_NORM: &str = "backbone.layernorm";

/// Stored tensors the model may legitimately leave unused.
const IGNORABLE: &[&str] = &["embeddings.mask_token"];

/// Where the tensors live.
enum Store {
    /// Memory-mapped safetensors files.
    Files(MmapedSafetensors),
    /// Tensors built in memory (random-weight models for tests and benchmarks).
    Memory(HashMap<String, Tensor>),
}

/// The tensors of a checkpoint (one or more safetensors files), addressed by canonical name.
pub(crate) struct Checkpoint {
    store: Store,
    /// canonical name → name as stored.
    names: BTreeMap<String, String>,
    /// Stored names that map to no canonical name.
    unknown: Vec<String>,
    used: RefCell<BTreeSet<String>>,
    device: Device,
    dtype: DType,
}

impl Checkpoint {
    /// Memory-maps the files and settles the key layout. Tensors are materialised on `device` in
    /// `dtype` as modules ask for them.
    pub(crate) fn open(paths: &[PathBuf], device: &Device, dtype: DType) -> Result<Self> {
        for p in paths {
            if !p.is_file() {
                return Err(Error::MissingFile { location: p.display().to_string(), what: "weights file".into() });
            }
        }
        // SAFETY: the files are mapped read-only; like every safetensors loader we assume they are
        // not truncated or rewritten while the model is alive.
        let files = unsafe { MmapedSafetensors::multi(paths)? };
        let stored: Vec<String> = files.tensors().into_iter().map(|(name, _)| name).collect();
        Self::new(Store::Files(files), &stored, device, dtype)
    }

    /// Tensors already in memory, under any accepted layout.
    pub(crate) fn from_tensors(tensors: HashMap<String, Tensor>, device: &Device, dtype: DType) -> Result<Self> {
        let stored: Vec<String> = tensors.keys().cloned().collect();
        Self::new(Store::Memory(tensors), &stored, device, dtype)
    }

    fn new(store: Store, stored: &[String], device: &Device, dtype: DType) -> Result<Self> {
        let (names, unknown) = canonicalize(stored)?;
        Ok(Self { store, names, unknown, used: RefCell::new(BTreeSet::new()), device: device.clone(), dtype })
    }

    /// Explains a missing tensor better when the file is in a foreign layout.
    pub(crate) fn explain(&self, err: Error) -> Error {
        match (err, self.unknown.first()) {
            (Error::MissingTensor { key }, Some(foreign)) => {
                Error::UnknownLayout { missing: key, foreign: foreign.clone() }
            }
            (err, _) => err,
        }
    }

    pub(crate) fn contains(&self, canonical: &str) -> bool {
        self.names.contains_key(canonical)
    }

    /// The stored shape of a tensor.
    pub(crate) fn shape(&self, canonical: &str) -> Result<Vec<usize>> {
        let stored = self.names.get(canonical).ok_or_else(|| Error::MissingTensor { key: canonical.to_string() })?;
        Ok(match &self.store {
            Store::Files(f) => f.get(stored)?.shape().to_vec(),
            Store::Memory(m) => m[stored].dims().to_vec(),
        })
    }

    /// Loads a tensor by canonical name, checking its shape, converted to the compute dtype.
    pub(crate) fn get(&self, canonical: &str, shape: &[usize]) -> Result<Tensor> {
        self.get_as(canonical, shape, self.dtype)
    }

    /// Like [`Checkpoint::get`] but in an explicit dtype (LayerNorm parameters stay f32).
    pub(crate) fn get_as(&self, canonical: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let stored = self.names.get(canonical).ok_or_else(|| Error::MissingTensor { key: canonical.to_string() })?;
        let found = self.shape(canonical)?;
        if found != shape {
            return Err(Error::ShapeMismatch { key: stored.clone(), expected: shape.to_vec(), found });
        }
        let t = match &self.store {
            Store::Files(f) => f.load(stored, &Device::Cpu)?,
            Store::Memory(m) => m[stored].clone(),
        };
        match t.dtype() {
            DType::F32 | DType::F16 | DType::BF16 | DType::F64 => {}
            other => return Err(Error::UnsupportedDType { key: stored.clone(), dtype: other }),
        }
        self.used.borrow_mut().insert(canonical.to_string());
        // Convert on the host, then move: f16/bf16 → f32 widening is exact.
        Ok(t.to_device(&Device::Cpu)?.to_dtype(dtype)?.to_device(&self.device)?)
    }

    /// Fails if any stored tensor was neither used nor known to be ignorable.
    pub(crate) fn ensure_all_used(&self, also_ignorable: &[&str]) -> Result<()> {
        let used = self.used.borrow();
        let mut left: Vec<String> = self
            .names
            .iter()
            .filter(|(canon, _)| {
                !used.contains(*canon)
                    && !IGNORABLE.contains(&canon.as_str())
                    && !also_ignorable.iter().any(|p| canon.starts_with(p))
            })
            .map(|(_, stored)| stored.clone())
            .collect();
        left.extend(self.unknown.iter().cloned());
        left.sort();
        if left.is_empty() { Ok(()) } else { Err(Error::UnexpectedTensors { keys: left }) }
    }
}

/// Scoped access to checkpoint tensors, in the manner of candle's `VarBuilder::pp`, so that the
/// strings in the module constructors spell out the canonical key path.
#[derive(Clone)]
pub(crate) struct Weights<'a> {
    ckpt: &'a Checkpoint,
    prefix: String,
}

impl<'a> Weights<'a> {
    pub(crate) fn root(ckpt: &'a Checkpoint) -> Self {
        Self { ckpt, prefix: String::new() }
    }

    pub(crate) fn pp(&self, name: &str) -> Weights<'a> {
        Weights { ckpt: self.ckpt, prefix: join(&self.prefix, name) }
    }

    /// A tensor in the compute dtype.
    pub(crate) fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.ckpt.get(&join(&self.prefix, name), shape)
    }

    /// A tensor in f32 whatever the compute dtype (LayerNorm parameters).
    pub(crate) fn get_f32(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.ckpt.get_as(&join(&self.prefix, name), shape, DType::F32)
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.ckpt.contains(&join(&self.prefix, name))
    }

    pub(crate) fn shape(&self, name: &str) -> Result<Vec<usize>> {
        self.ckpt.shape(&join(&self.prefix, name))
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") }
}

/// Maps every stored name to its canonical name; returns `(canonical → stored, unknown names)`.
fn canonicalize(stored: &[String]) -> Result<(BTreeMap<String, String>, Vec<String>)> {
    // A saved PixioBackbone nests the whole model under `encoder.` (`pixio.` in memory); its own
    // top-level `layernorm` is then the backbone feature norm.
    let backbone_prefix = ["encoder.", "pixio."]
        .into_iter()
        .find(|p| stored.iter().any(|k| k.starts_with(p) && k[p.len()..].starts_with("embeddings.")));
    let mut names = BTreeMap::new();
    let mut unknown = Vec::new();
    for key in stored {
        let canonical = match backbone_prefix {
            Some(p) => match key.strip_prefix(p) {
                Some(inner) => canonical_model_key(inner),
                None => key.strip_prefix("layernorm.").map(|rest| format!("{BACKBONE_NORM}.{rest}")),
            },
            None => canonical_model_key(key),
        };
        match canonical {
            Some(c) => {
                if let Some(prev) = names.insert(c.clone(), key.clone()) {
                    return Err(Error::Checkpoint(format!("both `{prev}` and `{key}` name tensor `{c}`")));
                }
            }
            None => unknown.push(key.clone()),
        }
    }
    Ok((names, unknown))
}

/// The canonical name of one `PixioModel` key in any accepted layout, or `None` if it is foreign.
fn canonical_model_key(key: &str) -> Option<String> {
    if key.starts_with("embeddings.") || key.starts_with("layernorm.") {
        return Some(key.to_string());
    }
    let (index, rest) = if let Some(r) = key.strip_prefix("encoder.layer.") {
        r.split_once('.')?
    } else if let Some(r) = key.strip_prefix("layers.") {
        r.split_once('.')?
    } else {
        return None;
    };
    index.parse::<usize>().ok()?;
    const RENAMES: &[(&str, &str)] = &[
        // in-memory (transformers 5.x module names)
        ("layernorm_before.", "norm1."),
        ("layernorm_after.", "norm2."),
        ("attention.q_proj.", "attention.attention.query."),
        ("attention.k_proj.", "attention.attention.key."),
        ("attention.v_proj.", "attention.attention.value."),
        ("attention.o_proj.", "attention.output.dense."),
        // save_pretrained (original format): the MLP as ViT's intermediate/output
        ("intermediate.dense.", "mlp.fc1."),
        ("output.dense.", "mlp.fc2."),
        // canonical names map to themselves
        ("norm1.", "norm1."),
        ("norm2.", "norm2."),
        ("attention.attention.query.", "attention.attention.query."),
        ("attention.attention.key.", "attention.attention.key."),
        ("attention.attention.value.", "attention.attention.value."),
        ("attention.output.dense.", "attention.output.dense."),
        ("mlp.fc1.", "mlp.fc1."),
        ("mlp.fc2.", "mlp.fc2."),
    ];
    // `rest` must *start* with the pattern: `attention.output.dense` is not the MLP's `output.dense`.
    RENAMES.iter().find_map(|(from, to)| {
        let tail = rest.strip_prefix(from)?;
        matches!(tail, "weight" | "bias").then(|| format!("encoder.layer.{index}.{to}{tail}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Canonicalises the stored keys of `pairs` and checks that each maps to its canonical name.
    fn assert_canonical(pairs: &[(&str, &str)]) {
        let stored: Vec<String> = pairs.iter().map(|(s, _)| s.to_string()).collect();
        let (names, unknown) = canonicalize(&stored).unwrap();
        assert!(unknown.is_empty(), "{unknown:?}");
        let found: BTreeMap<String, String> = names.into_iter().map(|(c, s)| (s, c)).collect();
        for (stored, canonical) in pairs {
            assert_eq!(found[*stored], *canonical, "{stored}");
        }
    }

    #[test]
    fn every_layout_maps_to_hub_names() {
        assert_canonical(&[
            ("embeddings.cls_token", "embeddings.cls_token"),
            ("encoder.layer.3.norm1.weight", "encoder.layer.3.norm1.weight"),
            ("encoder.layer.3.attention.attention.query.bias", "encoder.layer.3.attention.attention.query.bias"),
            ("encoder.layer.3.attention.output.dense.weight", "encoder.layer.3.attention.output.dense.weight"),
            ("encoder.layer.3.intermediate.dense.weight", "encoder.layer.3.mlp.fc1.weight"),
            ("encoder.layer.3.output.dense.bias", "encoder.layer.3.mlp.fc2.bias"),
            ("layers.4.layernorm_after.bias", "encoder.layer.4.norm2.bias"),
            ("layers.4.attention.o_proj.weight", "encoder.layer.4.attention.output.dense.weight"),
            ("layers.4.attention.k_proj.weight", "encoder.layer.4.attention.attention.key.weight"),
            ("layers.4.mlp.fc2.weight", "encoder.layer.4.mlp.fc2.weight"),
            ("layernorm.weight", "layernorm.weight"),
        ]);
    }

    #[test]
    fn backbone_prefix_and_own_norm() {
        assert_canonical(&[
            ("encoder.embeddings.cls_token", "embeddings.cls_token"),
            ("encoder.encoder.layer.0.norm1.weight", "encoder.layer.0.norm1.weight"),
            ("encoder.layernorm.bias", "layernorm.bias"),
            ("layernorm.bias", "backbone.layernorm.bias"),
        ]);
    }

    #[test]
    fn foreign_keys_are_reported() {
        let stored = vec![
            "embeddings.cls_token".to_string(),
            "decoder.head.weight".to_string(),
            "encoder.layer.x.norm1.weight".to_string(),
        ];
        let (_, unknown) = canonicalize(&stored).unwrap();
        assert_eq!(unknown, vec!["decoder.head.weight", "encoder.layer.x.norm1.weight"]);
    }

    #[test]
    fn duplicate_spellings_are_an_error() {
        let stored = vec!["layers.0.mlp.fc1.weight".to_string(), "encoder.layer.0.mlp.fc1.weight".to_string()];
        assert!(canonicalize(&stored).is_err());
    }
}
