//! [`Store`] for [`PostgresStore`]: each method one query (or one transaction) on a pooled
//! connection.

use pgvector::Vector;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::Ordering;
use tokio_postgres::types::Json;

use pixdex_core::{Entries, ImageRecord, NearestFilter, Result, Store, StoredImage, ValueKind};

use crate::schema::{self, BYTE_KINDS, table};
use crate::{PostgresStore, backend};

/// Rows a paged read fetches at a time.
const PAGE: i64 = 1024;

fn to_i64(id: u64) -> i64 {
    // Ids come from a bigint sequence: always positive.
    id as i64
}

fn vector_bytes(v: &Vector) -> Vec<u8> {
    v.as_slice().iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bytes_vector(b: &[u8]) -> Vector {
    Vector::from(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<f32>>())
}

/// The text of a path as stored (records hold UTF-8 paths).
fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// `prefix` as a LIKE pattern matching what starts with it.
pub(crate) fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// A value column read as the core's bytes.
fn value_select(kind: ValueKind) -> &'static str {
    if kind == ValueKind::Global { "embedding" } else { "value" }
}

fn value_from_row(kind: ValueKind, row: &tokio_postgres::Row) -> Vec<u8> {
    if kind == ValueKind::Global { vector_bytes(&row.get::<_, Vector>(1)) } else { row.get::<_, Vec<u8>>(1) }
}

/// Reads the page of rows whose ids start at the cursor.
type FetchPage<'a, T> = dyn FnMut(u64) -> Result<Vec<(u64, T)>> + Send + 'a;

/// A lazily paged read in id order: `fetch(cursor)` returns the next rows with ids from
/// `cursor` on (at most a page).
struct Pages<'a, T> {
    fetch: Box<FetchPage<'a, T>>,
    buffer: VecDeque<(u64, T)>,
    cursor: Option<u64>,
}

impl<T> Iterator for Pages<'_, T> {
    type Item = Result<(u64, T)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffer.is_empty() {
            let cursor = self.cursor?;
            match (self.fetch)(cursor) {
                Ok(rows) => {
                    self.cursor = rows.last().map(|(id, _)| id + 1);
                    self.buffer.extend(rows);
                }
                Err(e) => {
                    self.cursor = None;
                    return Some(Err(e));
                }
            }
        }
        self.buffer.pop_front().map(Ok)
    }
}

impl PostgresStore {
    fn location(&self) -> &str {
        &self.inner.location
    }

    /// The global vectors' dimension, once pinned.
    fn dim(&self) -> Option<usize> {
        Some(self.inner.dim.load(Ordering::Acquire)).filter(|&d| d > 0)
    }
}

