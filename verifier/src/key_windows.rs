//! Key sets over time: which OHTTP key configuration and which token key of each role is valid
//! when, and the monitor's `overlapping_keys` anomaly — two key sets of one role valid at once
//! for longer than a rotation needs, the shape a targeted key (one set for most users, another
//! for a few) takes in the log.
//!
//! The auditor's monitor and the browser's verification center both ask [`overlaps`] about each
//! key entry they read, against the windows they have seen.

use crate::entry::{EntryBody, SignedEntry};

/// The window in which one key entry is valid.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyWindow {
    /// The key set it belongs to: `ohttp-keys`, `token-key-tgt` or `token-key-ott`.
    pub group: String,
    /// The entry's leaf index.
    pub index: u64,
    /// Start of validity (seconds).
    pub not_before: u64,
    /// End of validity, exclusive (seconds).
    pub not_after: u64,
}

impl KeyWindow {
    /// The window of `entry` at `index`, when it is a key entry.
    pub fn of(index: u64, entry: &SignedEntry) -> Option<Self> {
        let group = match &entry.entry.body {
            EntryBody::OhttpKeys(_) => "ohttp-keys".to_owned(),
            EntryBody::TokenKey(k) => match k.role {
                // Each class's keys are a set of their own.
                crate::entry::TokenRole::FraudData(class) => {
                    format!("token-key-fraud-data-{class}")
                }
                role => format!("token-key-{}", role.as_str()),
            },
            _ => return None,
        };
        Some(KeyWindow {
            group,
            index,
            not_before: entry.entry.not_before,
            not_after: entry.entry.not_after,
        })
    }

    /// Seconds during which both windows are valid.
    pub fn overlap(&self, other: &KeyWindow) -> u64 {
        self.not_after
            .min(other.not_after)
            .saturating_sub(self.not_before.max(other.not_before))
    }
}

/// Two key entries of one set both valid for longer than a rotation allows.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Overlap {
    /// The key set.
    pub group: String,
    /// The earlier entry's index.
    pub first: u64,
    /// The later entry's index.
    pub second: u64,
    /// Seconds both are valid.
    pub seconds: u64,
    /// What a rotation may take.
    pub allowed: u64,
}

impl std::fmt::Display for Overlap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} entries {} and {} are both valid for {} s (rotation overlap allows {} s): a sign of targeting",
            self.group, self.first, self.second, self.seconds, self.allowed
        )
    }
}

/// Every window among `seen` of `window`'s set (other entries, each index once, in index order)
/// that is valid together with `window` for more than `allowed` seconds.
pub fn overlaps<'a>(
    window: &KeyWindow,
    seen: impl IntoIterator<Item = &'a KeyWindow>,
    allowed: u64,
) -> Vec<Overlap> {
    let mut others: Vec<&KeyWindow> = seen
        .into_iter()
        .filter(|w| w.group == window.group && w.index != window.index)
        .collect();
    others.sort_by_key(|w| w.index);
    others.dedup_by_key(|w| w.index);
    others
        .into_iter()
        .filter_map(|other| {
            let seconds = window.overlap(other);
            (seconds > allowed).then(|| Overlap {
                group: window.group.clone(),
                first: other.index.min(window.index),
                second: other.index.max(window.index),
                seconds,
                allowed,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(group: &str, index: u64, not_before: u64, not_after: u64) -> KeyWindow {
        KeyWindow {
            group: group.into(),
            index,
            not_before,
            not_after,
        }
    }

    #[test]
    fn a_rotation_is_not_an_overlap_but_two_live_sets_are() {
        let old = w("ohttp-keys", 1, 0, 1000);
        let rotated = w("ohttp-keys", 2, 940, 2000);
        let targeted = w("ohttp-keys", 3, 100, 900);
        let other_role = w("token-key-ott", 4, 0, 2000);
        let seen = [old.clone(), rotated.clone(), other_role];
        assert!(overlaps(&rotated, &seen, 60).is_empty());
        let found = overlaps(&targeted, &seen, 60);
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].first, found[0].second, found[0].seconds),
            (1, 3, 800)
        );
        assert!(found[0].to_string().contains("entries 1 and 3"));
        // The same entry seen twice (a partial bundle read again) is one overlap.
        let twice = [old.clone(), old];
        assert_eq!(overlaps(&targeted, &twice, 60).len(), 1);
    }

    #[test]
    fn windows_that_do_not_meet_overlap_zero() {
        assert_eq!(w("g", 1, 0, 10).overlap(&w("g", 2, 10, 20)), 0);
        assert_eq!(w("g", 1, 50, 60).overlap(&w("g", 2, 0, 10)), 0);
    }
}
