//! `SearchService`: similarity and region queries, and their hits.

use pixdex_core::{
    DEFAULT_REGION_CANDIDATES, Hit, ImageId, ImageRecord, MAX_EF, MAX_REGION_CANDIDATES, PixelBox, RegionHit,
    RegionQuery, SimilarHit, SimilarQuery, UnitVector,
};

use super::{ImageRef, Invalid, count_or_default, image_record, parse_k, path_prefix, required_record, wire_count};
use crate::pb::{self, region_search_request, search_request};

/// What a similarity search starts from.
#[derive(Debug, Clone, PartialEq)]
pub enum SearchSource {
    /// Image bytes, embedded by the server.
    Image(Vec<u8>),
    /// A stored image's vector.
    Stored(ImageRef),
    /// A raw vector (normalised).
    Vector(UnitVector),
}

/// A validated `SearchRequest`.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    /// The query.
    pub source: SearchSource,
    /// How many results (1..=`MAX_K`).
    pub k: usize,
    /// Drop results below this cosine (checked by the core's query).
    pub min_score: Option<f32>,
    /// Only images whose path (or key) starts with this.
    pub path_prefix: Option<String>,
    /// Leave the query image (same bytes, or the stored image) out of the results.
    pub exclude_self: bool,
    /// HNSW beam width (1..=`MAX_EF`); `None`: the collection's calibrated one.
    pub ef: Option<usize>,
}

impl SearchQuery {
    /// The core's query, leaving out `exclude`.
    pub fn similar(&self, exclude: Vec<ImageId>) -> SimilarQuery {
        SimilarQuery {
            k: self.k,
            min_score: self.min_score,
            path_prefix: self.path_prefix.clone(),
            exclude,
            ef: self.ef,
        }
    }
}

impl TryFrom<pb::SearchRequest> for SearchQuery {
    type Error = Invalid;

    fn try_from(request: pb::SearchRequest) -> Result<Self, Invalid> {
        // Exhaustive on purpose: a new field fails the build here until it is handled.
        let pb::SearchRequest { query, k, min_score, path_prefix: prefix, exclude_self, ef } = request;
        let source = match query.ok_or_else(|| Invalid::new("missing query (image, stored or vector)"))? {
            search_request::Query::Image(bytes) => SearchSource::Image(bytes),
            search_request::Query::Stored(image) => SearchSource::Stored(ImageRef::try_from(Some(image))?),
            search_request::Query::Vector(pb::Vector { values }) => {
                SearchSource::Vector(UnitVector::new(values).map_err(|e| Invalid(e.to_string()))?)
            }
        };
        let ef = match ef as usize {
            0 => None,
            ef if ef <= MAX_EF => Some(ef),
            ef => return Err(Invalid(format!("ef {ef} is above the most, {MAX_EF}"))),
        };
        Ok(Self { source, k: parse_k(k)?, min_score, path_prefix: path_prefix(prefix), exclude_self, ef })
    }
}

impl From<SearchQuery> for pb::SearchRequest {
    fn from(q: SearchQuery) -> Self {
        let query = match q.source {
            SearchSource::Image(bytes) => search_request::Query::Image(bytes),
            SearchSource::Stored(image) => search_request::Query::Stored(image.into()),
            SearchSource::Vector(v) => search_request::Query::Vector(pb::Vector { values: v.as_slice().to_vec() }),
        };
        Self {
            query: Some(query),
            k: wire_count(q.k),
            min_score: q.min_score,
            path_prefix: q.path_prefix.unwrap_or_default(),
            exclude_self: q.exclude_self,
            ef: q.ef.map_or(0, wire_count),
        }
    }
}

impl From<&SimilarHit> for pb::Hit {
    fn from(h: &SimilarHit) -> Self {
        Self { score: h.hit.score, image: Some(image_record(h.hit.id, &h.record)) }
    }
}

impl TryFrom<pb::Hit> for SimilarHit {
    type Error = Invalid;

    fn try_from(h: pb::Hit) -> Result<Self, Invalid> {
        let (id, record) = required_record(h.image)?;
        Ok(Self { hit: Hit { id, score: h.score }, record })
    }
}

/// Where the pixels of a region query come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegionSource {
    /// Uploaded bytes (not empty).
    Image(Vec<u8>),
    /// A stored image's file, read again by the server.
    Stored(ImageRef),
}

/// A validated `RegionSearchRequest`.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionSearch {
    /// The query image.
    pub source: RegionSource,
    /// The region in the image's stored pixels (checked against the image once decoded); `None`:
    /// the whole image.
    pub region: Option<PixelBox>,
    /// How many results (1..=`MAX_K`).
    pub k: usize,
    /// Vote candidates reranked (1..=`MAX_REGION_CANDIDATES`).
    pub candidates: usize,
    /// Drop results below this score (checked by the core's query).
    pub min_score: Option<f32>,
    /// Only images whose path (or key) starts with this.
    pub path_prefix: Option<String>,
    /// Leave the query image out of the results.
    pub exclude_self: bool,
}

impl RegionSearch {
    /// The core's query, leaving out `exclude`.
    pub fn query(&self, exclude: Vec<ImageId>) -> RegionQuery {
        RegionQuery {
            k: self.k,
            candidates: self.candidates,
            min_score: self.min_score,
            path_prefix: self.path_prefix.clone(),
            exclude,
            ..RegionQuery::default()
        }
    }
}

impl TryFrom<pb::RegionSearchRequest> for RegionSearch {
    type Error = Invalid;

