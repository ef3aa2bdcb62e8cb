//! `pixdex.v1.DedupService`: duplicate groups streamed as found, and the duplicates of one image.

use pixdex_core::{DedupOptions, DedupPhase, DuplicateGroup, DuplicateKind, DuplicateMember, KeeperCriterion};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::convert::image_record;
use crate::pb::{self, find_duplicates_response::Event};
use crate::state::{AppState, blocking};
use crate::status::ServiceError;

/// Most neighbours per image a request may ask for.
const MAX_NEIGHBOURS: u32 = 100;

pub(crate) struct DedupApi {
    pub(crate) state: Arc<AppState>,
}

/// The near-duplicate rule of a request; unset fields take the defaults.
struct Rule {
    threshold: Option<f32>,
    verify_from: Option<f32>,
    min_geometry: Option<f32>,
    no_verify: bool,
}

fn options(
    rule: Rule,
    keeper_rule: &[i32],
    neighbours: usize,
    path_prefix: String,
) -> Result<DedupOptions, ServiceError> {
    let defaults = DedupOptions::default();
    let threshold = rule.threshold.unwrap_or(defaults.threshold);
    let verify_from = rule.verify_from.unwrap_or(defaults.verify_from);
    for (name, v) in [("threshold", threshold), ("verify_from", verify_from)] {
        if !(-1.0..=1.0).contains(&v) {
            return Err(ServiceError::invalid(format!("{name} must be within -1..=1, not {v}")));
        }
    }
    let min_geometry = if rule.no_verify { None } else { rule.min_geometry.or(defaults.min_geometry) };
    if let Some(g) = min_geometry
        && !(0.0..=1.0).contains(&g)
    {
        return Err(ServiceError::invalid(format!("min_geometry must be within 0..=1, not {g}")));
    }
    let keeper_rule = if keeper_rule.is_empty() {
        defaults.keeper_rule
    } else {
        keeper_rule
            .iter()
            .map(|&c| match pb::KeeperCriterion::try_from(c) {
                Ok(pb::KeeperCriterion::Pixels) => Ok(KeeperCriterion::Pixels),
                Ok(pb::KeeperCriterion::FileSize) => Ok(KeeperCriterion::FileSize),
                Ok(pb::KeeperCriterion::Oldest) => Ok(KeeperCriterion::Oldest),
                Ok(pb::KeeperCriterion::Unspecified) | Err(_) => {
                    Err(ServiceError::invalid(format!("unknown keeper criterion {c}")))
                }
            })
            .collect::<Result<_, _>>()?
    };
    Ok(DedupOptions {
        threshold,
        verify_from,
        min_geometry,
        neighbours,
        path_prefix: Some(path_prefix).filter(|p| !p.is_empty()),
        keeper_rule,
    })
}

fn member(m: &DuplicateMember) -> pb::DuplicateMember {
    pb::DuplicateMember { image: Some(image_record(m.id, &m.record)), score: m.score }
}

fn group(g: &DuplicateGroup) -> pb::DuplicateGroup {
    let kind = match g.kind {
        DuplicateKind::Exact => pb::DuplicateKind::Exact,
        DuplicateKind::Near => pb::DuplicateKind::Near,
    };
    pb::DuplicateGroup {
        kind: kind.into(),
        members: g.members.iter().map(member).collect(),
        keeper_reason: g.keeper_reason.clone(),
    }
}

