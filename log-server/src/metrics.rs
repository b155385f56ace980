//! Prometheus metrics, written in the text exposition format by hand (a handful of counters and
//! one histogram need no library).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (ms) of the integration latency histogram's buckets.
const LATENCY_BUCKETS_MS: [u64; 10] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000];

/// Counters of one server process.
#[derive(Debug, Default)]
pub struct Metrics {
    submitted: AtomicU64,
    duplicates: AtomicU64,
    rejected: AtomicU64,
    integrated: AtomicU64,
    trillian_refusals: AtomicU64,
    tree_size: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_MS.len()],
    latency_count: AtomicU64,
    latency_sum_ms: AtomicU64,
}

impl Metrics {
    /// Counts acknowledged submissions.
    pub fn add_submitted(&self, new: u64, duplicates: u64) {
        self.submitted.fetch_add(new, Ordering::Relaxed);
        self.duplicates.fetch_add(duplicates, Ordering::Relaxed);
    }

    /// Counts refused submissions.
    pub fn add_rejected(&self) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts integrated entries.
    pub fn add_integrated(&self, n: u64) {
        self.integrated.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts Trillian roots refused (rewinds, forks, unknown leaves).
    pub fn add_trillian_refusal(&self) {
        self.trillian_refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// Trillian roots refused so far.
    pub fn trillian_refusals(&self) -> u64 {
        self.trillian_refusals.load(Ordering::Relaxed)
    }

    /// Records the published tree size.
    pub fn set_tree_size(&self, size: u64) {
        self.tree_size.fetch_max(size, Ordering::Relaxed);
    }

    /// Records one entry's time from acknowledgement to integration.
    pub fn observe_integration(&self, ms: u64) {
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS_MS) {
            if ms <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        };
        counter(
            &mut out,
            "arcane_log_entries_submitted_total",
            "New entries acknowledged.",
            &self.submitted,
        );
        counter(
            &mut out,
            "arcane_log_entries_duplicate_total",
            "Submissions of entries already stored.",
            &self.duplicates,
        );
        counter(
            &mut out,
            "arcane_log_submissions_rejected_total",
            "Submissions refused.",
            &self.rejected,
        );
        counter(
            &mut out,
            "arcane_log_entries_integrated_total",
            "Entries integrated by this process's sequencer.",
            &self.integrated,
        );
        counter(
            &mut out,
            "arcane_log_trillian_refusals_total",
            "Trillian roots refused as rewinds, forks or leaves this log never accepted.",
            &self.trillian_refusals,
        );
        let _ = writeln!(
            out,
            "# HELP arcane_log_tree_size Size of the newest published checkpoint.\n# TYPE arcane_log_tree_size gauge\narcane_log_tree_size {}",
            self.tree_size.load(Ordering::Relaxed)
        );
        let name = "arcane_log_integration_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from acknowledgement to a published checkpoint.\n# TYPE {name} histogram"
        );
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS_MS) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {}",
                bound as f64 / 1000.0,
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.latency_sum_ms.load(Ordering::Relaxed) as f64 / 1000.0
        );
        let _ = writeln!(out, "{name}_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe_integration(3);
        m.observe_integration(30);
        m.observe_integration(20_000);
        let text = m.render();
        assert!(text.contains("arcane_log_integration_latency_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("arcane_log_integration_latency_seconds_bucket{le=\"0.05\"} 2"));
        assert!(text.contains("arcane_log_integration_latency_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("arcane_log_integration_latency_seconds_count 3"));
    }
}
