//! The fault suite: what clients see, and that nothing is lost or leaked,
//! when upstreams, clients and the network misbehave.
//!
//! A `harness = false` target: `main` runs the cases area by area (the cases
//! of an area concurrently unless marked solo), prints one line per case,
//! one summary line per area and a total line, and exits 1 on any failure.
//! Each case has its own deadline, so a hang fails instead of blocking CI.
//! `cargo test --test faults -- NAME` runs only the cases whose
//! `area/name` contains NAME.
//!
//! After each case the relay's `/metrics` must come back to rest: no
//! request in flight, no active stream, no client connection, no HTTP/2
//! stream or HTTP/1.1 upstream connection checked out of the pool.
//!
//! This file is the runner: the area table, `case!`, and the per-case and
//! summary lines. Each area's cases live in the module of the same name;
//! `common` and `raw` hold the helpers only the fault suite uses (the
//! at-rest check, process figures, raw client sockets); what the integration
//! tests use too is in `support`, along with `ensure!`.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

#[macro_use]
#[path = "../support/mod.rs"]
mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// ================================================================ harness

type CaseResult = Result<(), String>;
type CaseFuture = Pin<Box<dyn Future<Output = CaseResult> + Send>>;

struct Case {
    name: &'static str,
    limit: Duration,
    /// Runs alone, after the area's concurrent cases (timing or memory
    /// figures that other load would blur).
    solo: bool,
    run: fn() -> CaseFuture,
}

macro_rules! case {
    ($name:literal, $f:path, $secs:expr) => {
        Case {
            name: $name,
            limit: Duration::from_secs($secs),
            solo: false,
            run: || Box::pin($f()),
        }
    };
    ($name:literal, $f:path, $secs:expr, solo) => {
        Case {
            name: $name,
            limit: Duration::from_secs($secs),
            solo: true,
            run: || Box::pin($f()),
        }
    };
}

// The area modules come after `support` (which brings `ensure!`) and
// `case!`: macros are in scope textually.
mod client;
mod common;
mod ending;
mod h2;
mod hostile;
mod limits;
mod raw;
mod slow;
mod smuggling;
mod soak;
mod tls;
mod upstream;