impl Store for PostgresStore {
    fn location(&self) -> String {
        self.inner.location.clone()
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn pin_dimension(&self, dim: usize) -> Result<()> {
        if self.dim() == Some(dim) {
            return Ok(());
        }
        if dim > 4000 {
            return Err(backend(
                self.location(),
                "pinning",
                format!("pgvector indexes at most 4000 dimensions, not {dim}"),
            ));
        }
        self.run(move |inner| async move {
            let mut client = inner.client().await?;
            let err = inner.err("creating the vector index");
            let typed = "SELECT format_type(atttypid, atttypmod) = $1 AND EXISTS (SELECT 1 FROM pg_indexes \
                         WHERE indexname = 'pixdex_global_hnsw') FROM pg_attribute \
                         WHERE attrelid = 'pixdex_global'::regclass AND attname = 'embedding'";
            let wanted = format!("vector({dim})");
            // Checked before locking: a read replica can read it but take no lock.
            if !client.query_one(typed, &[&wanted]).await.map_err(&err)?.get::<_, bool>(0) {
                let tx = client.transaction().await.map_err(&err)?;
                tx.execute("SELECT pg_advisory_xact_lock(7101386643)", &[]).await.map_err(&err)?;
                if !tx.query_one(typed, &[&wanted]).await.map_err(&err)?.get::<_, bool>(0) {
                    tx.batch_execute(&schema::vector_index_sql(dim)).await.map_err(&err)?;
                }
                tx.commit().await.map_err(&err)?;
            }
            inner.dim.store(dim, Ordering::Release);
            Ok(())
        })
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let key = key.to_string();
        self.run(move |inner| async move {
            let client = inner.client().await?;
            let row = client
                .query_opt("SELECT value FROM pixdex_meta WHERE key = $1", &[&key])
                .await
                .map_err(inner.err("reading meta"))?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn meta_insert_if_absent(&self, key: &str, value: &[u8]) -> Result<Vec<u8>> {
        let (key, value) = (key.to_string(), value.to_vec());
        self.run(move |inner| async move {
            let client = inner.client().await?;
            let err = inner.err("writing meta");
            client
                .execute(
                    "INSERT INTO pixdex_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                    &[&key, &value],
                )
                .await
                .map_err(&err)?;
            Ok(client.query_one("SELECT value FROM pixdex_meta WHERE key = $1", &[&key]).await.map_err(&err)?.get(0))
        })
    }

    fn generation(&self) -> Result<u64> {
        self.run(|inner| async move {
            let client = inner.client().await?;
            let row = client
                .query_one("SELECT value FROM pixdex_generation", &[])
                .await
                .map_err(inner.err("reading the generation"))?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    fn record_count(&self) -> Result<usize> {
        self.run(|inner| async move {
            let client = inner.client().await?;
            let row = client
                .query_one("SELECT count(*) FROM pixdex_images", &[])
                .await
                .map_err(inner.err("counting images"))?;
            Ok(row.get::<_, i64>(0) as usize)
        })
    }

    fn record(&self, id: u64) -> Result<Option<ImageRecord>> {
        self.run(move |inner| async move {
            let client = inner.client().await?;
            let row = client
                .query_opt("SELECT record FROM pixdex_images WHERE image_id = $1", &[&to_i64(id)])
                .await
                .map_err(inner.err("reading a record"))?;
            Ok(row.map(|r| r.get::<_, Json<ImageRecord>>(0).0))
        })
    }

    fn records_of(&self, ids: &[u64]) -> Result<Vec<Option<ImageRecord>>> {
        let wanted: Vec<i64> = ids.iter().map(|&id| to_i64(id)).collect();
        self.run(move |inner| async move {
            let client = inner.client().await?;
            let rows = client
                .query("SELECT image_id, record FROM pixdex_images WHERE image_id = ANY($1)", &[&wanted])
                .await
                .map_err(inner.err("reading records"))?;
            let found: std::collections::HashMap<i64, ImageRecord> =
                rows.iter().map(|r| (r.get::<_, i64>(0), r.get::<_, Json<ImageRecord>>(1).0)).collect();
            Ok(wanted.iter().map(|id| found.get(id).cloned()).collect())
        })
    }

    fn records(&self) -> Entries<'_, ImageRecord> {
        Box::new(Pages {
            fetch: Box::new(move |cursor| {
                self.run(move |inner| async move {
                    let client = inner.client().await?;
                    let rows = client
                        .query(
                            "SELECT image_id, record FROM pixdex_images WHERE image_id >= $1 ORDER BY image_id LIMIT $2",
                            &[&to_i64(cursor), &PAGE],
                        )
                        .await
                        .map_err(inner.err("reading records"))?;
                    Ok(rows.iter().map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, Json<ImageRecord>>(1).0)).collect())
                })
            }),
            buffer: VecDeque::new(),
            cursor: Some(0),
        })
    }

    fn id_by_path(&self, path: &Path) -> Result<Option<u64>> {
        let path = path_text(path);
        self.run(move |inner| async move {
            let client = inner.client().await?;
            let row = client
                .query_opt("SELECT image_id FROM pixdex_images WHERE path = $1", &[&path])
                .await
                .map_err(inner.err("looking up a path"))?;
            Ok(row.map(|r| r.get::<_, i64>(0) as u64))
        })
    }

    fn ids_with_path_prefix(&self, prefix: &str) -> Result<Vec<u64>> {
        let pattern = like_prefix(prefix);
        self.run(move |inner| async move {
            let client = inner.client().await?;
            let rows = client
                .query("SELECT image_id FROM pixdex_images WHERE path LIKE $1 ESCAPE '\\' ORDER BY path", &[&pattern])
                .await
                .map_err(inner.err("listing a path prefix"))?;
            Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
        })
    }

    fn ids_by_hash(&self, hash: &[u8; 32]) -> Result<Vec<u64>> {
        let hash = hash.to_vec();
        self.run(move |inner| async move {
            let client = inner.client().await?;
            let rows = client
                .query("SELECT image_id FROM pixdex_images WHERE blake3 = $1 ORDER BY image_id", &[&hash])
                .await
                .map_err(inner.err("looking up a hash"))?;
            Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
        })
    }

    fn value(&self, kind: ValueKind, id: u64) -> Result<Option<Vec<u8>>> {
        self.run(move |inner| async move {
            let client = inner.client().await?;
            let sql = format!("SELECT image_id, {} FROM {} WHERE image_id = $1", value_select(kind), table(kind));
            let row = client.query_opt(&sql, &[&to_i64(id)]).await.map_err(inner.err("reading a value"))?;
            Ok(row.map(|r| value_from_row(kind, &r)))
        })
    }

    fn has_value(&self, kind: ValueKind, id: u64) -> Result<bool> {
        self.run(move |inner| async move {
            let client = inner.client().await?;
            let sql = format!("SELECT EXISTS (SELECT 1 FROM {} WHERE image_id = $1)", table(kind));
            Ok(client.query_one(&sql, &[&to_i64(id)]).await.map_err(inner.err("reading a value"))?.get(0))
        })
    }

    fn values(&self, kind: ValueKind, from: u64, step: usize) -> Entries<'_, Vec<u8>> {
        let step = step.max(1) as i64;
        // Each page numbers a window of `PAGE × step` ids and reads every `step`-th row's value,
        // so that skipped rows' values never leave the server; every row also says where the
        // window ends (the next one starts after it, not after its last kept row).
        let sql = format!(
            "SELECT t.image_id, t.{col}, s.last FROM {table} t JOIN (\
                 SELECT image_id, row_number() OVER (ORDER BY image_id) - 1 AS n, max(image_id) OVER () AS last \
                 FROM (SELECT image_id FROM {table} WHERE image_id >= $1 ORDER BY image_id LIMIT $2) w\
             ) s USING (image_id) WHERE s.n % $3 = 0 ORDER BY t.image_id",
            col = value_select(kind),
            table = table(kind)
        );
        let mut window_end: Option<u64> = None;
        Box::new(Pages {
            fetch: Box::new(move |cursor| {
                let start = window_end.map_or(cursor, |end| end.max(cursor));
                let sql = sql.clone();
                let rows = self.run(move |inner| async move {
                    let client = inner.client().await?;
                    let rows = client
                        .query(&sql, &[&to_i64(start), &(PAGE * step), &step])
                        .await
                        .map_err(inner.err("reading values"))?;
                    Ok(rows)
                })?;
                // Row 0 of a window is always kept: an empty page means nothing is left.
                window_end = rows.first().map(|r| r.get::<_, i64>(2) as u64 + 1);
                Ok(rows.iter().map(|r| (r.get::<_, i64>(0) as u64, value_from_row(kind, r))).collect())
            }),
            buffer: VecDeque::new(),
            cursor: Some(from),
        })
    }

    fn ids_with_value(&self, kind: ValueKind) -> Result<Vec<u64>> {
        self.run(move |inner| async move {
            let client = inner.client().await?;
            let sql = format!("SELECT image_id FROM {} ORDER BY image_id", table(kind));
            let rows = client.query(&sql, &[]).await.map_err(inner.err("listing ids"))?;
            Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
        })
    }

    fn value_bytes(&self, kind: ValueKind) -> Result<(u64, usize)> {
        let size = if kind == ValueKind::Global { "vector_dims(embedding) * 4" } else { "octet_length(value)" };
        let sql = format!("SELECT coalesce(sum({size}), 0)::bigint, count(*) FROM {}", table(kind));
        self.run(move |inner| async move {
            let client = inner.client().await?;
            let row = client.query_one(&sql, &[]).await.map_err(inner.err("measuring values"))?;
            Ok((row.get::<_, i64>(0) as u64, row.get::<_, i64>(1) as usize))
        })
    }

    fn allocate_ids(&self, n: usize) -> Result<Vec<u64>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let n = n as i64;
        self.run(move |inner| async move {
            let client = inner.client().await?;
            let rows = client
                .query("SELECT nextval('pixdex_image_ids') FROM generate_series(1, $1::bigint)", &[&n])
                .await
                .map_err(inner.err("allocating ids"))?;
            Ok(rows.iter().map(|r| r.get::<_, i64>(0) as u64).collect())
        })
    }

    fn commit(&self, removed: &[(u64, ImageRecord)], inserted: &[StoredImage]) -> Result<Vec<u64>> {
        let removed: Vec<i64> = removed.iter().map(|(id, _)| to_i64(*id)).collect();
        let images = inserted
            .iter()
            .map(|i| (to_i64(i.id), path_text(&i.record.path), i.record.blake3.to_vec(), i.record.clone()))
            .collect();
        let globals = inserted
            .iter()
            .filter_map(|i| Some((to_i64(i.id), bytes_vector(i.values.get(ValueKind::Global)?))))
            .collect();
        let values = BYTE_KINDS
            .iter()
            .map(|&kind| {
                let (ids, blobs) = inserted
                    .iter()
                    .filter_map(|i| Some((to_i64(i.id), i.values.get(kind)?.to_vec())))
                    .unzip::<_, _, Vec<i64>, Vec<Vec<u8>>>();
                (kind, ids, blobs)
            })
            .collect();
        self.run(move |inner| inner.commit(removed, images, globals, values))
    }

    fn update_record(&self, id: u64, record: &ImageRecord) -> Result<bool> {
        let (path, hash, record) = (path_text(&record.path), record.blake3.to_vec(), record.clone());
        self.run(move |inner| async move {
            let mut client = inner.client().await?;
            let err = inner.err("updating a record");
            let tx = client.transaction().await.map_err(&err)?;
            let n = tx
                .execute(
                    "UPDATE pixdex_images SET path = $2, blake3 = $3, record = $4 WHERE image_id = $1",
                    &[&to_i64(id), &path, &hash, &Json(&record)],
                )
                .await
                .map_err(&err)?;
            // Same bytes, new mtime: the file is done.
            tx.execute("DELETE FROM pixdex_work WHERE path = $1", &[&path]).await.map_err(&err)?;
            tx.commit().await.map_err(&err)?;
            Ok(n == 1)
        })
    }

    fn flush(&self) -> Result<()> {
        // Every commit is durable when PostgreSQL acknowledges it.
        Ok(())
    }

    fn disk_bytes(&self) -> u64 {
        let measured = self.run(|inner| async move {
            let client = inner.client().await?;
            let row = client
                .query_one(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
                     WHERE c.relname LIKE 'pixdex\\_%' AND c.relkind IN ('r', 'S')",
                    &[],
                )
                .await
                .map_err(inner.err("measuring the tables"))?;
            Ok(row.get::<_, i64>(0) as u64)
        });
        measured.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot measure the database's size");
            0
        })
    }

    fn work_queue(&self) -> Option<&dyn pixdex_core::WorkQueue> {
        Some(self)
    }

    fn nearest(&self, query: &[f32], k: usize, ef: usize, filter: &NearestFilter) -> Result<Option<Vec<(u64, f32)>>> {
        let Some(dim) = self.dim() else { return Ok(Some(Vec::new())) };
        let query = Vector::from(query.to_vec());
        let prefix = filter.path_prefix.map(str::to_string);
        let exclude: Vec<i64> = filter.exclude.iter().map(|&id| to_i64(id)).collect();
        self.run(move |inner| inner.nearest(query, k as i64, ef, dim, prefix, exclude)).map(Some)
    }
}
