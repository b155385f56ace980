//! "Is this checkpoint consistent with what I saw?" — the one timeline (fork) check every party
//! runs, as a state machine without I/O in the style of Go's sumdb client: the holder keeps the
//! newest tree head it accepted; every tree head it is shown is [observed](Timeline::observe);
//! when the sizes differ the answer is a consistency proof the holder fetches itself and hands to
//! [`Timeline::settle`]. The outcome is one of
//!
//! - [`Step::Adopt`]: the shown head extends (or first defines) the timeline — save it;
//! - [`Step::Keep`]: the shown head is the accepted one, or an older head the accepted one
//!   provably extends (a cached bundle, a lagging replica): nothing changes, the timeline never
//!   goes back;
//! - [`Step::Prove`]: a consistency proof between the two sizes decides;
//! - [`Fork`]: two heads that cannot both be true — the same size with two roots, or a proof that
//!   does not verify. Its [`Fork::evidence`] is what a holder keeps, in one layout for all.
//!
//! The client (before every request), the auditor's `consistency` and `monitor`, and the witness
//! ([`crate::witness::decide`]) all decide with these functions.

use std::collections::HashSet;

use crate::checkpoint::Checkpoint;
use crate::merkle::Hash;
use crate::proof::verify_consistency;

/// A tree size and its root: what the timeline compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TreeHead {
    /// Number of leaves.
    pub size: u64,
    /// Root hash of the tree of `size` leaves.
    pub root: Hash,
}

impl From<&Checkpoint> for TreeHead {
    fn from(c: &Checkpoint) -> Self {
        TreeHead {
            size: c.size,
            root: c.root,
        }
    }
}

/// What to do with a shown tree head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The shown head extends the accepted one (or is the first): accept and save it.
    Adopt,
    /// The shown head is the accepted one or a proven prefix of it: the timeline stays.
    Keep,
    /// The sizes differ: fetch a consistency proof for this question and [`Timeline::settle`] it.
    Prove(Question),
}

/// A consistency question: does `new` extend `old`? (`0 < old.size < new.size`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Question {
    /// The smaller tree head.
    pub old: TreeHead,
    /// The larger tree head.
    pub new: TreeHead,
    /// Whether the shown head is `new` (the timeline grows) or `old` (shown an older head).
    pub shown_is_new: bool,
}

impl Question {
    /// What the step is once the question is answered yes.
    fn outcome(&self) -> Step {
        if self.shown_is_new {
            Step::Adopt
        } else {
            Step::Keep
        }
    }
}

/// Why two tree heads cannot both be true.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForkReason {
    /// One size, two roots.
    TwoRoots,
    /// The consistency proof between the two sizes does not verify.
    NotAnExtension(String),
}

/// Two tree heads of one log that cannot both be true: evidence of a split view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fork {
    /// The head the holder had accepted.
    pub accepted: TreeHead,
    /// The head it was shown.
    pub shown: TreeHead,
    /// Why they conflict.
    pub reason: ForkReason,
}

impl std::fmt::Display for Fork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reason {
            ForkReason::TwoRoots => write!(
                f,
                "two different roots for tree size {} ({} accepted, {} shown)",
                self.shown.size, self.accepted.root, self.shown.root
            ),
            ForkReason::NotAnExtension(why) => {
                let (old, new) = if self.shown.size > self.accepted.size {
                    (self.accepted.size, self.shown.size)
                } else {
                    (self.shown.size, self.accepted.size)
                };
                write!(f, "tree size {new} does not extend tree size {old}: {why}")
            }
        }
    }
}

/// The files that record a fork, in the one layout every holder keeps under
/// `evidence/<seconds>-<nanoseconds>/`: both signed notes as received, and the reason.
pub const EVIDENCE_FILES: [&str; 3] = ["saved.checkpoint", "shown.checkpoint", "reason.txt"];