fn areas() -> Vec<(&'static str, Vec<Case>)> {
    vec![
        (
            "upstream",
            vec![
                case!(
                    "refuses_connections",
                    upstream::upstream_refuses_connections,
                    20
                ),
                case!(
                    "stalls_before_headers",
                    upstream::upstream_stalls_before_headers,
                    20
                ),
                case!(
                    "resets_before_headers",
                    upstream::upstream_resets_before_headers,
                    20
                ),
                case!(
                    "resets_mid_stream",
                    upstream::upstream_resets_mid_stream,
                    20
                ),
                case!(
                    "ends_without_terminal_event",
                    upstream::upstream_ends_early,
                    20
                ),
                case!("answers_garbage", upstream::upstream_answers_garbage, 20),
                case!("silent_mid_sse_body", upstream::upstream_silent_mid_sse, 20),
                case!(
                    "silent_mid_json_body",
                    upstream::upstream_silent_mid_json,
                    20
                ),
            ],
        ),
        (
            "ending",
            vec![
                case!(
                    "chat_finished_without_done",
                    ending::chat_finished_without_done,
                    20
                ),
                case!(
                    "chat_finished_with_usage_without_done",
                    ending::chat_finished_with_usage_without_done,
                    20
                ),
                case!("chat_done_is_terminal", ending::chat_done_is_terminal, 20),
                case!(
                    "chat_cut_before_finish_reason",
                    ending::chat_cut_before_finish_reason,
                    20
                ),
                case!(
                    "chat_cut_before_asked_usage",
                    ending::chat_cut_before_asked_usage,
                    20
                ),
                case!(
                    "chat_one_of_two_choices_finished",
                    ending::chat_one_of_two_choices_finished,
                    20
                ),
                case!("chat_relay_asked_usage", ending::chat_relay_asked_usage, 20),
                case!(
                    "chat_resumable_done_is_stamped",
                    ending::chat_resumable_done_is_stamped,
                    20
                ),
                case!(
                    "chat_cut_inside_an_event_after_finish",
                    ending::chat_cut_inside_an_event_after_finish,
                    20
                ),
                case!(
                    "anthropic_stopped_without_message_stop",
                    ending::anthropic_stopped_without_message_stop,
                    20
                ),
                case!(
                    "anthropic_cut_before_message_delta",
                    ending::anthropic_cut_before_message_delta,
                    20
                ),
                case!(
                    "responses_terminal_events",
                    ending::responses_terminal_events,
                    20
                ),
            ],
        ),
        (
            "client",
            vec![
                case!(
                    "disconnect_mid_stream_h1_upstream",
                    client::client_disconnect_h1,
                    20
                ),
                case!(
                    "disconnect_mid_stream_h2_upstream",
                    client::client_disconnect_h2,
                    20
                ),
                case!(
                    "disconnect_during_early_commit",
                    client::client_disconnect_early_commit,
                    20
                ),
                case!(
                    "sequential_disconnects_200",
                    client::client_sequential_disconnects,
                    60
                ),
            ],
        ),
        (
            "slow",
            vec![
                case!("slowloris_head", slow::slow_loris_head, 20),
                case!("idle_connections", slow::slow_idle_connections, 20),
                case!("slow_body_json_buffered", slow::slow_body_json, 20),
                case!("slow_body_plain_streamed", slow::slow_body_streamed, 20),
                case!(
                    "never_reading_client",
                    slow::slow_never_reading_client,
                    40,
                    solo
                ),
            ],
        ),
        (
            "limits",
            vec![
                case!("header_70k", limits::limits_big_header, 20),
                case!("headers_150", limits::limits_many_headers, 20),
                case!("uri_9k", limits::limits_long_uri, 20),
                case!("body_over_limit", limits::limits_body, 20),
                case!("max_connections", limits::limits_max_connections, 20),
                case!("max_requests", limits::limits_max_requests, 20),
            ],
        ),
        (
            "smuggling",
            vec![
                case!("cl_and_te", smuggling::smuggle_cl_te, 20),
                case!(
                    "duplicate_content_length",
                    smuggling::smuggle_duplicate_cl,
                    20
                ),
                case!(
                    "te_not_ending_in_chunked",
                    smuggling::smuggle_te_not_chunked,
                    20
                ),
                case!("obs_fold", smuggling::smuggle_obs_fold, 20),
                case!("bare_lf_chunks", smuggling::smuggle_bare_lf, 20),
                case!(
                    "upgrade_h2c_not_honoured",
                    smuggling::smuggle_upgrade_h2c,
                    20
                ),
                case!("connect_405", smuggling::smuggle_connect, 20),
            ],
        ),
        (
            "h2",
            vec![
                case!("rapid_reset", h2::h2_rapid_reset, 40),
                case!("continuation_flood", h2::h2_continuation_flood, 40),
            ],
        ),
        (
            "tls",
            vec![
                case!("alpn_h3_only", tls::tls_alpn_h3_only, 20),
                case!("garbage_client_hello", tls::tls_garbage_hello, 20),
                case!("handshake_never_finishes", tls::tls_stalled_handshake, 20),
                case!("idle_after_handshake", tls::tls_idle_after_handshake, 20),
            ],
        ),
        (
            "hostile",
            vec![
                case!(
                    "event_stream_with_content_length",
                    hostile::event_stream_with_content_length,
                    20
                ),
                case!(
                    "body_fails_before_first_byte",
                    hostile::body_fails_before_first_byte,
                    20
                ),
                case!("spoofed_relay_headers", hostile::spoofed_relay_headers, 20),
                case!(
                    "trailers_lose_hop_by_hop_fields",
                    hostile::trailers_lose_hop_by_hop_fields,
                    20
                ),
                case!(
                    "request_transfer_coding_refused",
                    hostile::request_transfer_coding_refused,
                    20
                ),
                case!(
                    "resume_token_not_logged",
                    hostile::resume_token_not_logged,
                    20
                ),
                case!(
                    "h2_idle_closes_on_time",
                    hostile::h2_idle_closes_on_time,
                    20,
                    solo
                ),
            ],
        ),
        (
            "soak",
            vec![case!("mixed_faults", soak::soak_mixed, 90, solo)],
        ),
    ]
}

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (mut passed, mut failed) = (0, 0);
    rt.block_on(async {
        for (area, cases) in areas() {
            let cases: Vec<Case> = cases
                .into_iter()
                .filter(|c| {
                    filter
                        .as_deref()
                        .is_none_or(|f| format!("{area}/{}", c.name).contains(f))
                })
                .collect();
            if cases.is_empty() {
                continue;
            }
            let (p, f) = run_area(area, cases).await;
            println!("{area}: {p} passed, {f} failed");
            passed += p;
            failed += f;
        }
    });
    println!("{passed} passed, {failed} failed");
    rt.shutdown_timeout(Duration::from_secs(2));
    std::process::exit(i32::from(failed > 0));
}

async fn run_area(area: &'static str, cases: Vec<Case>) -> (usize, usize) {
    let (solo, together): (Vec<Case>, Vec<Case>) = cases.into_iter().partition(|c| c.solo);
    let mut set = tokio::task::JoinSet::new();
    for c in together {
        set.spawn(run_case(area, c));
    }
    let (mut passed, mut failed) = (0, 0);
    let mut tally = |ok: bool| {
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
    };
    while let Some(res) = set.join_next().await {
        tally(res.unwrap_or(false));
    }
    for c in solo {
        tally(run_case(area, c).await);
    }
    (passed, failed)
}

tokio::task_local! {
    /// Figures a case reports on its output line.
    static NOTES: Arc<Mutex<Vec<String>>>;
}

/// Adds a figure to the running case's output line.
fn note(s: impl Into<String>) {
    let s = s.into();
    let _ = NOTES.try_with(|n| n.lock().unwrap().push(s));
}

/// Runs one case under its deadline (and catching panics from support
/// helpers); prints its line; returns whether it passed.
async fn run_case(area: &'static str, c: Case) -> bool {
    let notes = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let task = tokio::spawn(NOTES.scope(notes.clone(), (c.run)()));
    let abort = task.abort_handle();
    let res = match tokio::time::timeout(c.limit, task).await {
        Ok(Ok(res)) => res,
        Ok(Err(e)) if e.is_panic() => Err(format!("panicked: {}", panic_text(e.into_panic()))),
        Ok(Err(e)) => Err(format!("task failed: {e}")),
        Err(_) => {
            abort.abort();
            Err(format!("hung: no result within {:?}", c.limit))
        }
    };
    let ms = start.elapsed().as_millis();
    let notes = notes.lock().unwrap().join("; ");
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" [{notes}]")
    };
    match res {
        Ok(()) => {
            println!("ok   {area}/{} ({ms} ms){notes}", c.name);
            true
        }
        Err(e) => {
            println!("FAIL {area}/{}: {e} ({ms} ms){notes}", c.name);
            false
        }
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-text panic".to_owned()
    }
}
