//! Results: latency histograms, error tallies, and the two output forms
//! (an aligned table on stdout, JSON for comparing runs).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;

/// A latency histogram in microseconds, 1 µs .. 1 h, 3 significant digits.
pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Self {
        // Bounds are constants that hdrhistogram accepts.
        Self(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"))
    }

    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.0.saturating_record(us.max(1));
    }

    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so `add` cannot fail.
        let _ = self.0.add(&other.0);
    }

    pub fn len(&self) -> u64 {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn summary(&self) -> LatencySummary {
        let ms = |us: u64| us as f64 / 1000.0;
        let q = |p: f64| ms(self.0.value_at_quantile(p));
        LatencySummary {
            count: self.0.len(),
            mean_ms: self.0.mean() / 1000.0,
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: ms(self.0.max()),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// Failed requests by HTTP status, or by a short name for failures
/// without one (`connect`, `timeout`, `io`).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Errors(pub BTreeMap<String, u64>);

impl Errors {
    pub fn add(&mut self, kind: impl Into<String>) {
        *self.0.entry(kind.into()).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Errors) {
        for (k, n) in &other.0 {
            *self.0.entry(k.clone()).or_default() += n;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// `429×3 500×1`, or `none`.
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        self.0
            .iter()
            .map(|(k, n)| format!("{k}×{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The error kind of a failed request.
pub fn request_error_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "io"
    }
}

/// Operations per second, 0 for an empty interval.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// A two-column table: one row per line, the label left-aligned.
#[derive(Default)]
pub struct Table {
    title: String,
    rows: Vec<(String, String)>,
}

impl Table {
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, label: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.rows.push((label.into(), value.into()));
        self
    }

    pub fn latency(&mut self, label: &str, l: &LatencySummary) -> &mut Self {
        self.row(
            label,
            format!(
                "p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3} ms  (n={})",
                l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
            ),
        )
    }

    pub fn render(&self) -> String {
        let width = self.rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        let mut out = format!("== {} ==\n", self.title);
        for (label, value) in &self.rows {
            out.push_str(&format!("{label:<width$}  {value}\n"));
        }
        out
    }
}

/// Prints the table and, when asked, writes the report as pretty JSON.
pub fn emit(table: &Table, report: &impl Serialize, json: Option<&Path>) -> anyhow::Result<()> {
    print!("{}", table.render());
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(report)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_quantiles_and_merge() {
        let mut a = Latency::new();
        let mut b = Latency::new();
        for ms in 1..=100 {
            a.record(Duration::from_millis(ms));
        }
        b.record(Duration::from_secs(2));
        a.merge(&b);
        let s = a.summary();
        assert_eq!(s.count, 101);
        assert!((s.p50_ms - 51.0).abs() < 0.1, "{s:?}");
        assert!((s.max_ms - 2000.0).abs() < 2.0, "{s:?}");
        // Zero durations are kept (as 1 µs), not dropped.
        a.record(Duration::ZERO);
        assert_eq!(a.len(), 102);
    }

    #[test]
    fn errors_tally_and_describe() {
        let mut e = Errors::default();
        assert_eq!(e.describe(), "none");
        e.add("429");
        e.add("429");
        let mut f = Errors::default();
        f.add("timeout");
        e.merge(&f);
        assert_eq!(e.total(), 3);
        assert_eq!(e.describe(), "429×2 timeout×1");
    }
}
