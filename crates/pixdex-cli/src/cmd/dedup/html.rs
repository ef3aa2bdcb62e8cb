//! The HTML report: one self-contained file (inline CSS, thumbnails as base64 JPEG data URIs, a
//! few lines of script for the kind filter), each group a card with its members side by side.
//! Thumbnails are decoded like `index` decodes (EXIF orientation applied); a file that is gone
//! or undecodable gets a placeholder, never an error.

use anyhow::Context as _;
use base64::Engine as _;
use image::{DynamicImage, RgbImage};
use indicatif::ProgressBar;
use pixdex_core::{DuplicateGroup, DuplicateKind, KeeperCriterion};
use pixdex_indexer::decode::{DecodeError, DecodeLimits, decode_path};
use rayon::prelude::*;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::report::kind_name;
use super::{Summary, human_bytes, path_text, plural, utc};

/// Longest side of a thumbnail, in pixels.
const THUMBNAIL_PX: u32 = 256;
const JPEG_QUALITY: u8 = 82;
/// Groups whose thumbnails are made (in parallel) and written before the next ones: bounds memory.
const GROUPS_PER_CHUNK: usize = 32;

/// What the page says about the run.
pub(crate) struct Context {
    pub collection: String,
    pub threshold: f32,
    /// The patch-verification rule, e.g. `patch check from 0.8 at geometry ≥ 0.11`, or `no patch check`.
    pub verification: String,
    pub keeper_rule: Vec<KeeperCriterion>,
    pub scope: Option<String>,
    pub summary: Summary,
}

enum Thumbnail {
    Jpeg { base64: String, width: u32, height: u32 },
    Unavailable { what: &'static str, detail: String },
}

/// Escapes text for HTML content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A `file://` URL for an absolute path (percent-encoded; safe in an attribute).
fn file_url(path: &Path) -> String {
    let text = path_text(path).replace('\\', "/");
    let mut url = String::from("file://");
    if !text.starts_with('/') {
        url.push('/');
    }
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            url.push(b as char);
        } else {
            let _ = write!(url, "%{b:02X}");
        }
    }
    url
}

/// `12` MP, `3.1` MP, `0.04` MP.
fn megapixels(width: u32, height: u32) -> String {
    let mp = f64::from(width) * f64::from(height) / 1e6;
    if mp >= 10.0 {
        format!("{mp:.0}")
    } else if mp >= 1.0 {
        format!("{mp:.1}")
    } else {
        format!("{mp:.2}")
    }
}

fn rule_text(rule: &[KeeperCriterion]) -> String {
    let names: Vec<&str> = rule
        .iter()
        .map(|c| match c {
            KeeperCriterion::Pixels => "most pixels",
            KeeperCriterion::FileSize => "largest file",
            KeeperCriterion::Oldest => "oldest",
        })
        .collect();
    names.join(", then ")
}

/// The pixels over white (thumbnails are JPEG, which has no alpha).
fn on_white(image: &DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y);
        let a = u32::from(p[3]);
        image::Rgb([0, 1, 2].map(|c| ((u32::from(p[c]) * a + 255 * (255 - a) + 127) / 255) as u8))
    })
}

fn thumbnail(path: &Path) -> Thumbnail {
    let decoded = match decode_path(path, DecodeLimits::default()) {
        Ok(d) => d,
        Err(e) => {
            let what = match &e {
                DecodeError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => "file missing",
                DecodeError::Io { .. } => "cannot be read",
                DecodeError::Image { .. }
                | DecodeError::Empty { .. }
                | DecodeError::Truncated { .. }
                | DecodeError::TooManyPixels { .. }
                | DecodeError::TooWide { .. } => "cannot be decoded",
            };
            return Thumbnail::Unavailable { what, detail: e.to_string() };
        }
    };
    let image = decoded.image;
    let image = if image.width() > THUMBNAIL_PX || image.height() > THUMBNAIL_PX {
        image.thumbnail(THUMBNAIL_PX, THUMBNAIL_PX)
    } else {
        image
    };
    let rgb = on_white(&image);
    let mut jpeg = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY);
    match rgb.write_with_encoder(encoder) {
        Ok(()) => Thumbnail::Jpeg {
            base64: base64::engine::general_purpose::STANDARD.encode(&jpeg),
            width: rgb.width(),
            height: rgb.height(),
        },
        Err(e) => Thumbnail::Unavailable { what: "cannot be shown", detail: e.to_string() },
    }
}

