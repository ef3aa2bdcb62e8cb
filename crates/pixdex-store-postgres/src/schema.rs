//! The tables, and the versioned migrations that create them.
//!
//! Every table is keyed by `image_id`, the distribution column under Citus (docs in
//! `deploy/citus.md`): the per-image tables reference `pixdex_images` and are co-located with
//! it, so a commit's statements and a query's joins stay on one shard.
//!
//! * `pixdex_images`: id, path (unique), blake3, the record (jsonb: what the core stores).
//! * `pixdex_global`: id → the global vector (`vector(dim)`, typed when the collection is
//!   pinned to a model), with a pgvector HNSW index on inner product (`halfvec` above 2000
//!   dimensions, pgvector's limit for `vector`).
//! * `pixdex_patches`, `pixdex_views`, `pixdex_flipped_patches`, `pixdex_regions`: id → the
//!   encoded value (`bytea`, the core's codecs).
//! * `pixdex_meta`: named values (the model pin, the region and patch reductions);
//!   `pixdex_generation`: the commit counter, whose row lock serialises commits.
//! * `pixdex_image_ids`: the id sequence. `pixdex_migrations`: applied versions.
//! * `pixdex_work` (version 2): the index workers' shared queue, by path, with who holds each
//!   file and until when (a small table of what is in flight: under Citus a local table on the
//!   coordinator).
//! * Version 3 changes no table: it marks databases whose grids may be the core's codes (format
//!   2, with the patch reduction in `pixdex_meta`), which builds before it cannot decode, so that
//!   they refuse the database instead of misreading it.

use pixdex_core::ValueKind;

/// The newest schema this build writes and reads.
pub const SCHEMA_VERSION: i32 = 3;

/// Migrations, oldest first: `(version, SQL)`. Applied in one transaction each, under an
/// advisory lock, so that workers starting together migrate once.
pub(crate) const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
CREATE EXTENSION IF NOT EXISTS vector;
CREATE SEQUENCE pixdex_image_ids;
CREATE TABLE pixdex_meta (key text PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE pixdex_generation (singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton), value bigint NOT NULL);
INSERT INTO pixdex_generation (value) VALUES (0);
CREATE TABLE pixdex_images (
    image_id bigint PRIMARY KEY,
    path text NOT NULL,
    blake3 bytea NOT NULL,
    record jsonb NOT NULL
);
CREATE UNIQUE INDEX pixdex_images_path ON pixdex_images (path text_pattern_ops);
CREATE INDEX pixdex_images_blake3 ON pixdex_images (blake3);
CREATE TABLE pixdex_global (
    image_id bigint PRIMARY KEY REFERENCES pixdex_images ON DELETE CASCADE,
    embedding vector NOT NULL
);
CREATE TABLE pixdex_patches (image_id bigint PRIMARY KEY REFERENCES pixdex_images ON DELETE CASCADE, value bytea NOT NULL);
CREATE TABLE pixdex_views (image_id bigint PRIMARY KEY REFERENCES pixdex_images ON DELETE CASCADE, value bytea NOT NULL);
CREATE TABLE pixdex_flipped_patches (image_id bigint PRIMARY KEY REFERENCES pixdex_images ON DELETE CASCADE, value bytea NOT NULL);
CREATE TABLE pixdex_regions (image_id bigint PRIMARY KEY REFERENCES pixdex_images ON DELETE CASCADE, value bytea NOT NULL);
"#,
    ),
    (
        2,
        r#"
CREATE TABLE pixdex_work (
    path text PRIMARY KEY,
    size bigint NOT NULL,
    mtime_ns bigint NOT NULL,
    claimed_by text,
    lease_until timestamptz,
    queued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pixdex_work_path ON pixdex_work (path text_pattern_ops);
"#,
    ),
    (3, "SELECT 1;"),
];

/// The table of one kind of value.
pub(crate) fn table(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::Global => "pixdex_global",
        ValueKind::Patches => "pixdex_patches",
        ValueKind::Views => "pixdex_views",
        ValueKind::FlippedPatches => "pixdex_flipped_patches",
        ValueKind::Region => "pixdex_regions",
    }
}

/// The byte-valued kinds (all but the global vector).
pub(crate) const BYTE_KINDS: [ValueKind; 4] =
    [ValueKind::Patches, ValueKind::Views, ValueKind::FlippedPatches, ValueKind::Region];

/// pgvector's HNSW indexes `vector` up to this many dimensions; above it, `halfvec` (up to 4000).
pub(crate) const MAX_VECTOR_INDEX_DIM: usize = 2000;

/// The expression the HNSW index is built on and queries order by, for a `dim`-d collection.
pub(crate) fn indexed_embedding(dim: usize) -> String {
    if dim <= MAX_VECTOR_INDEX_DIM { "embedding".to_string() } else { format!("(embedding::halfvec({dim}))") }
}

/// Types the global vector column for `dim` and builds its HNSW index (idempotent).
pub(crate) fn vector_index_sql(dim: usize) -> String {
    let (expr, ops) = if dim <= MAX_VECTOR_INDEX_DIM {
        ("embedding".to_string(), "vector_ip_ops")
    } else {
        (format!("(embedding::halfvec({dim}))"), "halfvec_ip_ops")
    };
    format!(
        "ALTER TABLE pixdex_global ALTER COLUMN embedding TYPE vector({dim});
         CREATE INDEX IF NOT EXISTS pixdex_global_hnsw ON pixdex_global USING hnsw ({expr} {ops})
             WITH (m = 16, ef_construction = 64);"
    )
}
