//! `IndexService`: what an index job crawls, and how.

use pixdex_indexer::crawl::CrawlOptions;
use pixdex_indexer::pipeline::IndexOptions;
use std::path::PathBuf;

use super::Invalid;
use crate::pb;

/// A validated `StartIndexJobRequest` (globs compile, roots are given); whether the server may
/// crawl the roots is the server's to decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexJobRequest {
    /// Folders to crawl, absolute.
    pub roots: Vec<PathBuf>,
    /// Only paths matching one of these globs (if any).
    pub include: Vec<String>,
    /// Skip paths matching these globs.
    pub exclude: Vec<String>,
    /// Also index hidden files and folders.
    pub include_hidden: bool,
    /// Follow symbolic links.
    pub follow_symlinks: bool,
    /// Remove records of missing files even if a root is missing or suddenly empty.
    pub prune: bool,
    /// Store the mirrored and grayscale views.
    pub dedup_views: bool,
    /// Store the region grids.
    pub region_grids: bool,
}

impl IndexJobRequest {
    /// The request for a job with these options (roots must be absolute and UTF-8: the server
    /// runs elsewhere).
    pub fn from_options(options: &IndexOptions) -> Result<Self, Invalid> {
        let roots = options.crawl.roots.iter().map(|r| {
            if r.is_absolute() && r.to_str().is_some() {
                Ok(r.clone())
            } else {
                Err(Invalid(format!("{}: the server takes absolute UTF-8 paths only", r.display())))
            }
        });
        Ok(Self {
            roots: roots.collect::<Result<_, _>>()?,
            include: options.crawl.include.clone(),
            exclude: options.crawl.exclude.clone(),
            include_hidden: options.crawl.include_hidden,
            follow_symlinks: options.crawl.follow_links,
            prune: options.prune,
            dedup_views: options.dedup_views,
            region_grids: options.region_grids,
        })
    }

    /// The pipeline's options, crawling `roots` (the allowed form of [`Self::roots`]).
    pub fn options(self, roots: Vec<PathBuf>, batch_size: usize) -> IndexOptions {
        IndexOptions {
            crawl: CrawlOptions {
                roots,
                include_hidden: self.include_hidden,
                follow_links: self.follow_symlinks,
                include: self.include,
                exclude: self.exclude,
            },
            batch_size,
            prune: self.prune,
            dedup_views: self.dedup_views,
            region_grids: self.region_grids,
            ..IndexOptions::default()
        }
    }
}

impl TryFrom<pb::StartIndexJobRequest> for IndexJobRequest {
    type Error = Invalid;

    fn try_from(request: pb::StartIndexJobRequest) -> Result<Self, Invalid> {
        // Exhaustive on purpose: a new field fails the build here until it is handled.
        let pb::StartIndexJobRequest {
            roots,
            include,
            exclude,
            include_hidden,
            follow_symlinks,
            prune,
            skip_dedup_views,
            skip_region_grids,
        } = request;
        if roots.is_empty() {
            return Err(Invalid::new("no roots to index"));
        }
        for glob in include.iter().chain(&exclude) {
            globset::Glob::new(glob).map_err(|e| Invalid(format!("bad glob `{glob}`: {e}")))?;
        }
        Ok(Self {
            roots: roots.into_iter().map(PathBuf::from).collect(),
            include,
            exclude,
            include_hidden,
            follow_symlinks,
            prune,
            dedup_views: !skip_dedup_views,
            region_grids: !skip_region_grids,
        })
    }
}

impl From<IndexJobRequest> for pb::StartIndexJobRequest {
    fn from(r: IndexJobRequest) -> Self {
        Self {
            // `from_options` and `try_from` keep roots UTF-8; a lossy name would be refused by the
            // server as outside its roots.
            roots: r.roots.iter().map(|p| p.to_string_lossy().into_owned()).collect(),
            include: r.include,
            exclude: r.exclude,
            include_hidden: r.include_hidden,
            follow_symlinks: r.follow_symlinks,
            prune: r.prune,
            skip_dedup_views: !r.dedup_views,
            skip_region_grids: !r.region_grids,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_need_roots_and_good_globs_and_round_trip() {
        let request = pb::StartIndexJobRequest {
            roots: vec!["/photos".into()],
            include: vec!["*.jpg".into()],
            prune: true,
            skip_region_grids: true,
            ..Default::default()
        };
        let parsed = IndexJobRequest::try_from(request.clone()).unwrap();
        assert!(parsed.dedup_views && !parsed.region_grids);
        assert_eq!(pb::StartIndexJobRequest::from(parsed.clone()), request);
        let options = parsed.clone().options(parsed.roots.clone(), 4);
        assert_eq!(IndexJobRequest::from_options(&options), Ok(parsed));
        let no_roots = pb::StartIndexJobRequest::default();
        assert_eq!(IndexJobRequest::try_from(no_roots).unwrap_err().0, "no roots to index");
        let bad_glob = pb::StartIndexJobRequest { exclude: vec!["a[".into()], ..request };
        assert!(IndexJobRequest::try_from(bad_glob).unwrap_err().0.starts_with("bad glob"));
        let relative = IndexOptions {
            crawl: CrawlOptions { roots: vec!["rel".into()], ..CrawlOptions::default() },
            ..IndexOptions::default()
        };
        assert!(IndexJobRequest::from_options(&relative).is_err());
    }
}
