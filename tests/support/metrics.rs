//! Admin endpoints and Prometheus text: fetch `/metrics` (panicking, or
//! reporting a failure or a hang), and look up series by name and labels.

use std::net::SocketAddr;
use std::time::Duration;

use super::{Resp, fetch_once, get, try_fetch};

pub async fn admin_get(admin: SocketAddr, path: &str) -> Resp {
    fetch_once(admin, get(path)).await
}

/// The `/metrics` text; panics where [`try_metrics`] reports.
pub async fn metrics(admin: SocketAddr) -> String {
    try_metrics(admin).await.unwrap_or_else(|e| panic!("{e}"))
}

/// The `/metrics` text; an error if it is not a `200` within 5 s.
pub async fn try_metrics(admin: SocketAddr) -> Result<String, String> {
    let r = tokio::time::timeout(Duration::from_secs(5), try_fetch(admin, get("/metrics")))
        .await
        .map_err(|_| "GET /metrics hung".to_owned())??;
    ensure!(r.status == 200, "GET /metrics: {}", r.status);
    Ok(r.text())
}

/// The value of the series `name` whose labels include every pair of
/// `labels`; `None` if there is no such series.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metric_values(text, name, labels).first().copied()
}

/// The values of every series `name` whose labels include every pair of
/// `labels`, in the order of the text.
pub fn metric_values(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_sample)
        .filter(|(n, ls, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| ls.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|(_, _, v)| v)
        .collect()
}

/// The sum of [`metric_values`] (0 if there is no such series).
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_values(text, name, labels).iter().sum()
}

/// Like [`metric`] but 0 for a missing series.
pub fn metric_or_zero(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric(text, name, labels).unwrap_or(0.0)
}

type Sample = (String, Vec<(String, String)>, f64);

fn parse_sample(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.trim().parse().ok()?;
    let Some((name, rest)) = series.split_once('{') else {
        return Some((series.to_owned(), Vec::new(), value));
    };
    let body = rest.strip_suffix('}')?;
    let mut labels = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        if chars.next() != Some('"') {
            return None;
        }
        let mut val = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next()? {
                    'n' => val.push('\n'),
                    other => val.push(other),
                },
                '"' => break,
                other => val.push(other),
            }
        }
        labels.push((key.trim_start_matches(',').to_owned(), val));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some((name.to_owned(), labels, value))
}
