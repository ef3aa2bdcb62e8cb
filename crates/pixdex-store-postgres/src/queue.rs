//! [`WorkQueue`] for [`PostgresStore`]: the `pixdex_work` table, claimed with
//! `FOR UPDATE SKIP LOCKED` so that workers never wait on each other's rows, under leases that
//! expire (a killed worker's files go to another).

use std::path::PathBuf;
use std::time::Duration;

use pixdex_core::{QueueProgress, Result, WorkItem, WorkQueue};

use crate::PostgresStore;

/// LIKE patterns matching the paths under `roots`.
fn root_patterns(roots: &[PathBuf]) -> Vec<String> {
    roots
        .iter()
        .map(|r| {
            let mut root = r.to_string_lossy().into_owned();
            if !root.ends_with('/') {
                root.push('/');
            }
            crate::store::like_prefix(&root)
        })
        .collect()
}

fn item(row: &tokio_postgres::Row) -> WorkItem {
    WorkItem {
        path: PathBuf::from(row.get::<_, String>(0)),
        size: row.get::<_, i64>(1) as u64,
        mtime_ns: row.get::<_, i64>(2),
    }
}

impl WorkQueue for PostgresStore {
    fn enqueue(&self, items: &[WorkItem]) -> Result<usize> {
        let paths: Vec<String> = items.iter().map(|i| i.path.to_string_lossy().into_owned()).collect();
        let sizes: Vec<i64> = items.iter().map(|i| i.size as i64).collect();
        let mtimes: Vec<i64> = items.iter().map(|i| i.mtime_ns).collect();
        self.run(move |inner| async move {
            let client = inner.client().await?;
            let n = client
                .execute(
                    "INSERT INTO pixdex_work (path, size, mtime_ns) \
                     SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[]) ON CONFLICT (path) DO NOTHING",
                    &[&paths, &sizes, &mtimes],
                )
                .await
                .map_err(inner.err("queueing work"))?;
            Ok(n as usize)
        })
    }

    fn claim(&self, worker: &str, roots: &[PathBuf], n: usize, lease: Duration) -> Result<Vec<WorkItem>> {
        let (worker, patterns) = (worker.to_string(), root_patterns(roots));
        let (n, lease_s) = (n as i64, lease.as_secs_f64());
        self.run(move |inner| async move {
            let mut client = inner.client().await?;
            let err = inner.err("claiming work");
            let tx = client.transaction().await.map_err(&err)?;
            tx.execute(
                "UPDATE pixdex_work SET lease_until = now() + make_interval(secs => $2) WHERE claimed_by = $1",
                &[&worker, &lease_s],
            )
            .await
            .map_err(&err)?;
            let rows = tx
                .query(
                    "UPDATE pixdex_work w SET claimed_by = $1, lease_until = now() + make_interval(secs => $2) \
                     FROM (SELECT path FROM pixdex_work \
                           WHERE (claimed_by IS NULL OR lease_until < now()) AND path LIKE ANY($3) \
                           ORDER BY queued_at, path LIMIT $4 FOR UPDATE SKIP LOCKED) free \
                     WHERE w.path = free.path RETURNING w.path, w.size, w.mtime_ns",
                    &[&worker, &lease_s, &patterns, &n],
                )
                .await
                .map_err(&err)?;
            tx.commit().await.map_err(&err)?;
            let mut items: Vec<WorkItem> = rows.iter().map(item).collect();
            items.sort_by(|a, b| a.path.cmp(&b.path));
            Ok(items)
        })
    }

    fn release(&self, worker: &str) -> Result<()> {
        let worker = worker.to_string();
        self.run(move |inner| async move {
            let client = inner.client().await?;
            client
                .execute(
                    "UPDATE pixdex_work SET claimed_by = NULL, lease_until = NULL WHERE claimed_by = $1",
                    &[&worker],
                )
                .await
                .map_err(inner.err("releasing work"))?;
            Ok(())
        })
    }

    fn forget(&self, paths: &[PathBuf]) -> Result<()> {
        let paths: Vec<String> = paths.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        self.run(move |inner| async move {
            let client = inner.client().await?;
            client
                .execute("DELETE FROM pixdex_work WHERE path = ANY($1)", &[&paths])
                .await
                .map_err(inner.err("forgetting work"))?;
            Ok(())
        })
    }

    fn progress(&self, roots: &[PathBuf]) -> Result<QueueProgress> {
        let patterns = root_patterns(roots);
        self.run(move |inner| async move {
            let client = inner.client().await?;
            let row = client
                .query_one(
                    "SELECT count(*) FILTER (WHERE claimed_by IS NULL OR lease_until < now()), \
                            count(*) FILTER (WHERE claimed_by IS NOT NULL AND lease_until >= now()) \
                     FROM pixdex_work WHERE path LIKE ANY($1)",
                    &[&patterns],
                )
                .await
                .map_err(inner.err("reading the work queue"))?;
            Ok(QueueProgress { waiting: row.get::<_, i64>(0) as u64, claimed: row.get::<_, i64>(1) as u64 })
        })
    }
}