impl Fork {
    /// The evidence files' names and contents: the accepted note, the shown note, the reason.
    pub fn evidence<'a>(
        &self,
        accepted_note: &'a str,
        shown_note: &'a str,
    ) -> [(&'static str, Vec<u8>); 3] {
        [
            (EVIDENCE_FILES[0], accepted_note.as_bytes().to_vec()),
            (EVIDENCE_FILES[1], shown_note.as_bytes().to_vec()),
            (EVIDENCE_FILES[2], format!("{self}\n").into_bytes()),
        ]
    }
}

/// Most answered questions remembered (each proof is checked once per pair of heads).
const MAX_PROVEN: usize = 4096;

/// One holder's view of one log: the newest accepted tree head and the questions already proven.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    accepted: Option<TreeHead>,
    proven: HashSet<Question>,
}

impl Timeline {
    /// A timeline that has accepted `head` (read from the holder's storage), or nothing yet.
    pub fn new(accepted: Option<TreeHead>) -> Self {
        Timeline {
            accepted,
            proven: HashSet::new(),
        }
    }

    /// The newest accepted head.
    pub fn accepted(&self) -> Option<TreeHead> {
        self.accepted
    }

    /// The first step for a shown head (already signature-checked by the caller).
    pub fn observe(&self, shown: TreeHead) -> Result<Step, Fork> {
        let Some(accepted) = self.accepted else {
            return Ok(Step::Adopt);
        };
        if shown.size == accepted.size {
            return if shown.root == accepted.root {
                Ok(Step::Keep)
            } else {
                Err(Fork {
                    accepted,
                    shown,
                    reason: ForkReason::TwoRoots,
                })
            };
        }
        let question = if shown.size > accepted.size {
            Question {
                old: accepted,
                new: shown,
                shown_is_new: true,
            }
        } else {
            Question {
                old: shown,
                new: accepted,
                shown_is_new: false,
            }
        };
        // The empty tree is a prefix of every tree.
        if question.old.size == 0 || self.proven.contains(&question) {
            return Ok(question.outcome());
        }
        Ok(Step::Prove(question))
    }

    /// Answers `question` with `proof`: the step it leads to, or the fork it proves.
    pub fn settle(&mut self, question: &Question, proof: &[Hash]) -> Result<Step, Fork> {
        let q = question;
        match verify_consistency(q.old.size, q.new.size, &q.old.root, &q.new.root, proof) {
            Ok(()) => {
                if self.proven.len() >= MAX_PROVEN {
                    self.proven.clear();
                }
                self.proven.insert(*q);
                Ok(q.outcome())
            }
            Err(e) => {
                let (accepted, shown) = if q.shown_is_new {
                    (q.old, q.new)
                } else {
                    (q.new, q.old)
                };
                Err(Fork {
                    accepted,
                    shown,
                    reason: ForkReason::NotAnExtension(e.to_string()),
                })
            }
        }
    }