/// Writes the report to `path`. Returns false if cancelled before the end (the file is then
/// incomplete).
pub(crate) fn write_report(
    groups: &[DuplicateGroup],
    context: &Context,
    path: &Path,
    bar: &ProgressBar,
    cancel: &AtomicBool,
) -> anyhow::Result<bool> {
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let written =
        write_page(groups, context, &mut out, bar, cancel).with_context(|| format!("writing {}", path.display()));
    let finished = written?;
    out.flush().with_context(|| format!("writing {}", path.display()))?;
    Ok(finished)
}

fn write_page(
    groups: &[DuplicateGroup],
    context: &Context,
    out: &mut impl Write,
    bar: &ProgressBar,
    cancel: &AtomicBool,
) -> anyhow::Result<bool> {
    out.write_all(head(context).as_bytes())?;
    if groups.is_empty() {
        out.write_all(b"<div class=\"empty\">No duplicates found.</div>\n")?;
    }
    bar.set_length(groups.iter().map(|g| g.members.len() as u64).sum());
    for (chunk_index, chunk) in groups.chunks(GROUPS_PER_CHUNK).enumerate() {
        let thumbnails: Vec<Vec<Option<Thumbnail>>> = chunk
            .par_iter()
            .map(|g| {
                g.members
                    .par_iter()
                    .map(|m| {
                        if cancel.load(Ordering::Relaxed) {
                            return None;
                        }
                        let t = thumbnail(&m.record.path);
                        bar.inc(1);
                        Some(t)
                    })
                    .collect()
            })
            .collect();
        if cancel.load(Ordering::SeqCst) {
            return Ok(false);
        }
        for (i, (group, thumbs)) in chunk.iter().zip(thumbnails).enumerate() {
            let number = chunk_index * GROUPS_PER_CHUNK + i + 1;
            out.write_all(group_html(number, group, thumbs).as_bytes())?;
        }
    }
    out.write_all(FOOT.as_bytes())?;
    Ok(true)
}

fn head(context: &Context) -> String {
    let s = &context.summary;
    let (y, mo, d, h, mi, _) = utc(std::time::SystemTime::now());
    let mut html = String::new();
    let title = format!("Duplicates · {} {}", s.groups, plural(s.groups, "group", "groups"));
    let _ = write!(
        html,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="pixdex dedup">
<title>{title}</title>
<style>{CSS}</style>
</head>
<body data-groups="{groups}">
<header class="top">
<div class="brand">pixdex</div>
<h1>{title}</h1>
<p class="sub">Collection <code>{collection}</code>{scope} · similarity threshold {threshold} · {verification} · keeper: {rule} · {y:04}-{mo:02}-{d:02} {h:02}:{mi:02} UTC</p>
<div class="stats">
<div class="stat"><b>{groups}</b><span>{groups_word} · {exact} exact, {near} near</span></div>
<div class="stat"><b>{images}</b><span>images in groups</span></div>
<div class="stat"><b>{copies}</b><span>{copies_word} not kept</span></div>
<div class="stat accent"><b>{reclaimable}</b><span>reclaimable</span></div>
</div>
<nav class="filters" aria-label="Show">
<button type="button" data-show="all" aria-pressed="true">All <span>{groups}</span></button>
<button type="button" data-show="exact" aria-pressed="false">Exact <span>{exact}</span></button>
<button type="button" data-show="near" aria-pressed="false">Near <span>{near}</span></button>
</nav>
</header>
<main>
"#,
        title = esc(&title),
        collection = esc(&context.collection),
        scope = match &context.scope {
            Some(p) => format!(" · only <code>{}</code>…", esc(p)),
            None => String::new(),
        },
        threshold = context.threshold,
        verification = esc(&context.verification),
        rule = esc(&rule_text(&context.keeper_rule)),
        groups = s.groups,
        groups_word = plural(s.groups, "group", "groups"),
        exact = s.exact,
        near = s.near,
        images = s.images,
        copies = s.copies,
        copies_word = plural(s.copies, "copy", "copies"),
        reclaimable = esc(&human_bytes(s.reclaimable)),
    );
    html
}

