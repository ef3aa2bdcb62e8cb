//! The token reductions a collection pins in its metadata ([`PinnedReduction`]): one for region
//! grids, one for patch grids. Each is fitted once, on the first grids of its kind (an index job
//! brings a sample spread over its images), stored insert-if-absent so that two processes fitting
//! at once agree on one, and read back by every later grid and query.

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::error::Result;
use crate::store::Store;
use crate::token_reduction::TokenReduction;
use crate::vectors::PatchGrid;

/// One pinned reduction, loaded at open; see the module docs.
pub(crate) struct PinnedReduction {
    /// Its metadata key.
    key: &'static str,
    known: RwLock<Option<Arc<TokenReduction>>>,
    /// Serialises fitting.
    fitting: Mutex<()>,
}

impl PinnedReduction {
    /// The reduction pinned under `key`, if any.
    pub(crate) fn load(store: &dyn Store, key: &'static str) -> Result<Self> {
        let known = match store.meta(key)? {
            Some(bytes) => Some(Arc::new(TokenReduction::from_bytes(&bytes)?)),
            None => None,
        };
        Ok(Self { key, known: RwLock::new(known), fitting: Mutex::new(()) })
    }

    /// The pinned reduction, if one is.
    pub(crate) fn get(&self, store: &dyn Store) -> Option<Arc<TokenReduction>> {
        let known = self.known.read().clone();
        if known.is_some() || !store.is_shared() {
            return known;
        }
        // Another process may have pinned it since this one opened the collection.
        let stored = match store.meta(self.key) {
            Ok(Some(bytes)) => TokenReduction::from_bytes(&bytes),
            Ok(None) => return None,
            Err(e) => Err(e),
        };
        match stored {
            Ok(r) => {
                let r = Arc::new(r);
                *self.known.write() = Some(r.clone());
                Some(r)
            }
            Err(e) => {
                tracing::warn!(error = %e, key = self.key, "cannot read a pinned reduction");
                None
            }
        }
    }

    /// The pinned reduction; if there is none yet, one fitted on `grids` (to `dim_out`
    /// directions and `subspaces` code bytes per token) is pinned first.
    pub(crate) fn ensure(
        &self,
        store: &dyn Store,
        grids: &[&PatchGrid],
        dim_out: usize,
        subspaces: usize,
    ) -> Result<Arc<TokenReduction>> {
        let _fitting = self.fitting.lock();
        if let Some(r) = self.get(store) {
            return Ok(r);
        }
        let fitted = TokenReduction::fit(grids, dim_out, Some(subspaces))?;
        // Stored before the grids that use it; one stored without grids (a crash in between)
        // is simply the reduction later grids use. Another process may have pinned one
        // meanwhile: then that one is the collection's.
        let stored = store.meta_insert_if_absent(self.key, &fitted.to_bytes())?;
        let r = Arc::new(TokenReduction::from_bytes(&stored)?);
        *self.known.write() = Some(r.clone());
        Ok(r)
    }
}
