//! The text listing, the JSON and the CSV of duplicate groups.

use pixdex_core::{DuplicateGroup, DuplicateKind};
use serde::Serialize;
use std::io::Write;

use super::{human_bytes, path_text, plural};

pub(crate) fn kind_name(kind: DuplicateKind) -> &'static str {
    match kind {
        DuplicateKind::Exact => "exact",
        DuplicateKind::Near => "near",
    }
}

#[derive(Serialize)]
struct JsonMember {
    path: String,
    score: f32,
    keeper: bool,
    width: u32,
    height: u32,
    size: u64,
}

#[derive(Serialize)]
struct JsonGroup {
    kind: &'static str,
    keeper: String,
    keeper_reason: String,
    members: Vec<JsonMember>,
}

#[derive(Serialize)]
struct JsonReport {
    groups: Vec<JsonGroup>,
}

/// `{"groups":[{"kind":…,"keeper":…,"keeper_reason":…,"members":[{"path":…,"score":…,…}]}]}`
/// on one line.
pub(crate) fn write_json(groups: &[DuplicateGroup], mut out: impl Write) -> anyhow::Result<()> {
    let report = JsonReport {
        groups: groups
            .iter()
            .map(|g| JsonGroup {
                kind: kind_name(g.kind),
                keeper: path_text(&g.keeper().record.path),
                keeper_reason: g.keeper_reason.clone(),
                members: g
                    .members
                    .iter()
                    .enumerate()
                    .map(|(i, m)| JsonMember {
                        path: path_text(&m.record.path),
                        score: m.score,
                        keeper: i == 0,
                        width: m.record.width,
                        height: m.record.height,
                        size: m.record.size,
                    })
                    .collect(),
            })
            .collect(),
    };
    serde_json::to_writer(&mut out, &report)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

#[derive(Serialize)]
struct CsvRow<'a> {
    group: usize,
    kind: &'static str,
    keeper: bool,
    path: String,
    score: f32,
    width: u32,
    height: u32,
    size_bytes: u64,
    keeper_reason: &'a str,
}

/// One row per member (groups numbered from 1), with a header row.
pub(crate) fn write_csv(groups: &[DuplicateGroup], out: impl Write) -> anyhow::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    for (g, group) in groups.iter().enumerate() {
        for (i, m) in group.members.iter().enumerate() {
            writer.serialize(CsvRow {
                group: g + 1,
                kind: kind_name(group.kind),
                keeper: i == 0,
                path: path_text(&m.record.path),
                score: m.score,
                width: m.record.width,
                height: m.record.height,
                size_bytes: m.record.size,
                keeper_reason: &group.keeper_reason,
            })?;
        }
    }
    if groups.is_empty() {
        // A header even when there is nothing, so that the file still parses as the same table.
        writer.write_record([
            "group",
            "kind",
            "keeper",
            "path",
            "score",
            "width",
            "height",
            "size_bytes",
            "keeper_reason",
        ])?;
    }
    writer.flush()?;
    Ok(())
}

/// The listing for people: each group with its keeper marked, then the members' similarity to
/// it, pixel size, file size and path.
pub(crate) fn write_text(groups: &[DuplicateGroup], mut out: impl Write) -> anyhow::Result<()> {
    for (g, group) in groups.iter().enumerate() {
        let n = group.members.len();
        writeln!(
            out,
            "group {} · {} · {n} {} · keeper: {}",
            g + 1,
            kind_name(group.kind),
            plural(n, "image", "images"),
            group.keeper_reason
        )?;
        for (i, m) in group.members.iter().enumerate() {
            let r = &m.record;
            writeln!(
                out,
                "  {:<4}  {:.4}  {:>11}  {:>9}  {}",
                if i == 0 { "keep" } else { "" },
                m.score,
                format!("{}×{}", r.width, r.height),
                human_bytes(r.size),
                r.path.display()
            )?;
        }
        writeln!(out)?;
    }
    out.flush()?;
    Ok(())
}
