//! The feeder of an index job on a store whose work queue several workers share: what the crawl
//! found to do is queued, then this worker claims a few files at a time (under a lease) and
//! feeds only those to its decoders. A file leaves the queue with the commit that stores it.

use crossbeam_channel::Sender;
use pixdex_core::{Collection, WorkItem, WorkQueue};
use std::sync::atomic::{AtomicBool, Ordering};

use super::IndexOptions;
use crate::crawl::{FoundFile, mtime_ns};
use crate::error::Result;

/// A name for this worker, unique among processes and machines sharing the queue.
pub(super) fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{host}:{}:{:x}", std::process::id(), nonce & 0xffff_ffff)
}

/// Queues the crawl's files to do; returns how many were not queued already.
pub(super) fn enqueue(queue: &dyn WorkQueue, todo: &[FoundFile]) -> Result<usize> {
    let items: Vec<WorkItem> =
        todo.iter().map(|f| WorkItem { path: f.path.clone(), size: f.size, mtime_ns: f.mtime_ns }).collect();
    Ok(queue.enqueue(&items)?)
}

/// Claims files until the queue under the job's roots has none free, sending each to the
/// decoders; returns how many were claimed. A claimed file that is gone from disk, or already
/// stored as it is now (another worker finished it after this one's crawl), leaves the queue
/// here without being read.
pub(super) fn feed_claims(
    collection: &Collection,
    queue: &dyn WorkQueue,
    worker: &str,
    options: &IndexOptions,
    work: Sender<FoundFile>,
    cancel: &AtomicBool,
) -> Result<usize> {
    let n = 2 * options.batch_size.max(1);
    let mut claimed = 0;
    while !cancel.load(Ordering::Relaxed) {
        let items = queue.claim(worker, &options.crawl.roots, n, options.claim_lease)?;
        if items.is_empty() {
            break;
        }
        claimed += items.len();
        let mut settled = Vec::new();
        for item in items {
            let now = if options.crawl.follow_links {
                std::fs::metadata(&item.path)
            } else {
                std::fs::symlink_metadata(&item.path)
            }
            .ok();
            let stored = match collection.id_by_path(&item.path)? {
                Some(id) => collection.get(id)?,
                None => None,
            };
            let current = now.as_ref().map(|m| (m.len(), mtime_ns(m)));
            let done_already = stored.is_some_and(|r| Some((r.size, r.mtime_ns)) == current);
            if now.is_none() || done_already {
                settled.push(item.path);
                continue;
            }
            let (size, mtime_ns) = current.unwrap_or((item.size, item.mtime_ns));
            if work.send(FoundFile { path: item.path, size, mtime_ns }).is_err() {
                return Ok(claimed);
            }
        }
        if !settled.is_empty() {
            queue.forget(&settled)?;
        }
    }
    Ok(claimed)
}
