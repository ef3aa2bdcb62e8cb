//! `DedupService`: duplicate-search options, groups, members, progress and the summary.

use pixdex_core::{DedupOptions, DedupPhase, DuplicateGroup, DuplicateKind, DuplicateMember, KeeperCriterion, MAX_K};
use std::sync::Mutex;
use std::time::Duration;

use super::{ImageRef, Invalid, count_or_default, image_record, path_prefix, required_record, wire_count};
use crate::pb;

/// Most neighbours per image a request may ask for.
const MAX_NEIGHBOURS: usize = 100;

/// Results of `DuplicatesOf` when the request leaves `limit` 0.
const DEFAULT_LIMIT: usize = 100;

/// The near-duplicate rule of a request (unset fields take the defaults) as options, checked
/// here with the core's own [`DedupOptions::validate`] because a streamed search must be refused
/// before its stream opens.
fn options(
    (threshold, verify_from, min_geometry, no_verify): (Option<f32>, Option<f32>, Option<f32>, bool),
    keeper_rule: &[i32],
    neighbours: usize,
    prefix: String,
) -> Result<DedupOptions, Invalid> {
    let defaults = DedupOptions::default();
    let threshold = threshold.unwrap_or(defaults.threshold);
    let verify_from = verify_from.unwrap_or(defaults.verify_from);
    let min_geometry = if no_verify { None } else { min_geometry.or(defaults.min_geometry) };
    let keeper_rule = match keeper_rule {
        [] => defaults.keeper_rule,
        rule => rule
            .iter()
            .map(|&c| {
                pb::KeeperCriterion::try_from(c)
                    .map_err(|_| Invalid(format!("unknown keeper criterion {c}")))
                    .and_then(KeeperCriterion::try_from)
            })
            .collect::<Result<_, _>>()?,
    };
    let options = DedupOptions {
        threshold,
        verify_from,
        min_geometry,
        neighbours,
        path_prefix: path_prefix(prefix),
        keeper_rule,
    };
    options.validate().map_err(|e| Invalid(e.to_string()))?;
    Ok(options)
}

impl TryFrom<pb::FindDuplicatesRequest> for DedupOptions {
    type Error = Invalid;

    fn try_from(request: pb::FindDuplicatesRequest) -> Result<Self, Invalid> {
        // Exhaustive on purpose: a new field fails the build here until it is handled.
        let pb::FindDuplicatesRequest {
            threshold,
            path_prefix,
            keeper_rule,
            neighbours,
            verify_from,
            min_geometry,
            no_verify,
        } = request;
        let neighbours =
            count_or_default("neighbours", neighbours, DedupOptions::default().neighbours, MAX_NEIGHBOURS)?;
        options((threshold, verify_from, min_geometry, no_verify), &keeper_rule, neighbours, path_prefix)
    }
}

impl From<&DedupOptions> for pb::FindDuplicatesRequest {
    fn from(o: &DedupOptions) -> Self {
        Self {
            threshold: Some(o.threshold),
            path_prefix: o.path_prefix.clone().unwrap_or_default(),
            keeper_rule: o.keeper_rule.iter().map(|&c| pb::KeeperCriterion::from(c) as i32).collect(),
            neighbours: wire_count(o.neighbours),
            verify_from: Some(o.verify_from),
            min_geometry: o.min_geometry,
            no_verify: o.min_geometry.is_none(),
        }
    }
}

/// A validated `DuplicatesOfRequest`: the image, and the options (`neighbours` is the limit).
#[derive(Debug, Clone)]
pub struct DuplicatesOfQuery {
    /// The image whose duplicates are wanted.
    pub image: ImageRef,
    /// The rule; its `neighbours` is the most duplicates listed.
    pub options: DedupOptions,
}

impl TryFrom<pb::DuplicatesOfRequest> for DuplicatesOfQuery {
    type Error = Invalid;

