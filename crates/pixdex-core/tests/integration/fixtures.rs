use pixdex_core::{CollectionConfig, Embedding, ImageRecord, ImageStatus, NewImage, PatchCodec, PatchGrid, UnitVector};
use rand::{Rng, SeedableRng};
use std::path::PathBuf;

pub fn config(dim: usize) -> CollectionConfig {
    CollectionConfig {
        model: "test/model".into(),
        model_fingerprint: "fp-1".into(),
        embedding: "pixio-pooler-l2/v1".into(),
        dim,
        patch_codec: PatchCodec { pool: 1, quantised: false },
    }
}

pub fn random_unit(rng: &mut impl Rng, dim: usize) -> UnitVector {
    // Box–Muller normals give directions uniform on the sphere.
    let v: Vec<f32> = (0..dim)
        .map(|_| {
            let (u1, u2): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
        })
        .collect();
    UnitVector::new(v).unwrap()
}

pub fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

pub fn image(path: &str, hash_byte: u8, global: Option<UnitVector>) -> NewImage {
    let dim = global.as_ref().map(|g| g.dim()).unwrap_or(4);
    NewImage {
        record: ImageRecord {
            path: PathBuf::from(path),
            size: 100,
            mtime_ns: 1_700_000_000_000_000_000,
            blake3: [hash_byte; 32],
            width: 64,
            height: 48,
            status: if global.is_some() {
                ImageStatus::Embedded
            } else {
                ImageStatus::Failed { error: "corrupt".into() }
            },
        },
        embedding: match global {
            Some(global) => Embedding::Computed {
                views: None,
                region: None,
                global,
                patches: Some(PatchGrid::new(2, 3, dim, (0..6 * dim).map(|i| i as f32 * 0.01).collect()).unwrap()),
            },
            None => Embedding::None,
        },
    }
}