fn group_html(number: usize, group: &DuplicateGroup, thumbnails: Vec<Option<Thumbnail>>) -> String {
    let kind = kind_name(group.kind);
    let n = group.members.len();
    let reclaimable: u64 = group.members.iter().skip(1).map(|m| m.record.size).sum();
    let mut html = String::new();
    let _ = write!(
        html,
        r#"<section class="group {kind}" id="group-{number}" data-kind="{kind}" data-members="{n}" style="--n:{n}">
<div class="group-head"><span class="badge {kind}">{kind}</span><h2>Group {number}</h2><span class="meta">{n} {images} · {reclaimable} reclaimable</span><span class="why">Keep: {reason}</span></div>
<div class="members">
"#,
        images = plural(n, "image", "images"),
        reclaimable = esc(&human_bytes(reclaimable)),
        reason = esc(&group.keeper_reason),
    );
    for (i, (member, thumb)) in group.members.iter().zip(thumbnails).enumerate() {
        let record = &member.record;
        let path = path_text(&record.path);
        let name = record.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.clone());
        let folder = record.path.parent().map(path_text).unwrap_or_default();
        let keeper = i == 0;
        let picture = match thumb {
            Some(Thumbnail::Jpeg { base64, width, height }) => format!(
                r#"<a class="thumb" href="{href}" title="{title}"><img src="data:image/jpeg;base64,{base64}" width="{width}" height="{height}" alt="{alt}"></a>"#,
                href = file_url(&record.path),
                title = esc(&path),
                alt = esc(&name),
            ),
            Some(Thumbnail::Unavailable { what, detail }) => format!(
                r#"<div class="thumb unavailable" title="{detail}"><svg viewBox="0 0 24 24" width="40" height="40" aria-hidden="true"><path fill="none" stroke="currentColor" stroke-width="1.5" d="M4 5h16v14H4z M4 15l4-4 4 4 3-3 5 5 M3 3l18 18"/></svg><span>{what}</span></div>"#,
                detail = esc(&detail),
            ),
            None => String::new(),
        };
        let verdict = if keeper {
            format!(r#"<div class="verdict keep">Kept · {}</div>"#, esc(&group.keeper_reason))
        } else if group.kind == DuplicateKind::Exact {
            r#"<div class="verdict">Identical bytes</div>"#.to_string()
        } else {
            format!(r#"<div class="verdict">Similarity <b>{:.4}</b></div>"#, member.score)
        };
        let _ = write!(
            html,
            r#"<figure class="member{keeper_class}" data-score="{score}" data-path="{path}">
{tag}{picture}
<figcaption><div class="name" title="{path}">{name}</div><div class="folder">{folder}</div><div class="facts"><span>{width}×{height}</span><span>{megapixels} MP</span><span>{size}</span></div>{verdict}</figcaption>
</figure>
"#,
            keeper_class = if keeper { " keeper" } else { "" },
            score = member.score,
            path = esc(&path),
            tag = if keeper { r#"<span class="tag">Keep</span>"# } else { "" },
            name = esc(&name),
            folder = esc(&folder),
            width = record.width,
            height = record.height,
            megapixels = megapixels(record.width, record.height),
            size = esc(&human_bytes(record.size)),
        );
    }
    html.push_str("</div>\n</section>\n");
    html
}

const CSS: &str = r#"
:root{--bg:#f4f5f8;--card:#fff;--text:#1b2130;--muted:#687086;--line:#e2e5ec;--chip:#eef0f4;--accent:#3355ff;
--keep:#15803d;--keep-soft:#e5f6ea;--exact:#7c3aed;--near:#0e7490;--shadow:0 1px 2px rgba(16,24,40,.05),0 4px 12px rgba(16,24,40,.06);color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#0e1014;--card:#171a21;--text:#e7e9ef;--muted:#98a1b3;--line:#272c36;--chip:#20242d;
--accent:#7c93ff;--keep:#34c772;--keep-soft:#143322;--exact:#a78bfa;--near:#22b8cf;--shadow:none}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--text);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",sans-serif}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--chip);padding:1px 5px;border-radius:5px;word-break:break-all}
.top,main{max-width:1440px;margin:0 auto;padding:0 28px}
.top{padding-top:28px}
.brand{font-weight:700;letter-spacing:.12em;text-transform:uppercase;font-size:11px;color:var(--accent)}
h1{font-size:26px;line-height:1.2;margin:6px 0 6px;font-weight:700;letter-spacing:-.01em}
.sub{color:var(--muted);margin:0;max-width:100ch}
.stats{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:12px;margin:20px 0 16px}
.stat{background:var(--card);border:1px solid var(--line);border-radius:14px;padding:14px 16px;box-shadow:var(--shadow)}
.stat b{display:block;font-size:24px;font-weight:700;font-variant-numeric:tabular-nums}
.stat span{color:var(--muted);font-size:12.5px}
.stat.accent b{color:var(--keep)}
.filters{display:none;gap:6px;margin-bottom:16px}
.js .filters{display:flex}
.filters button{font:inherit;font-size:13px;border:1px solid var(--line);background:var(--card);color:var(--text);border-radius:999px;padding:5px 12px;cursor:pointer}
.filters button span{color:var(--muted);margin-left:4px}
.filters button[aria-pressed=true]{background:var(--text);color:var(--bg);border-color:var(--text)}
.filters button[aria-pressed=true] span{color:inherit;opacity:.7}
main{padding-bottom:40px;display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
body[data-show=exact] .group.near,body[data-show=near] .group.exact{display:none}
.group{flex:1 1 calc(var(--n,2) * 250px + 38px);min-width:0;max-width:100%;background:var(--card);border:1px solid var(--line);border-radius:16px;box-shadow:var(--shadow)}
.group-head{display:flex;align-items:center;flex-wrap:wrap;gap:6px 12px;padding:14px 18px;border-bottom:1px solid var(--line)}
.group-head h2{font-size:15px;margin:0;font-weight:650}
.meta{color:var(--muted)}
.why{margin-left:auto;color:var(--keep);font-weight:600;font-size:13px}
.badge{font-size:10.5px;font-weight:700;letter-spacing:.08em;text-transform:uppercase;padding:3px 9px;border-radius:999px;color:#fff}
.badge.exact{background:var(--exact)}.badge.near{background:var(--near)}
.members{display:flex;gap:14px;padding:16px 18px 18px;overflow-x:auto}
.member{position:relative;margin:0;flex:0 0 236px;border:1px solid var(--line);border-radius:12px;overflow:hidden;background:var(--card)}
.member.keeper{border:2px solid var(--keep);box-shadow:0 0 0 4px var(--keep-soft)}
.thumb{display:flex;align-items:center;justify-content:center;height:196px;padding:8px;
background:repeating-conic-gradient(rgba(128,128,128,.12) 0 25%,transparent 0 50%) 0 0/16px 16px;color:var(--muted);text-decoration:none}
.thumb img{max-width:100%;max-height:100%;width:auto;height:auto;border-radius:4px;box-shadow:0 1px 3px rgba(0,0,0,.18)}
.thumb.unavailable{flex-direction:column;gap:6px;font-size:12.5px;background:var(--chip)}
.tag{position:absolute;top:10px;left:10px;z-index:1;background:var(--keep);color:#fff;font-size:11px;font-weight:700;letter-spacing:.06em;
text-transform:uppercase;padding:3px 9px;border-radius:999px;box-shadow:0 1px 4px rgba(0,0,0,.25)}
figcaption{padding:10px 12px 12px;border-top:1px solid var(--line)}
.name{font-weight:600;overflow-wrap:anywhere}
.folder{color:var(--muted);font-size:11.5px;word-break:break-all;margin-top:1px}
.facts{display:flex;flex-wrap:wrap;gap:5px;margin-top:8px}
.facts span{background:var(--chip);border-radius:6px;padding:1px 7px;font-size:12px;font-variant-numeric:tabular-nums}
.verdict{margin-top:8px;font-size:12.5px;color:var(--muted)}
.verdict b{color:var(--text);font-variant-numeric:tabular-nums}
.verdict.keep{color:var(--keep);font-weight:600}
.empty{flex:1;background:var(--card);border:1px dashed var(--line);border-radius:16px;padding:48px;text-align:center;color:var(--muted);font-size:16px}
footer{color:var(--muted);text-align:center;font-size:12px;padding:8px 28px 32px}
"#;

/// The end of the page. The script wires the kind filter and, once every thumbnail has loaded,
/// records how many decoded (`data-images`, `data-images-decoded`, `data-images-state` on
/// `<body>`: for checking the report in a headless browser).
const FOOT: &str = r#"</main>
<footer>Nothing has been moved or deleted. <code>pixdex dedup --move-to DIR</code> shows what moving the copies that are not kept would do; add <code>--apply</code> to do it (undo with <code>--undo LOG</code>).</footer>
<script>
(function () {
  var root = document.documentElement, body = document.body;
  root.className += " js";
  var buttons = document.querySelectorAll(".filters button");
  Array.prototype.forEach.call(buttons, function (button) {
    button.addEventListener("click", function () {
      body.setAttribute("data-show", button.getAttribute("data-show"));
      Array.prototype.forEach.call(buttons, function (b) { b.setAttribute("aria-pressed", String(b === button)); });
    });
  });
  var images = Array.prototype.slice.call(document.images);
  body.setAttribute("data-images", String(images.length));
  function settle() {
    var decoded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
    body.setAttribute("data-images-decoded", String(decoded));
    body.setAttribute("data-images-state", decoded === images.length ? "all-decoded" : "some-failed");
  }
  if (document.readyState === "complete") { settle(); } else { window.addEventListener("load", settle); }
})();
</script>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_text_and_urls() {
        assert_eq!(esc(r#"<b>&"'x"#), "&lt;b&gt;&amp;&quot;&#39;x");
        assert_eq!(file_url(Path::new("/a b/<c>&\"d\".jpg")), "file:///a%20b/%3Cc%3E%26%22d%22.jpg");
        assert_eq!(file_url(Path::new("/é.png")), "file:///%C3%A9.png");
    }

    #[test]
    fn a_missing_file_is_a_placeholder() {
        assert!(matches!(
            thumbnail(Path::new("/nonexistent/pixdex/x.jpg")),
            Thumbnail::Unavailable { what: "file missing", .. }
        ));
    }

    #[test]
    fn thumbnails_fit_256_and_flatten_alpha() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("wide.png");
        image::RgbaImage::from_fn(1000, 300, |x, _| image::Rgba([200, 10, 10, if x < 500 { 0 } else { 255 }]))
            .save(&p)
            .unwrap();
        let Thumbnail::Jpeg { base64, width, height } = thumbnail(&p) else { panic!("a thumbnail") };
        assert_eq!((width, height), (256, 77));
        let jpeg = base64::engine::general_purpose::STANDARD.decode(base64).unwrap();
        let back = image::load_from_memory(&jpeg).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), (256, 77));
        let left = back.get_pixel(10, 40);
        assert!(left[0] > 230 && left[1] > 230, "transparent is white: {left:?}");
    }
}
