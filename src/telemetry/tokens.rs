//! `sse_edge_tokens_total{route,model,kind}` with a bounded `model` label.
//!
//! The first `max_models` distinct model names get their own label value;
//! every later one (and requests without a known model) counts as `other`,
//! so a client sending random model names cannot grow the metrics without
//! bound. Model rows are created once and never removed; lookups take a read
//! lock once per finished request, never per chunk.

use std::fmt::Write as _;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::usage::Usage;

/// Token kinds, in label order.
pub(super) const KINDS: [&str; 5] = ["input", "output", "cache_read", "cache_write", "reasoning"];
const OTHER: &str = "other";

struct Row {
    model: String,
    /// `routes x KINDS` counters.
    counts: Box<[AtomicU64]>,
}

pub(super) struct Tokens {
    routes: usize,
    max_models: usize,
    rows: RwLock<Vec<Row>>,
}

impl Tokens {
    pub(super) fn new(routes: usize, max_models: usize) -> Self {
        let other = Row::new(OTHER.to_owned(), routes);
        Self {
            routes,
            max_models,
            rows: RwLock::new(vec![other]),
        }
    }

    /// Adds `usage` for `route` and `model`.
    pub(super) fn add(&self, route: usize, model: Option<&str>, usage: &Usage) {
        let route = route.min(self.routes - 1);
        let values = [
            usage.input,
            usage.output,
            usage.cache_read,
            usage.cache_write,
            usage.reasoning,
        ];
        let add = |row: &Row| {
            for (k, v) in values.iter().enumerate() {
                if let Some(v) = v {
                    row.counts[route * KINDS.len() + k].fetch_add(*v, Ordering::Relaxed);
                }
            }
        };
        let model = model.filter(|m| !m.is_empty() && *m != OTHER);
        {
            let rows = self.rows.read().unwrap_or_else(|p| p.into_inner());
            let row = match model {
                Some(m) => rows.iter().find(|r| r.model == m),
                None => Some(&rows[0]),
            };
            if let Some(row) = row {
                return add(row);
            }
        }
        let mut rows = self.rows.write().unwrap_or_else(|p| p.into_inner());
        let Some(m) = model else { return add(&rows[0]) };
        if let Some(row) = rows.iter().find(|r| r.model == m) {
            return add(row);
        }
        if rows.len() > self.max_models {
            return add(&rows[0]);
        }
        rows.push(Row::new(m.to_owned(), self.routes));
        if let Some(row) = rows.last() {
            add(row);
        }
    }

    /// Writes every non-zero sample; `route_label(i)` renders route `i`.
    pub(super) fn render(&self, out: &mut String, route_label: impl Fn(usize) -> String) {
        let rows = self.rows.read().unwrap_or_else(|p| p.into_inner());
        for row in rows.iter() {
            for route in 0..self.routes {
                for (k, kind) in KINDS.iter().enumerate() {
                    let n = row.counts[route * KINDS.len() + k].load(Ordering::Relaxed);
                    if n > 0 {
                        let model = super::metrics::label(&row.model);
                        let _ = writeln!(
                            out,
                            "sse_edge_tokens_total{{route=\"{}\",model=\"{model}\",kind=\"{kind}\"}} {n}",
                            route_label(route)
                        );
                    }
                }
            }
        }
    }
}

impl Row {
    fn new(model: String, routes: usize) -> Self {
        Self {
            model,
            counts: (0..routes * KINDS.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64) -> Usage {
        Usage {
            input: Some(input),
            output: Some(output),
            ..Usage::default()
        }
    }

    #[test]
    fn models_beyond_the_limit_fold_into_other() {
        let t = Tokens::new(2, 2);
        t.add(0, Some("a"), &usage(1, 2));
        t.add(0, Some("b"), &usage(1, 0));
        t.add(1, Some("c"), &usage(5, 5));
        t.add(0, Some("a"), &usage(1, 2));
        t.add(0, None, &usage(7, 0));
        let mut out = String::new();
        t.render(&mut out, |r| format!("r{r}"));
        assert!(
            out.contains("{route=\"r0\",model=\"a\",kind=\"input\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("{route=\"r0\",model=\"a\",kind=\"output\"} 4\n"));
        assert!(out.contains("{route=\"r0\",model=\"b\",kind=\"input\"} 1\n"));
        assert!(out.contains("{route=\"r1\",model=\"other\",kind=\"input\"} 5\n"));
        assert!(out.contains("{route=\"r0\",model=\"other\",kind=\"input\"} 7\n"));
        assert!(!out.contains("model=\"c\""));
        assert!(
            !out.contains("kind=\"cache_read\""),
            "unreported kinds stay absent"
        );
    }
}
