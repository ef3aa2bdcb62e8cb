//! The two statements of [`crate::PostgresStore`] that take more than one query: a commit (one
//! transaction over every table, serialised across processes by the generation row) and a
//! similarity search (a transaction that sets the beam width, then one pgvector query).

use pgvector::Vector;
use std::sync::Arc;
use tokio_postgres::types::Json;

use pixdex_core::{ImageRecord, Result, ValueKind};

use crate::Inner;
use crate::schema::{self, table};
use crate::store::like_prefix;

impl Inner {
    pub(crate) async fn commit(
        self: Arc<Self>,
        removed: Vec<i64>,
        images: Vec<(i64, String, Vec<u8>, ImageRecord)>,
        globals: Vec<(i64, Vector)>,
        values: Vec<(ValueKind, Vec<i64>, Vec<Vec<u8>>)>,
    ) -> Result<Vec<u64>> {
        let mut client = self.client().await?;
        let err = self.err("committing");
        let tx = client.transaction().await.map_err(&err)?;
        // The generation row first: its lock serialises commits from every process, so what
        // replaces what is decided by one writer at a time.
        tx.execute("UPDATE pixdex_generation SET value = value + 1", &[]).await.map_err(&err)?;
        tx.execute("DELETE FROM pixdex_images WHERE image_id = ANY($1)", &[&removed]).await.map_err(&err)?;
        // Another writer may have stored an image at one of these paths since this one looked.
        let paths: Vec<&str> = images.iter().map(|(_, p, _, _)| p.as_str()).collect();
        let displaced: Vec<i64> = tx
            .query("DELETE FROM pixdex_images WHERE path = ANY($1) RETURNING image_id", &[&paths])
            .await
            .map_err(&err)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let ids: Vec<i64> = images.iter().map(|i| i.0).collect();
        let hashes: Vec<&[u8]> = images.iter().map(|i| i.2.as_slice()).collect();
        let records: Vec<Json<&ImageRecord>> = images.iter().map(|i| Json(&i.3)).collect();
        tx.execute(
            "INSERT INTO pixdex_images (image_id, path, blake3, record) \
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::jsonb[])",
            &[&ids, &paths, &hashes, &records],
        )
        .await
        .map_err(&err)?;
        if !globals.is_empty() {
            let ids: Vec<i64> = globals.iter().map(|g| g.0).collect();
            let vectors: Vec<&Vector> = globals.iter().map(|g| &g.1).collect();
            tx.execute(
                "INSERT INTO pixdex_global (image_id, embedding) SELECT * FROM unnest($1::bigint[], $2::vector[])",
                &[&ids, &vectors],
            )
            .await
            .map_err(&err)?;
        }
        for (kind, ids, blobs) in &values {
            if ids.is_empty() {
                continue;
            }
            let sql = format!(
                "INSERT INTO {} (image_id, value) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
                table(*kind)
            );
            tx.execute(&sql, &[ids, blobs]).await.map_err(&err)?;
        }
        // The files these images were made from are done (for every worker).
        tx.execute("DELETE FROM pixdex_work WHERE path = ANY($1)", &[&paths]).await.map_err(&err)?;
        tx.commit().await.map_err(&err)?;
        let mut gone: Vec<u64> = removed.into_iter().chain(displaced).map(|id| id as u64).collect();
        gone.sort_unstable();
        gone.dedup();
        Ok(gone)
    }

    pub(crate) async fn nearest(
        self: Arc<Self>,
        query: Vector,
        k: i64,
        ef: usize,
        dim: usize,
        prefix: Option<String>,
        exclude: Vec<i64>,
    ) -> Result<Vec<(u64, f32)>> {
        let mut client = self.client().await?;
        let err = self.err("searching");
        let tx = client.transaction().await.map_err(&err)?;
        // pgvector caps ef_search at 1000; filters keep the index scan going until k pass.
        let mut settings = format!("SET LOCAL hnsw.ef_search = {};", ef.clamp(1, 1000));
        if prefix.is_some() || !exclude.is_empty() {
            settings.push_str("SET LOCAL hnsw.iterative_scan = relaxed_order;");
        }
        tx.batch_execute(&settings).await.map_err(&err)?;
        let expr = schema::indexed_embedding(dim);
        let cast = if dim <= schema::MAX_VECTOR_INDEX_DIM { String::new() } else { format!("::halfvec({dim})") };
        let pattern = prefix.as_deref().map(like_prefix);
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&query, &k];
        let mut sql = format!("SELECT image_id, ({expr} <#> $1{cast})::float8 AS d FROM pixdex_global WHERE true");
        if let Some(pattern) = &pattern {
            params.push(pattern);
            let n = params.len();
            sql.push_str(&format!(
                " AND image_id IN (SELECT image_id FROM pixdex_images WHERE path LIKE ${n} ESCAPE '\\')"
            ));
        }
        if !exclude.is_empty() {
            params.push(&exclude);
            sql.push_str(&format!(" AND image_id <> ALL(${})", params.len()));
        }
        sql.push_str(&format!(" ORDER BY {expr} <#> $1{cast} LIMIT $2"));
        let rows = tx.query(&sql, &params).await.map_err(&err)?;
        tx.commit().await.map_err(&err)?;
        // `<#>` is the negative inner product; with relaxed order the rows may come out of order.
        let mut hits: Vec<(u64, f32)> =
            rows.iter().map(|r| (r.get::<_, i64>(0) as u64, -(r.get::<_, f64>(1) as f32))).collect();
        hits.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(hits)
    }
}