    /// Records that the holder accepted (and saved) `head` after [`Step::Adopt`].
    pub fn adopt(&mut self, head: TreeHead) {
        self.accepted = Some(head);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{leaf_hash, root_from_leaf_hashes};
    use crate::proof::consistency_proof;
    use proptest::prelude::*;

    fn leaves(n: u64, salt: u8) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&[salt, i as u8])).collect()
    }

    fn head(leaves: &[Hash]) -> TreeHead {
        TreeHead {
            size: leaves.len() as u64,
            root: root_from_leaf_hashes(leaves),
        }
    }

    fn proof(leaves: &[Hash], m: u64, n: u64) -> Vec<Hash> {
        consistency_proof(m, n, |s, e| {
            Ok::<_, ()>(root_from_leaf_hashes(&leaves[s as usize..e as usize]))
        })
        .unwrap()
    }

    /// Drives a timeline as a holder would, with `log` answering consistency questions.
    fn show(t: &mut Timeline, shown: TreeHead, log: &[Hash]) -> Result<Step, Fork> {
        let step = match t.observe(shown)? {
            Step::Prove(q) => t.settle(&q, &proof(log, q.old.size, q.new.size))?,
            other => other,
        };
        if step == Step::Adopt {
            t.adopt(shown);
        }
        Ok(step)
    }

    #[test]
    fn growth_stale_heads_and_forks() {
        let log = leaves(20, 0);
        let mut t = Timeline::new(None);
        assert_eq!(show(&mut t, head(&log[..5]), &log), Ok(Step::Adopt));
        assert_eq!(show(&mut t, head(&log[..5]), &log), Ok(Step::Keep));
        assert_eq!(show(&mut t, head(&log[..12]), &log), Ok(Step::Adopt));
        assert_eq!(t.accepted(), Some(head(&log[..12])));
        // An older head that the accepted one extends: kept, the timeline does not go back.
        assert_eq!(show(&mut t, head(&log[..7]), &log), Ok(Step::Keep));
        assert_eq!(t.accepted(), Some(head(&log[..12])));
        // A proven question is not asked again.
        assert_eq!(t.observe(head(&log[..7])), Ok(Step::Keep));
        // The empty tree needs no proof.
        assert_eq!(
            t.observe(TreeHead {
                size: 0,
                root: root_from_leaf_hashes(&[])
            }),
            Ok(Step::Keep)
        );

        // Another history: same size, other root.
        let other = leaves(20, 1);
        let e = t.observe(head(&other[..12])).unwrap_err();
        assert_eq!(e.reason, ForkReason::TwoRoots);
        assert_eq!(
            (e.accepted, e.shown),
            (head(&log[..12]), head(&other[..12]))
        );
        // Larger, but not an extension: the proof (from the other history) fails.
        let Step::Prove(q) = t.observe(head(&other[..15])).unwrap() else {
            panic!("sizes differ: a proof decides");
        };
        let e = t.settle(&q, &proof(&other, 12, 15)).unwrap_err();
        assert!(matches!(e.reason, ForkReason::NotAnExtension(_)));
        assert_eq!(e.shown, head(&other[..15]));
        assert!(
            e.to_string()
                .starts_with("tree size 15 does not extend tree size 12")
        );
        // Smaller and not a prefix: also a fork (a shrink is only fine when proven a prefix).
        let Step::Prove(q) = t.observe(head(&other[..9])).unwrap() else {
            panic!("sizes differ: a proof decides");
        };
        let e = t.settle(&q, &proof(&log, 9, 12)).unwrap_err();
        assert_eq!((e.accepted, e.shown), (head(&log[..12]), head(&other[..9])));
        assert_eq!(t.accepted(), Some(head(&log[..12])));

        let files = e.evidence("A", "B");
        assert_eq!(files[0], ("saved.checkpoint", b"A".to_vec()));
        assert_eq!(files[1], ("shown.checkpoint", b"B".to_vec()));
        assert!(String::from_utf8_lossy(&files[2].1).contains("does not extend"));
    }

    proptest! {
        /// Heads of one history never fork, in any order; the accepted head is the largest.
        #[test]
        fn one_history_never_forks(sizes in proptest::collection::vec(0u64..40, 1..12)) {
            let log = leaves(40, 7);
            let mut t = Timeline::new(None);
            for &s in &sizes {
                prop_assert!(show(&mut t, head(&log[..s as usize]), &log).is_ok());
            }
            let largest = sizes.iter().copied().max().unwrap();
            prop_assert_eq!(t.accepted().unwrap().size, largest);
        }

        /// A head from another history is a fork unless it is of size 0, or the histories
        /// agree up to the smaller size.
        #[test]
        fn another_history_forks(a in 1u64..30, b in 1u64..30, split in 0u64..30) {
            let mut other = leaves(30, 0);
            let log = leaves(30, 0);
            for leaf in other.iter_mut().skip(split as usize) {
                *leaf = leaf_hash(&[9, leaf.0[0]]);
            }
            let mut t = Timeline::new(Some(head(&log[..a as usize])));
            let shown = head(&other[..b as usize]);
            let step = match t.observe(shown) {
                Ok(Step::Prove(q)) => {
                    // The larger side answers: whoever holds the larger tree makes the proof.
                    let prover = if q.shown_is_new { &other } else { &log };
                    t.settle(&q, &proof(prover, q.old.size, q.new.size))
                }
                other => other,
            };
            let agree = a.min(b) <= split;
            prop_assert_eq!(step.is_ok(), agree);
        }
    }
}