    fn try_from(request: pb::DuplicatesOfRequest) -> Result<Self, Invalid> {
        let pb::DuplicatesOfRequest { image, threshold, keeper_rule, limit, verify_from, min_geometry, no_verify } =
            request;
        let limit = count_or_default("limit", limit, DEFAULT_LIMIT, MAX_K)?;
        let options = options((threshold, verify_from, min_geometry, no_verify), &keeper_rule, limit, String::new())?;
        Ok(Self { image: ImageRef::try_from(image)?, options })
    }
}

impl From<KeeperCriterion> for pb::KeeperCriterion {
    fn from(c: KeeperCriterion) -> Self {
        match c {
            KeeperCriterion::Pixels => Self::Pixels,
            KeeperCriterion::FileSize => Self::FileSize,
            KeeperCriterion::Oldest => Self::Oldest,
        }
    }
}

impl TryFrom<pb::KeeperCriterion> for KeeperCriterion {
    type Error = Invalid;

    fn try_from(c: pb::KeeperCriterion) -> Result<Self, Invalid> {
        match c {
            pb::KeeperCriterion::Pixels => Ok(Self::Pixels),
            pb::KeeperCriterion::FileSize => Ok(Self::FileSize),
            pb::KeeperCriterion::Oldest => Ok(Self::Oldest),
            pb::KeeperCriterion::Unspecified => Err(Invalid(format!("unknown keeper criterion {}", c as i32))),
        }
    }
}

impl From<&DuplicateMember> for pb::DuplicateMember {
    fn from(m: &DuplicateMember) -> Self {
        Self { image: Some(image_record(m.id, &m.record)), score: m.score }
    }
}

impl TryFrom<pb::DuplicateMember> for DuplicateMember {
    type Error = Invalid;

    fn try_from(m: pb::DuplicateMember) -> Result<Self, Invalid> {
        let (id, record) = required_record(m.image)?;
        Ok(Self { id, record, score: m.score })
    }
}

impl From<&DuplicateGroup> for pb::DuplicateGroup {
    fn from(g: &DuplicateGroup) -> Self {
        let kind = match g.kind {
            DuplicateKind::Exact => pb::DuplicateKind::Exact,
            DuplicateKind::Near => pb::DuplicateKind::Near,
        };
        Self {
            kind: kind.into(),
            members: g.members.iter().map(pb::DuplicateMember::from).collect(),
            keeper_reason: g.keeper_reason.clone(),
        }
    }
}

impl TryFrom<pb::DuplicateGroup> for DuplicateGroup {
    type Error = Invalid;

    fn try_from(g: pb::DuplicateGroup) -> Result<Self, Invalid> {
        let kind = match g.kind() {
            pb::DuplicateKind::Exact => DuplicateKind::Exact,
            pb::DuplicateKind::Near => DuplicateKind::Near,
            pb::DuplicateKind::Unspecified => return Err(Invalid::new("a duplicate group of no kind")),
        };
        let members = g.members.into_iter().map(DuplicateMember::try_from).collect::<Result<Vec<_>, _>>()?;
        if members.len() < 2 {
            return Err(Invalid(format!("a duplicate group of {} members", members.len())));
        }
        Ok(Self { kind, members, keeper_reason: g.keeper_reason })
    }
}

/// Turns the core's progress calls into `DedupProgress` messages; the verifying phase repeats the
/// finished search counts.
#[derive(Debug, Default)]
pub struct DedupProgressEvents {
    searched: Mutex<(u64, u64)>,
}

impl DedupProgressEvents {
    /// The message for `done` of `total` units of `phase`.
    pub fn event(&self, phase: DedupPhase, done: usize, total: usize) -> pb::DedupProgress {
        let (done, total) = (done as u64, total as u64);
        let mut searched = self.searched.lock().unwrap_or_else(|e| e.into_inner());
        match phase {
            DedupPhase::Searching => {
                *searched = (done, total);
                pb::DedupProgress { searched: done, total, verified: 0, to_verify: 0 }
            }
            DedupPhase::Verifying => {
                pb::DedupProgress { searched: searched.0, total: searched.1, verified: done, to_verify: total }
            }
        }
    }
}

