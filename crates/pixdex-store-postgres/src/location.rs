//! [`CollectionLocation`]: where a collection lives, as the CLI and the server are told — a
//! folder (sled, the default) or a PostgreSQL URL with a local folder for the derived indexes —
//! and how to open it.

use std::path::{Path, PathBuf};

use pixdex_core::{Collection, CollectionConfig, Result, Store};

use crate::{PostgresStore, is_postgres_url, redact};

/// Where a collection lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CollectionLocation {
    /// A sled database in this folder (the derived indexes beside it).
    Folder(PathBuf),
    /// A PostgreSQL + pgvector database; the derived indexes (the HNSW graph dedup and region
    /// search use, the region index) are kept in `index_dir` on this machine.
    Postgres {
        /// A libpq URL (`postgres://user@host:port/db`).
        url: String,
        /// This machine's folder for the derived indexes.
        index_dir: PathBuf,
    },
}

impl CollectionLocation {
    /// `store` (a PostgreSQL URL, from `--store`/`PIXDEX_STORE`) if given, else the folder `dir`.
    /// With a URL, `dir` holds the derived indexes.
    pub fn new(store: Option<&str>, dir: &Path) -> std::result::Result<Self, String> {
        match store.filter(|s| !s.is_empty()) {
            None => Ok(Self::Folder(dir.to_path_buf())),
            Some(url) if is_postgres_url(url) => {
                Ok(Self::Postgres { url: url.to_string(), index_dir: dir.to_path_buf() })
            }
            Some(other) => Err(format!(
                "--store takes a PostgreSQL URL (postgres://user@host:port/db or postgresql://…), not {:?}; \
                 a collection folder is --db",
                redact(other)
            )),
        }
    }

    /// For messages: the folder, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Self::Folder(dir) => dir.display().to_string(),
            Self::Postgres { url, .. } => redact(url),
        }
    }

    /// The folder of the derived indexes (for sled, the collection's own folder).
    pub fn index_dir(&self) -> &Path {
        match self {
            Self::Folder(dir) => dir,
            Self::Postgres { index_dir, .. } => index_dir,
        }
    }

    /// Opens an existing collection, whatever model it pins.
    pub fn open(&self) -> Result<Collection> {
        match self {
            Self::Folder(dir) => Collection::open(dir),
            Self::Postgres { url, index_dir } => {
                Collection::open_store(Box::new(PostgresStore::connect(url)?), index_dir, None)
            }
        }
    }

    /// Opens the collection if one is there (pinned to a model), `None` if not yet.
    pub fn open_existing(&self) -> Result<Option<Collection>> {
        match self {
            Self::Folder(dir) if !dir.join("db").exists() => Ok(None),
            Self::Folder(dir) => Collection::open(dir).map(Some),
            Self::Postgres { url, index_dir } => {
                let store = PostgresStore::connect(url)?;
                if !Collection::is_pinned(&store)? {
                    return Ok(None);
                }
                Collection::open_store(Box::new(store), index_dir, None).map(Some)
            }
        }
    }

    /// Opens the collection, creating it pinned to `config` if there is none.
    pub fn open_or_create(&self, config: &CollectionConfig) -> Result<Collection> {
        match self {
            Self::Folder(dir) => Collection::open_or_create(dir, config),
            Self::Postgres { url, index_dir } => {
                let store: Box<dyn Store> = Box::new(PostgresStore::connect(url)?);
                Collection::open_store(store, index_dir, Some(config))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_or_a_folder() {
        let dir = Path::new("/data/pixdex");
        assert_eq!(CollectionLocation::new(None, dir), Ok(CollectionLocation::Folder(dir.into())));
        assert_eq!(CollectionLocation::new(Some(""), dir), Ok(CollectionLocation::Folder(dir.into())));
        let pg = CollectionLocation::new(Some("postgresql://u:pw@db:5432/lib"), dir).unwrap();
        assert_eq!(pg.describe(), "postgresql://u:***@db:5432/lib");
        assert_eq!(pg.index_dir(), dir);
        let err = CollectionLocation::new(Some("mysql://u:pw@db/lib"), dir).unwrap_err();
        assert!(err.contains("PostgreSQL URL") && !err.contains("pw"), "{err}");
    }
}
