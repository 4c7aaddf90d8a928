//! The hyper floor table: each CPU row of the run measured against the
//! thinnest relay built from hyper's own server and client halves
//! (`hyper-floor`, src/floor.rs), in the same rounds as the peers.

use std::fmt::Write;

use super::rows::{Goal, rows};
use super::{cell, each_round, fmt, rounds_of, split_pair, sys_metric};
use crate::orchestrate::{Sizes, Target};
use crate::util::median;

/// One row per CPU row the floor ran in; empty when it did not run.
pub(crate) fn table(cells: &[super::Cell], sizes: &Sizes) -> String {
    let floor = Target::FLOOR;
    if !cells.iter().any(|c| c.target == floor) {
        return String::new();
    }
    let rounds = rounds_of(cells);
    let mut out = String::new();
    out.push_str("| measure | hyper floor kernel + user | sse-edge kernel + user | hyper floor ÷ best peer: median (each round) | sse-edge ÷ hyper floor: median (each round) | sse-edge user − hyper floor user |\n");
    out.push_str("|---|---:|---:|---|---|---:|\n");
    for row in rows(sizes) {
        let Some(sys) = sys_metric(row.metric) else {
            continue;
        };
        if !matches!(row.goal, Goal::Ratio(_))
            || !cells
                .iter()
                .any(|c| c.scenario == row.scenario && c.target == floor)
        {
            continue;
        }
        let get = |t: &str, r: usize, k: &str| {
            cell(cells, row.scenario, t, r)
                .and_then(|c| c.m.get(k).copied())
                .unwrap_or(f64::NAN)
        };
        let per = |t: &str, k: &str| -> Vec<f64> { (0..rounds).map(|r| get(t, r, k)).collect() };
        let (f_tot, f_sys) = (per(floor, row.metric), per(floor, sys));
        let (s_tot, s_sys) = (per("sse-edge", row.metric), per("sse-edge", sys));
        let (n_tot, h_tot) = (per("nginx", row.metric), per("haproxy", row.metric));
        let user = |tot: &[f64], sys: &[f64]| -> Vec<f64> {
            tot.iter().zip(sys).map(|(t, k)| t - k).collect()
        };
        let (f_user, s_user) = (user(&f_tot, &f_sys), user(&s_tot, &s_sys));
        let mut to_best = Vec::new();
        let mut over_floor = Vec::new();
        let mut user_gap = Vec::new();
        for r in 0..rounds {
            // The best peer of the round by total CPU, as in the summary.
            let best = n_tot[r].min(h_tot[r]);
            to_best.push(f_tot[r] / best);
            over_floor.push(s_tot[r] / f_tot[r]);
            user_gap.push(s_user[r] - f_user[r]);
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | **{}** | {} | {} |",
            row.label,
            split_pair(&f_sys, &f_user, row.unit),
            split_pair(&s_sys, &s_user, row.unit),
            each_round(&to_best),
            each_round(&over_floor),
            fmt(median(&user_gap), row.unit)
        );
    }
    out
}