/// A progress message as the phase it reports, with its `done` and `total`.
pub fn dedup_progress(p: &pb::DedupProgress) -> (DedupPhase, u64, u64) {
    if p.to_verify > 0 {
        (DedupPhase::Verifying, p.verified, p.to_verify)
    } else {
        (DedupPhase::Searching, p.searched, p.total)
    }
}

/// The closing message of a duplicate search.
pub fn dedup_summary(groups: &[DuplicateGroup], elapsed: Duration, threshold: f32) -> pb::DedupSummary {
    pb::DedupSummary {
        groups: groups.len() as u64,
        images_in_groups: groups.iter().map(|g| g.members.len() as u64).sum(),
        reclaimable_bytes: groups.iter().flat_map(|g| g.members.iter().skip(1)).map(|m| m.record.size).sum(),
        elapsed_seconds: elapsed.as_secs_f64(),
        threshold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pixdex_core::{ImageId, ImageRecord, ImageStatus};

    #[test]
    fn options_round_trip_and_refuse_what_is_out_of_range() {
        let options = DedupOptions {
            threshold: 0.9,
            verify_from: 0.7,
            min_geometry: None,
            neighbours: 12,
            path_prefix: Some("/p".into()),
            keeper_rule: vec![KeeperCriterion::Oldest, KeeperCriterion::Pixels],
        };
        let back = DedupOptions::try_from(pb::FindDuplicatesRequest::from(&options)).unwrap();
        assert_eq!(format!("{back:?}"), format!("{options:?}"));
        let bad = |r: pb::FindDuplicatesRequest| DedupOptions::try_from(r).unwrap_err().0;
        assert!(bad(pb::FindDuplicatesRequest { threshold: Some(1.5), ..Default::default() }).contains("threshold"));
        assert!(bad(pb::FindDuplicatesRequest { min_geometry: Some(2.0), ..Default::default() }).contains("geometry"));
        assert!(bad(pb::FindDuplicatesRequest { keeper_rule: vec![17], ..Default::default() }).contains("17"));
        assert!(bad(pb::FindDuplicatesRequest { keeper_rule: vec![0], ..Default::default() }).contains("0"));
        assert!(bad(pb::FindDuplicatesRequest { neighbours: 101, ..Default::default() }).contains("neighbours"));
        let defaults = DedupOptions::try_from(pb::FindDuplicatesRequest::default()).unwrap();
        assert_eq!(format!("{defaults:?}"), format!("{:?}", DedupOptions::default()));
    }

    #[test]
    fn groups_round_trip_and_need_two_members() {
        let member = |id: u64| DuplicateMember {
            id: ImageId(id),
            record: ImageRecord {
                path: format!("/p/{id}.jpg").into(),
                size: id,
                mtime_ns: 0,
                blake3: [id as u8; 32],
                width: 2,
                height: 2,
                status: ImageStatus::Embedded,
            },
            score: 1.0,
        };
        let group = DuplicateGroup {
            kind: DuplicateKind::Near,
            members: vec![member(1), member(2)],
            keeper_reason: "r".into(),
        };
        assert_eq!(DuplicateGroup::try_from(pb::DuplicateGroup::from(&group)), Ok(group.clone()));
        let single = DuplicateGroup { members: vec![member(1)], ..group };
        assert!(DuplicateGroup::try_from(pb::DuplicateGroup::from(&single)).is_err());
    }

    #[test]
    fn progress_reports_its_phase() {
        let events = DedupProgressEvents::default();
        let searching = events.event(DedupPhase::Searching, 3, 8);
        assert_eq!(dedup_progress(&searching), (DedupPhase::Searching, 3, 8));
        let verifying = events.event(DedupPhase::Verifying, 1, 5);
        assert_eq!((verifying.searched, verifying.total), (3, 8));
        assert_eq!(dedup_progress(&verifying), (DedupPhase::Verifying, 1, 5));
    }
}
