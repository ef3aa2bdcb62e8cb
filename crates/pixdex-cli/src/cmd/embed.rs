//! `pixdex embed`: the embedding of each image, as JSON or a short summary.

use anyhow::Context;
use pixdex_indexer::decode::{DecodeLimits, decode_path};
use pixio::{DeviceChoice, ModelFiles, PixioModel, Preprocessor, Tensor, WeightSource};
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::args::{EmbedArgs, ModelArgs};

#[derive(Serialize)]
struct Embedding {
    path: PathBuf,
    global: Vec<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patches: Option<PatchGrid>,
}

#[derive(Serialize)]
struct PatchGrid {
    /// `[gh, gw, H]`.
    shape: [usize; 3],
    /// Row-major over (row, column, channel).
    values: Vec<f32>,
}

#[derive(Serialize)]
struct Output {
    embeddings: Vec<Embedding>,
}

/// The encoder and its preprocessing, loaded from `--model`.
pub struct Encoder {
    pub model: PixioModel,
    pub preprocessor: Preprocessor,
}

impl Encoder {
    pub fn load(args: &ModelArgs) -> anyhow::Result<Self> {
        let source = WeightSource::parse(&args.model)?;
        let files = ModelFiles::resolve(&source).with_context(|| format!("loading model {source}"))?;
        let device = args.device.parse::<DeviceChoice>()?.open()?;
        let dtype = match &args.dtype {
            Some(d) => pixio::parse_dtype(d)?,
            None => pixio::default_dtype(&device),
        };
        let model = PixioModel::load(&files, &device, dtype).with_context(|| format!("loading model {source}"))?;
        let preprocessor = Preprocessor::load(&files)?;
        Ok(Self { model, preprocessor })
    }
}

pub fn run(args: EmbedArgs) -> anyhow::Result<ExitCode> {
    let encoder = Encoder::load(&args.model)?;
    let mut failed = 0usize;
    let mut done = Vec::new();
    // Decode and preprocess everything first so that one bad file costs only its own line.
    let mut ready: Vec<(PathBuf, Tensor)> = Vec::new();
    for path in &args.images {
        let prepared = decode_path(path, DecodeLimits::default())
            .map_err(anyhow::Error::from)
            .and_then(|d| Ok(encoder.preprocessor.preprocess(&d.image)?));
        match prepared {
            Ok(t) => ready.push((path.clone(), t)),
            Err(e) => {
                failed += 1;
                eprintln!("error: {}: {e:#}", path.display());
            }
        }
    }
    for chunk in ready.chunks(args.batch_size as usize) {
        // Images of one batch must share a size; shortest-edge processors without a crop
        // can produce different sizes, so those run one by one.
        let same_size = chunk.iter().all(|(_, t)| t.dims() == chunk[0].1.dims());
        let groups: Vec<&[(PathBuf, Tensor)]> = if same_size { vec![chunk] } else { chunk.chunks(1).collect() };
        for group in groups {
            let batch = Tensor::stack(&group.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>(), 0)?;
            let out = encoder.model.forward(&batch)?;
            let global = out.global_embedding()?.to_vec2::<f32>()?;
            let grid = if args.patches {
                let g = out.patch_grid()?.to_dtype(pixio::DType::F32)?;
                let (_, gh, gw, h) = g.dims4()?;
                Some((g.flatten_from(1)?.to_vec2::<f32>()?, [gh, gw, h]))
            } else {
                None
            };
            for (i, (path, _)) in group.iter().enumerate() {
                let patches =
                    grid.as_ref().map(|(values, shape)| PatchGrid { shape: *shape, values: values[i].clone() });
                done.push(Embedding { path: path.clone(), global: global[i].clone(), patches });
            }
        }
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        serde_json::to_writer(&mut out, &Output { embeddings: done })?;
        writeln!(out)?;
    } else {
        for e in &done {
            let head: Vec<String> = e.global.iter().take(6).map(|v| format!("{v:+.4}")).collect();
            write!(out, "{}\tglobal[{}] = [{} …]", e.path.display(), e.global.len(), head.join(", "))?;
            if let Some(p) = &e.patches {
                write!(out, "\tpatches {:?}", p.shape)?;
            }
            writeln!(out)?;
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
