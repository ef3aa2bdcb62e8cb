//! `pixdex dedup --server URL`: the groups come from the server's `DedupService`, streamed with
//! its progress; the reports and moves are then the same as offline.

use indicatif::ProgressBar;
use pixdex_core::{
    DedupOptions, DuplicateGroup, DuplicateKind, DuplicateMember, ImageId, ImageRecord, ImageStatus, KeeperCriterion,
};
use pixdex_server::pb::{self, find_duplicates_response::Event};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::remote;

/// Runs the search on the server. Returns what was found when `cancel` is set (dropping the stream
/// cancels the work on the server).
pub(super) fn find_groups(
    url: &str,
    options: &DedupOptions,
    cancel: &AtomicBool,
    progress: &ProgressBar,
) -> anyhow::Result<Vec<DuplicateGroup>> {
    remote::runtime()?.block_on(async {
        let mut client = remote::connect_ready(url).await?;
        let request = pb::FindDuplicatesRequest {
            threshold: Some(options.threshold),
            path_prefix: options.path_prefix.clone().unwrap_or_default(),
            keeper_rule: options.keeper_rule.iter().map(|&c| criterion(c) as i32).collect(),
            neighbours: options.neighbours as u32,
            verify_from: Some(options.verify_from),
            min_geometry: options.min_geometry,
            no_verify: options.min_geometry.is_none(),
        };
        let mut stream = client
            .dedup
            .find_duplicates(request)
            .await
            .map_err(|s| remote::call_failed("finding duplicates", s))?
            .into_inner();
        let mut groups = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            let message = tokio::select! {
                m = stream.message() => m.map_err(|s| remote::call_failed("finding duplicates", s))?,
                _ = tick.tick() => {
                    if cancel.load(Ordering::SeqCst) {
                        return Ok(groups);
                    }
                    continue;
                }
            };
            match message.and_then(|m| m.event) {
                Some(Event::Progress(p)) if p.to_verify > 0 => {
                    progress.set_message("verifying (pairs)");
                    progress.set_length(p.to_verify);
                    progress.set_position(p.verified);
                }
                Some(Event::Progress(p)) => {
                    progress.set_message("neighbours (images)");
                    progress.set_length(p.total);
                    progress.set_position(p.searched);
                }
                Some(Event::Group(g)) => groups.push(group(g)?),
                Some(Event::Summary(_)) => return Ok(groups),
                None => anyhow::bail!("the server ended the duplicate search without a summary"),
            }
        }
    })
}

fn criterion(c: KeeperCriterion) -> pb::KeeperCriterion {
    match c {
        KeeperCriterion::Pixels => pb::KeeperCriterion::Pixels,
        KeeperCriterion::FileSize => pb::KeeperCriterion::FileSize,
        KeeperCriterion::Oldest => pb::KeeperCriterion::Oldest,
    }
}

fn group(g: pb::DuplicateGroup) -> anyhow::Result<DuplicateGroup> {
    let kind = match g.kind() {
        pb::DuplicateKind::Exact => DuplicateKind::Exact,
        pb::DuplicateKind::Near => DuplicateKind::Near,
        pb::DuplicateKind::Unspecified => anyhow::bail!("the server sent a group of no kind"),
    };
    let members = g
        .members
        .into_iter()
        .map(|m| {
            let image = m.image.ok_or_else(|| anyhow::anyhow!("the server sent a member without its record"))?;
            let blake3 = blake3::Hash::from_hex(&image.blake3)
                .map_err(|e| anyhow::anyhow!("bad blake3 `{}` from the server: {e}", image.blake3))?;
            let record = ImageRecord {
                path: image.path.into(),
                size: image.size_bytes,
                mtime_ns: image.mtime_ns,
                blake3: *blake3.as_bytes(),
                width: image.width,
                height: image.height,
                status: ImageStatus::Embedded,
            };
            Ok(DuplicateMember { id: ImageId(image.id), record, score: m.score })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(members.len() >= 2, "the server sent a group of {} members", members.len());
    Ok(DuplicateGroup { kind, members, keeper_reason: g.keeper_reason })
}