    fn try_from(request: pb::RegionSearchRequest) -> Result<Self, Invalid> {
        // Exhaustive on purpose: a new field fails the build here until it is handled.
        let pb::RegionSearchRequest { query, r#box, k, candidates, min_score, path_prefix: prefix, exclude_self } =
            request;
        let source = match query.ok_or_else(|| Invalid::new("missing query (image bytes or a stored image)"))? {
            region_search_request::Query::Image(bytes) if bytes.is_empty() => {
                return Err(Invalid::new("empty image bytes"));
            }
            region_search_request::Query::Image(bytes) => RegionSource::Image(bytes),
            region_search_request::Query::Stored(image) => RegionSource::Stored(ImageRef::try_from(Some(image))?),
        };
        Ok(Self {
            source,
            region: r#box.map(PixelBox::from),
            k: parse_k(k)?,
            candidates: count_or_default("candidates", candidates, DEFAULT_REGION_CANDIDATES, MAX_REGION_CANDIDATES)?,
            min_score,
            path_prefix: path_prefix(prefix),
            exclude_self,
        })
    }
}

impl From<RegionSearch> for pb::RegionSearchRequest {
    fn from(q: RegionSearch) -> Self {
        let query = match q.source {
            RegionSource::Image(bytes) => region_search_request::Query::Image(bytes),
            RegionSource::Stored(image) => region_search_request::Query::Stored(image.into()),
        };
        Self {
            query: Some(query),
            r#box: q.region.map(pb::PixelBox::from),
            k: wire_count(q.k),
            candidates: wire_count(q.candidates),
            min_score: q.min_score,
            path_prefix: q.path_prefix.unwrap_or_default(),
            exclude_self: q.exclude_self,
        }
    }
}

/// A region hit as the API carries it (the core's [`RegionHit`] also has diagnostics that the API
/// leaves out).
#[derive(Debug, Clone, PartialEq)]
pub struct RegionMatch {
    /// The image.
    pub id: ImageId,
    /// Its record.
    pub record: ImageRecord,
    /// The ranking score.
    pub score: f32,
    /// Where the region is, in the image file's stored pixels.
    pub bbox: PixelBox,
}

impl From<&RegionHit> for pb::RegionHit {
    fn from(h: &RegionHit) -> Self {
        Self { score: h.score, image: Some(image_record(h.id, &h.record)), r#box: Some(h.bbox.into()) }
    }
}

impl TryFrom<pb::RegionHit> for RegionMatch {
    type Error = Invalid;

    fn try_from(h: pb::RegionHit) -> Result<Self, Invalid> {
        let (id, record) = required_record(h.image)?;
        let bbox = h.r#box.ok_or_else(|| Invalid::new("a region hit without its box"))?.into();
        Ok(Self { id, record, score: h.score, bbox })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pixdex_core::MAX_K;

    #[test]
    fn search_requests_validate_and_round_trip() {
        let query = SearchQuery {
            source: SearchSource::Stored(ImageRef::Id(ImageId(3))),
            k: 5,
            min_score: Some(0.5),
            path_prefix: Some("/p/".into()),
            exclude_self: true,
            ef: Some(300),
        };
        assert_eq!(SearchQuery::try_from(pb::SearchRequest::from(query.clone())), Ok(query));
        let empty = pb::SearchRequest::default();
        assert!(SearchQuery::try_from(empty).unwrap_err().0.contains("missing query"));
        let zero = pb::SearchRequest {
            query: Some(search_request::Query::Vector(pb::Vector { values: vec![0.0, 0.0] })),
            ..Default::default()
        };
        assert!(SearchQuery::try_from(zero).is_err());
        let big_k = pb::SearchRequest {
            query: Some(search_request::Query::Image(vec![1])),
            k: MAX_K as u32 + 1,
            ..Default::default()
        };
        assert!(SearchQuery::try_from(big_k).is_err());
        let big_ef = pb::SearchRequest {
            query: Some(search_request::Query::Image(vec![1])),
            ef: MAX_EF as u32 + 1,
            ..Default::default()
        };
        assert!(SearchQuery::try_from(big_ef).unwrap_err().0.contains("ef"));
        let defaults = pb::SearchRequest { query: Some(search_request::Query::Image(vec![1])), ..Default::default() };
        let q = SearchQuery::try_from(defaults).unwrap();
        assert_eq!((q.k, q.path_prefix), (super::super::DEFAULT_K, None));
    }

    #[test]
    fn region_requests_validate_and_round_trip() {
        let query = RegionSearch {
            source: RegionSource::Image(vec![1, 2]),
            region: Some(PixelBox { x: 1.0, y: 2.0, w: 3.0, h: 4.0 }),
            k: 4,
            candidates: 64,
            min_score: None,
            path_prefix: None,
            exclude_self: false,
        };
        assert_eq!(RegionSearch::try_from(pb::RegionSearchRequest::from(query.clone())), Ok(query));
        let empty_bytes = pb::RegionSearchRequest {
            query: Some(region_search_request::Query::Image(Vec::new())),
            ..Default::default()
        };
        assert_eq!(RegionSearch::try_from(empty_bytes).unwrap_err().0, "empty image bytes");
        let too_many = pb::RegionSearchRequest {
            query: Some(region_search_request::Query::Image(vec![1])),
            candidates: MAX_REGION_CANDIDATES as u32 + 1,
            ..Default::default()
        };
        assert!(RegionSearch::try_from(too_many).unwrap_err().0.starts_with("candidates must be"));
        let defaults =
            pb::RegionSearchRequest { query: Some(region_search_request::Query::Image(vec![1])), ..Default::default() };
        assert_eq!(RegionSearch::try_from(defaults).unwrap().candidates, DEFAULT_REGION_CANDIDATES);
    }
}