type DedupStream = Pin<Box<dyn Stream<Item = Result<pb::FindDuplicatesResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::dedup_service_server::DedupService for DedupApi {
    type FindDuplicatesStream = DedupStream;

    async fn find_duplicates(
        &self,
        request: Request<pb::FindDuplicatesRequest>,
    ) -> Result<Response<Self::FindDuplicatesStream>, Status> {
        let pb::FindDuplicatesRequest {
            threshold,
            path_prefix,
            keeper_rule,
            neighbours,
            verify_from,
            min_geometry,
            no_verify,
        } = request.into_inner();
        if neighbours > MAX_NEIGHBOURS {
            return Err(ServiceError::invalid(format!("neighbours must be at most {MAX_NEIGHBOURS}")).into());
        }
        let neighbours = if neighbours == 0 { DedupOptions::default().neighbours } else { neighbours as usize };
        let rule = Rule { threshold, verify_from, min_geometry, no_verify };
        let options = options(rule, &keeper_rule, neighbours, path_prefix)?;
        let collection = self.state.collection()?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        // The run stops when the server shuts down, or when the client goes away (a failed send:
        // progress goes out every 1024 images). The watcher must not hold a sender, or the
        // stream would never end.
        let cancel = Arc::new(AtomicBool::new(false));
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let (watch_cancel, shutdown) = (cancel.clone(), self.state.shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => watch_cancel.store(true, Ordering::Relaxed),
                _ = finished => {}
            }
        });
        tokio::task::spawn_blocking(move || {
            let _done = done; // dropped when the run ends, which releases the watcher
            let started = Instant::now();
            let send = |event: Event| {
                if tx.is_closed() || tx.blocking_send(Ok(pb::FindDuplicatesResponse { event: Some(event) })).is_err() {
                    cancel.store(true, Ordering::Relaxed);
                }
            };
            // The verifying phase repeats the finished search counts.
            let searched = std::sync::Mutex::new((0u64, 0u64));
            let progress = |phase: DedupPhase, done: usize, total: usize| {
                let (done, total) = (done as u64, total as u64);
                let event = match phase {
                    DedupPhase::Searching => {
                        *searched.lock().unwrap_or_else(|e| e.into_inner()) = (done, total);
                        pb::DedupProgress { searched: done, total, verified: 0, to_verify: 0 }
                    }
                    DedupPhase::Verifying => {
                        let (searched, total_images) = *searched.lock().unwrap_or_else(|e| e.into_inner());
                        pb::DedupProgress { searched, total: total_images, verified: done, to_verify: total }
                    }
                };
                send(Event::Progress(event))
            };
            let mut on_group = |g: &DuplicateGroup| send(Event::Group(group(g)));
            match collection.find_duplicates(&options, &progress, &cancel, &mut on_group) {
                Ok(_) if cancel.load(Ordering::Relaxed) => {
                    let _ = tx.blocking_send(Err(Status::cancelled("duplicate search cancelled")));
                }
                Ok(groups) => {
                    let reclaimable_bytes =
                        groups.iter().flat_map(|g| g.members.iter().skip(1)).map(|m| m.record.size).sum();
                    send(Event::Summary(pb::DedupSummary {
                        groups: groups.len() as u64,
                        images_in_groups: groups.iter().map(|g| g.members.len() as u64).sum(),
                        reclaimable_bytes,
                        elapsed_seconds: started.elapsed().as_secs_f64(),
                        threshold: options.threshold,
                    }));
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(ServiceError::from(e).into()));
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn duplicates_of(
        &self,
        request: Request<pb::DuplicatesOfRequest>,
    ) -> Result<Response<pb::DuplicatesOfResponse>, Status> {
        let pb::DuplicatesOfRequest { image, threshold, keeper_rule, limit, verify_from, min_geometry, no_verify } =
            request.into_inner();
        let limit = match limit {
            0 => 100,
            l if l as usize > pixdex_core::MAX_K => {
                return Err(ServiceError::invalid(format!("limit must be at most {}", pixdex_core::MAX_K)).into());
            }
            l => l as usize,
        };
        let rule = Rule { threshold, verify_from, min_geometry, no_verify };
        let options = options(rule, &keeper_rule, limit, String::new())?;
        let collection = self.state.collection()?;
        let (id, record) = self.state.resolve(&collection, image)?;
        let found = blocking(move || Ok(collection.duplicates_of(id, &options)?)).await?;
        Ok(Response::new(pb::DuplicatesOfResponse {
            image: Some(image_record(id, &record)),
            exact: found.exact.iter().map(member).collect(),
            near: found.near.iter().map(member).collect(),
            keeper_id: found.keeper.0,
            keeper_reason: found.keeper_reason,
        }))
    }
}
