//! Which copy of a group to keep: a rule of criteria (pixels, file size, age), the first that
//! tells two copies apart deciding, and the reason given for the choice.

use crate::error::{Error, Result};
use crate::records::{ImageId, ImageRecord};

/// What makes one copy the one to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeeperCriterion {
    /// More pixels (width × height) first.
    Pixels,
    /// Larger file first.
    FileSize,
    /// Older modification time first.
    Oldest,
}

impl std::str::FromStr for KeeperCriterion {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pixels" => Ok(Self::Pixels),
            "size" => Ok(Self::FileSize),
            "oldest" => Ok(Self::Oldest),
            _ => Err(Error::InvalidQuery(format!("unknown keeper criterion `{s}` (pixels, size, oldest)"))),
        }
    }
}

impl KeeperCriterion {
    fn name(self) -> &'static str {
        match self {
            Self::Pixels => "largest pixel count",
            Self::FileSize => "larger file",
            Self::Oldest => "oldest",
        }
    }
}

/// The default keeper rule: largest pixel count, then larger file, then oldest.
pub const DEFAULT_KEEPER_RULE: [KeeperCriterion; 3] =
    [KeeperCriterion::Pixels, KeeperCriterion::FileSize, KeeperCriterion::Oldest];

/// Orders candidates by the keeper rule: the best first.
pub(super) fn rank_by_rule(members: &mut [(ImageId, ImageRecord)], rule: &[KeeperCriterion]) {
    members.sort_by(|(ia, a), (ib, b)| {
        rule.iter()
            .map(|c| match c {
                KeeperCriterion::Pixels => (b.width as u64 * b.height as u64).cmp(&(a.width as u64 * a.height as u64)),
                KeeperCriterion::FileSize => b.size.cmp(&a.size),
                KeeperCriterion::Oldest => a.mtime_ns.cmp(&b.mtime_ns),
            })
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(ia.cmp(ib))
    });
}

/// The first criterion that tells the keeper from the runner-up, for the report.
pub(super) fn keeper_reason(members: &[(ImageId, ImageRecord)], rule: &[KeeperCriterion]) -> String {
    let (Some((_, k)), Some((_, r))) = (members.first(), members.get(1)) else { return String::new() };
    for c in rule {
        let (differs, detail) = match c {
            KeeperCriterion::Pixels => (
                k.width as u64 * k.height as u64 != r.width as u64 * r.height as u64,
                format!("{}×{}", k.width, k.height),
            ),
            KeeperCriterion::FileSize => (k.size != r.size, format!("{} bytes", k.size)),
            KeeperCriterion::Oldest => (k.mtime_ns != r.mtime_ns, "modified first".to_string()),
        };
        if differs {
            return format!("{} ({detail})", c.name());
        }
    }
    "all criteria tie: the first indexed".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeper_rule_orders_by_pixels_then_size_then_age() {
        let rec = |w, h, size, mtime| ImageRecord {
            path: "p".into(),
            size,
            mtime_ns: mtime,
            blake3: [0; 32],
            width: w,
            height: h,
            status: crate::records::ImageStatus::Embedded,
        };
        let mut m = vec![
            (ImageId(1), rec(10, 10, 500, 3)),
            (ImageId(2), rec(20, 10, 100, 5)),
            (ImageId(3), rec(20, 10, 100, 4)),
        ];
        rank_by_rule(&mut m, &DEFAULT_KEEPER_RULE);
        assert_eq!(m.iter().map(|(id, _)| id.0).collect::<Vec<_>>(), vec![3, 2, 1]);
        assert_eq!(keeper_reason(&m, &DEFAULT_KEEPER_RULE), "oldest (modified first)");
        rank_by_rule(&mut m, &[KeeperCriterion::FileSize]);
        assert_eq!(m[0].0, ImageId(1));
        assert_eq!(keeper_reason(&m, &[KeeperCriterion::FileSize]), "larger file (500 bytes)");
    }
}
