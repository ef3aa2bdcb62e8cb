//! `pixdex embed`: the embedding of each image, as JSON or a short summary.
//!
//! Images are decoded, embedded and printed one batch at a time, so memory stays bounded by the
//! batch size however many files are named, and JSON is written as it goes.

use anyhow::Context;
use pixdex_indexer::decode::{DecodeLimits, decode_path};
use pixio::{ModelFiles, PixioModel, Preprocessor, Tensor};
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::args::{EmbedArgs, ModelArgs};

#[derive(Serialize)]
struct Embedding {
    path: String,
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

/// The encoder and its preprocessing, loaded from `--model`.
pub struct LoadedModel {
    pub model: PixioModel,
    pub preprocessor: Preprocessor,
}

impl LoadedModel {
    pub fn load(args: &ModelArgs) -> anyhow::Result<Self> {
        // Open the device first: a typo or a missing GPU fails before a multi-GB download.
        let (device, dtype) = args.device()?;
        let source = args.source(pixio::DEFAULT_MODEL)?;
        let files = ModelFiles::resolve(&source).with_context(|| format!("loading model {source}"))?;
        let model = PixioModel::load(&files, &device, dtype).with_context(|| format!("loading model {source}"))?;
        let preprocessor = Preprocessor::load(&files)?;
        Ok(Self { model, preprocessor })
    }

    /// Embeds images that preprocessed to the same size.
    fn embed(&self, batch: &[(&Path, Tensor)], patches: bool) -> anyhow::Result<Vec<Embedding>> {
        let input = Tensor::stack(&batch.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>(), 0)?;
        let out = self.model.forward(&input)?;
        let global = out.global_embedding()?.to_vec2::<f32>()?;
        let mut grids = if patches {
            let g = out.patch_grid()?.to_dtype(pixio::DType::F32)?;
            let (_, gh, gw, h) = g.dims4()?;
            Some((g.flatten_from(1)?.to_vec2::<f32>()?.into_iter(), [gh, gw, h]))
        } else {
            None
        };
        Ok(batch
            .iter()
            .zip(global)
            .map(|((path, _), global)| Embedding {
                path: path.to_string_lossy().into_owned(),
                global,
                patches: grids
                    .as_mut()
                    .and_then(|(values, shape)| Some(PatchGrid { shape: *shape, values: values.next()? })),
            })
            .collect())
    }
}

/// Prints embeddings as they are computed: JSON (an array written incrementally) or one line each.
struct Printer<W: Write> {
    out: W,
    json: bool,
    printed: usize,
}

impl<W: Write> Printer<W> {
    fn print(&mut self, e: &Embedding) -> anyhow::Result<()> {
        if self.json {
            self.out.write_all(if self.printed == 0 { b"{\"embeddings\":[" } else { b"," })?;
            serde_json::to_writer(&mut self.out, e)?;
        } else {
            let head: Vec<String> = e.global.iter().take(6).map(|v| format!("{v:+.4}")).collect();
            write!(self.out, "{}\tglobal[{}] = [{} …]", e.path, e.global.len(), head.join(", "))?;
            if let Some(p) = &e.patches {
                write!(self.out, "\tpatches {:?}", p.shape)?;
            }
            writeln!(self.out)?;
        }
        self.printed += 1;
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<()> {
        if self.json {
            self.out.write_all(if self.printed == 0 { b"{\"embeddings\":[]}\n" } else { b"]}\n" })?;
        }
        self.out.flush()?;
        Ok(())
    }
}

pub fn run(args: EmbedArgs) -> anyhow::Result<ExitCode> {
    let loaded = LoadedModel::load(&args.model)?;
    let mut printer = Printer { out: std::io::BufWriter::new(std::io::stdout().lock()), json: args.json, printed: 0 };
    let mut failed = 0usize;
    for chunk in args.images.chunks(args.batch_size as usize) {
        // One bad file costs only its own line.
        let mut ready: Vec<(&Path, Tensor)> = Vec::with_capacity(chunk.len());
        for path in chunk {
            match prepare(&loaded, path) {
                Ok(t) => ready.push((path.as_path(), t)),
                Err(e) => {
                    failed += 1;
                    eprintln!("error: {}: {e:#}", path.display());
                }
            }
        }
        // A batch must share one input size; shortest-edge processors without a crop can give
        // several, so group by size.
        while !ready.is_empty() {
            let dims = ready[0].1.dims().to_vec();
            let (same, rest): (Vec<_>, Vec<_>) = ready.into_iter().partition(|(_, t)| t.dims() == dims.as_slice());
            for e in loaded.embed(&same, args.patches)? {
                printer.print(&e)?;
            }
            ready = rest;
        }
    }
    printer.finish()?;
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn prepare(loaded: &LoadedModel, path: &Path) -> anyhow::Result<Tensor> {
    let decoded = decode_path(path, DecodeLimits::default())?;
    Ok(loaded.preprocessor.preprocess(&decoded.image)?)
}
