//! `pixdex.v1.IndexService`: index jobs over folders on the server's machine.

use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::config::ServerConfig;
use crate::convert::IndexJobRequest;
use crate::pb;
use crate::state::AppState;
use crate::status::ServiceError;

/// Watchers get at most one update per this interval (the last state always arrives).
const WATCH_INTERVAL: Duration = Duration::from_millis(100);

pub(crate) struct IndexApi {
    pub(crate) state: Arc<AppState>,
}

/// The folder to crawl for a requested root, if the server allows it: absolute, no `..`, and
/// (after resolving symbolic links, when it exists) inside an allowed root.
pub(crate) fn allowed_root(config: &ServerConfig, path: &Path) -> Result<PathBuf, ServiceError> {
    let root = path.display();
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        return Err(ServiceError::invalid(format!("root `{root}` must be an absolute path without `..`")));
    }
    if config.allowed_roots.is_empty() {
        return Err(ServiceError::FailedPrecondition(
            "this server allows no index jobs: start it with `pixdex serve --allow-root DIR`".into(),
        ));
    }
    // A missing root stays as given: the job reports it and removes nothing.
    let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if config.allowed_roots.iter().any(|allowed| resolved.starts_with(allowed)) {
        Ok(resolved)
    } else {
        let allowed: Vec<String> = config.allowed_roots.iter().map(|p| p.display().to_string()).collect();
        Err(ServiceError::PermissionDenied(format!(
            "`{root}` is outside the folders this server may index ({})",
            allowed.join(", ")
        )))
    }
}

type JobStream = Pin<Box<dyn Stream<Item = Result<pb::IndexJob, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::index_service_server::IndexService for IndexApi {
    async fn start_index_job(
        &self,
        request: Request<pb::StartIndexJobRequest>,
    ) -> Result<Response<pb::IndexJob>, Status> {
        let request = IndexJobRequest::try_from(request.into_inner()).map_err(ServiceError::from)?;
        let state = &self.state;
        let roots = request.roots.iter().map(|r| allowed_root(&state.config, r)).collect::<Result<Vec<_>, _>>()?;
        if request.follow_symlinks && !state.config.allow_follow_symlinks {
            return Err(ServiceError::PermissionDenied(
                "following symbolic links can leave the allowed folders; the server must be started with \
                 `--allow-follow-symlinks`"
                    .into(),
            )
            .into());
        }
        let collection = state.collection()?;
        let encoder = state.model()?.encoder.clone();
        let options = request.options(roots, state.config.index_batch_size.max(1));
        let job = state.jobs.start(collection, encoder, options)?;
        tracing::info!(job = %job.id, "index job started");
        Ok(Response::new(job.snapshot(0).0))
    }

    type WatchIndexJobStream = JobStream;

    async fn watch_index_job(
        &self,
        request: Request<pb::WatchIndexJobRequest>,
    ) -> Result<Response<Self::WatchIndexJobStream>, Status> {
        let job = self.state.jobs.get(&request.into_inner().job_id)?;
        let shutdown = self.state.shutdown.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut changed = job.subscribe();
            let mut errors_sent = 0;
            loop {
                changed.mark_unchanged();
                let finished = job.is_finished();
                let (snapshot, errors) = job.snapshot(errors_sent);
                errors_sent = errors;
                if tx.send(Ok(snapshot)).await.is_err() || finished {
                    return; // the client went away, or that was the final state
                }
                tokio::select! {
                    r = changed.changed() => if r.is_err() { return },
                    () = tx.closed() => return,
                    // At shutdown the job is cancelled: keep going until its final state.
                    () = shutdown.cancelled(), if !job.cancel.load(Ordering::Relaxed) => {}
                }
                tokio::time::sleep(WATCH_INTERVAL).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn cancel_index_job(
        &self,
        request: Request<pb::CancelIndexJobRequest>,
    ) -> Result<Response<pb::IndexJob>, Status> {
        let job = self.state.jobs.get(&request.into_inner().job_id)?;
        job.cancel.store(true, Ordering::Relaxed);
        tracing::info!(job = %job.id, "index job cancel requested");
        Ok(Response::new(job.snapshot(0).0))
    }

    async fn get_index_job(&self, request: Request<pb::GetIndexJobRequest>) -> Result<Response<pb::IndexJob>, Status> {
        let job = self.state.jobs.get(&request.into_inner().job_id)?;
        Ok(Response::new(job.snapshot(0).0))
    }

    async fn list_index_jobs(
        &self,
        _request: Request<pb::ListIndexJobsRequest>,
    ) -> Result<Response<pb::ListIndexJobsResponse>, Status> {
        let jobs = self.state.jobs.list().iter().map(|j| j.snapshot(0).0).collect();
        Ok(Response::new(pb::ListIndexJobsResponse { jobs }))
    }
}
