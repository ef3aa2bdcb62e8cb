//! `pixdex embed`: the embedding of each image, as JSON or a short summary.
//!
//! Images are decoded, embedded and printed one batch at a time, so memory stays bounded by the
//! batch size however many files are named, and JSON is written as it goes. They are embedded
//! through the indexer's one path (`ModelInputs::of`, then `batch::embed_all`), as the index
//! and the server embed them.

use pixdex_indexer::batch::embed_all;
use pixdex_indexer::decode::{DecodeLimits, decode_path};
use pixdex_indexer::encoder::ImageEmbedding;
use pixdex_indexer::inputs::{InputKinds, ModelInputs};
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::args::EmbedArgs;

/// One image's embedding as `pixdex embed --json` prints it.
#[derive(Serialize)]
struct EmbeddingJson {
    path: String,
    global: Vec<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patches: Option<PatchGridJson>,
}

/// A patch grid as `pixdex embed --json --patches` prints it.
#[derive(Serialize)]
struct PatchGridJson {
    /// `[gh, gw, H]`.
    shape: [usize; 3],
    /// Row-major over (row, column, channel).
    values: Vec<f32>,
}

impl EmbeddingJson {
    fn new(path: &Path, e: ImageEmbedding, patches: bool) -> Self {
        let grid = e.patches;
        Self {
            path: path.to_string_lossy().into_owned(),
            global: e.global.as_slice().to_vec(),
            patches: patches
                .then(|| PatchGridJson { shape: [grid.rows(), grid.cols(), grid.dim()], values: grid.into_values() }),
        }
    }
}

/// Prints embeddings as they are computed: JSON (an array written incrementally) or one line each.
struct Printer<W: Write> {
    out: W,
    json: bool,
    printed: usize,
}

impl<W: Write> Printer<W> {
    fn print(&mut self, e: &EmbeddingJson) -> anyhow::Result<()> {
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
    let encoder = args.model.load_encoder(pixio::DEFAULT_MODEL)?;
    let mut printer = Printer { out: std::io::BufWriter::new(std::io::stdout().lock()), json: args.json, printed: 0 };
    let mut failed = 0usize;
    let mut report_failure = |path: &Path, e: anyhow::Error| {
        failed += 1;
        eprintln!("error: {}: {e:#}", path.display());
    };
    for chunk in args.images.chunks(args.batch_size as usize) {
        // One bad file costs only its own line.
        let mut ready: Vec<(&Path, ModelInputs)> = Vec::with_capacity(chunk.len());
        for path in chunk {
            let inputs = decode_path(path, DecodeLimits::default())
                .map_err(anyhow::Error::from)
                .and_then(|decoded| Ok(ModelInputs::of(&encoder, &decoded, InputKinds::QUERY)?));
            match inputs {
                Ok(inputs) => ready.push((path.as_path(), inputs)),
                Err(e) => report_failure(path, e),
            }
        }
        for ((path, _), embedded) in embed_all(&encoder, ready, |(_, inputs)| &inputs.square)? {
            match embedded {
                Ok(e) => printer.print(&EmbeddingJson::new(path, e, args.patches))?,
                Err(e) => report_failure(path, e.into()),
            }
        }
    }
    printer.finish()?;
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
