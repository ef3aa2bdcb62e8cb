//! `pixdex dedup --server URL`: the groups come from the server's `DedupService`, streamed with
//! its progress; the reports and moves are then the same as offline.

use anyhow::Context;
use indicatif::ProgressBar;
use pixdex_core::{DedupOptions, DuplicateGroup};
use pixdex_server::convert::dedup_progress;
use pixdex_server::pb::{self, find_duplicates_response::Event};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::remote;

/// Runs the search on the server. Returns what was found when `cancel` is set (dropping the stream
/// cancels the work on the server).
pub(super) fn find_groups(
    remote: &remote::Remote,
    options: &DedupOptions,
    cancel: &AtomicBool,
    progress: &ProgressBar,
) -> anyhow::Result<Vec<DuplicateGroup>> {
    remote::runtime()?.block_on(async {
        let mut client = remote::connect_ready(remote).await?;
        let request = pb::FindDuplicatesRequest::from(options);
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
                Some(Event::Progress(p)) => {
                    let (phase, done, total) = dedup_progress(&p);
                    progress.set_message(super::phase_name(phase));
                    progress.set_length(total);
                    progress.set_position(done);
                }
                Some(Event::Group(g)) => {
                    groups.push(DuplicateGroup::try_from(g).context("the server sent a malformed group")?)
                }
                Some(Event::Summary(_)) => return Ok(groups),
                None => anyhow::bail!("the server ended the duplicate search without a summary"),
            }
        }
    })
}
