//! A browser app on another origin, proven in a real browser: headless
//! Chromium (Debian's `chromium`) driven over the DevTools protocol by
//! `tests/interop/browser_check.mjs` (puppeteer-core), from pages served on
//! loopback origins other than the relay's.
//!
//! - a `fetch()` streaming POST reads tokens as they arrive through an
//!   upstream silent for 5 s, the head early-committed by the relay;
//! - a relay-made 429, 502 and 401 are readable (status, JSON body,
//!   `sse-edge-error`, `retry-after`);
//! - an `EventSource` on the resume endpoint, cut by a loopback forwarder,
//!   reconnects by itself and ends with exactly the upstream's events;
//! - preflights are answered by the relay (the upstream sees no `OPTIONS`);
//! - another origin's requests are blocked by the browser;
//! - the `sse-edge demo` page renders, shows keepalives and tokens,
//!   resumes after its cut button, and its screenshot is more than a
//!   blank page (left in `target/tmp/browser-demo.png`).
//!
//! Needs Chromium: `.ci/install-browser` installs Debian's package (CI runs
//! it), `SSE_EDGE_CHROMIUM` names another binary. Without one these tests
//! fail saying so; outside CI, `SSE_EDGE_SKIP_BROWSER=1` skips them
//! instead. The npm packages come as for `tests/eventsource.rs`.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use sse_edge::cli::{Invocation, from_args};
use sse_edge::internals::{OPENAI_ANSWER, whatwg};
use sse_edge::{key_digest as digest, key_hex as hex};
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Notify;

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/interop/browser_check.mjs"
);
const KEY: &str = "sk-edge-browser-0123456789";
/// The upstream's silence before a slow answer's head.
const SILENT: Duration = Duration::from_secs(5);
/// Tokens of the slow answer, and the time between two.
const TOKENS: usize = 8;
const TOKEN_GAP: Duration = Duration::from_millis(150);
/// Events of the gated stream, and how many come before the EventSource's
/// reconnect.
const EVENTS: usize = 30;
const BEFORE_RECONNECT: usize = 15;
/// Bytes from the relay the forwarder lets through on its first
/// connection: the head and a few events.
const CUT_AFTER: usize = 1000;

/// One browser at a time: two Chromium instances on a small machine would
/// blur the timings the tests read.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The Chromium to drive, or `None` when the developer asked to skip.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SSE_EDGE_CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = [
        "chromium",
        "chromium-browser",
        "google-chrome-stable",
        "google-chrome",
    ]
    .iter()
    .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
    .find(|p| p.is_file());
    if found.is_some() {
        return found;
    }
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    let skip = std::env::var_os("SSE_EDGE_SKIP_BROWSER").is_some_and(|v| v == "1");
    if skip && !ci {
        eprintln!(
            "tests/browser.rs SKIPPED (SSE_EDGE_SKIP_BROWSER=1): no Chromium on PATH; \
             .ci/install-browser installs it"
        );
        return None;
    }
    panic!(
        "tests/browser.rs needs Chromium and found none on PATH (chromium, chromium-browser, \
         google-chrome): run .ci/install-browser (Debian's chromium package), or set \
         SSE_EDGE_CHROMIUM to a Chrome or Chromium binary. Outside CI, SSE_EDGE_SKIP_BROWSER=1 \
         skips these tests{}",
        if ci { " (refused here: CI is set)" } else { "" }
    );
}

/// Runs the browser script with `plan` and returns what it printed.
async fn browser_check(plan: Value) -> Value {
    let child = tokio::process::Command::new("node")
        .args([SCRIPT, &plan.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let out = tokio::time::timeout(Duration::from_secs(100), child.wait_with_output())
        .await
        .expect("browser_check.mjs finished in time")
        .expect("node output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser_check.mjs failed ({}):\n{stderr}",
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("bad output ({e}): {stdout}\n{stderr}"))
}

/// A chat-completions chunk carrying `text`.
fn chunk(text: &str) -> Bytes {
    Bytes::from(format!(
        "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}}}}]}}\n\n"
    ))
}

/// The upstream behind every route: `/slow/*` is silent for [`SILENT`],
/// then streams [`TOKENS`] tokens; `/gated/*` streams [`EVENTS`] events
/// with a wait for the EventSource's reconnect in the middle; anything
/// else is a small JSON answer.
async fn upstream(events: Vec<Bytes>, reconnected: Arc<Notify>) -> Upstream {
    Upstream::start(Mode::Http1, move |r| {
        let (events, reconnected) = (events.clone(), reconnected.clone());
        async move {
            if r.target.starts_with("/slow") {
                tokio::time::sleep(SILENT).await;
                let (tx, body) = channel_body();
                tokio::spawn(async move {
                    for i in 0..TOKENS {
                        let _ = tx.send(Ok(chunk(&format!("tok-{i} ")))).await;
                        tokio::time::sleep(TOKEN_GAP).await;
                    }
                    let _ = tx.send(Ok(Bytes::from_static(b"data: [DONE]\n\n"))).await;
                });
                return sse_response(body);
            }
            if r.target.starts_with("/gated") {
                let (tx, body) = channel_body();
                tokio::spawn(async move {
                    for (i, e) in events.into_iter().enumerate() {
                        if i == BEFORE_RECONNECT {
                            let wait = reconnected.notified();
                            let _ = tokio::time::timeout(Duration::from_secs(15), wait).await;
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        if tx.send(Ok(e)).await.is_err() {
                            return;
                        }
                    }
                });
                return sse_response(body);
            }
            json_response(200, r#"{"ok":true}"#)
        }
    })
    .await
}

/// A page server: the same empty page on each of `n` loopback origins.
async fn pages() -> Upstream {
    Upstream::start(Mode::Http1, |_| async {
        response(
            200,
            &[("content-type", "text/html; charset=utf-8")],
            full("<!doctype html><meta charset=utf-8><title>sse-edge browser test</title><p>page</p>"),
        )
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_streams_reads_errors_and_resumes() {
    let Some(chromium) = chromium() else { return };
    ensure_interop_packages();
    let _one = BROWSER.lock().await;
    let events = sse_events(EVENTS);
    let want: Vec<String> = whatwg::parse(&concat(&events))
        .into_iter()
        .map(|e| e.data)
        .collect();
    let reconnected = Arc::new(Notify::new());
    let up = upstream(events, reconnected.clone()).await;
    let (page, denied) = (pages().await, pages().await);
    let origin = format!("http://127.0.0.1:{}", page.addr.port());

    let dir = TempDir::new("browser");
    let keys = dir.write(
        "keys",
        format!("{}\n", hex(&digest(KEY.as_bytes()))).as_bytes(),
    );
    let policy = format!("cors = {{ allow_origins = [\"{origin}\"] }}");
    let route = |prefix: &str, url: &str, extra: &str| {
        format!(
            "\n[[route]]\nprefix = \"{prefix}\"\nstrip_prefix = true\nupstream = \"{url}\"\n{policy}\n{extra}\n"
        )
    };
    let down = format!("http://{}", closed_port_addr());
    let toml = [
        "heartbeat = \"500ms\"\n".to_owned(),
        route(
            "/app",
            &up.url(),
            &format!(
                "auth_keys_file = \"{}\"\nresume = {{ window = \"20s\" }}",
                keys.display()
            ),
        ),
        // An EventSource cannot send a key: resumable, without keys.
        route("/stream", &up.url(), "resume = { window = \"20s\" }"),
        route("/limited", &up.url(), "rate_limit = \"1/h\""),
        route("/down", &down, "retry_attempts = 0"),
        route("/open", &up.url(), ""),
    ]
    .concat();
    let file = dir.write("sse-edge.toml", toml.as_bytes());
    let args = [
        "sse-edge",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
    ];
    let args = args.into_iter().chain(["--config", file.to_str().unwrap()]);
    let Ok(Invocation::Run(config)) = from_args(args, &|_| None) else {
        panic!("config refused:\n{toml}");
    };
    let (relay, mut log) = start_with_log(config).await;
    let fwd = Forwarder::start(relay.listen, CUT_AFTER, reconnected).await;

    let out = browser_check(json!({
        "chromium": chromium,
        "mode": "cors",
        "page": format!("{origin}/"),
        "denied_page": format!("http://127.0.0.1:{}/", denied.addr.port()),
        "relay": format!("http://{}", relay.listen),
        "forwarder": format!("http://{}", fwd.addr),
        "key": KEY,
    }))
    .await;
    eprintln!("browser: {}", out["chromium"]);
    assert_eq!(out["origin"], origin.as_str());

    // Progressive: the head at the early commit, keepalives through the
    // silence, then each token as the upstream sent it.
    let slow = &out["slow"];
    let head = &slow["head"];
    assert_eq!(head["status"], 200, "{slow}");
    assert_eq!(head["early_commit"], "1", "{slow}");
    assert!(
        head["stream_id"].is_string(),
        "sse-edge-stream-id readable: {slow}"
    );
    let head_ms = head["ms"].as_f64().unwrap();
    assert!(head_ms < 3000.0, "head after {head_ms} ms: {slow}");
    let chunks: Vec<(f64, String)> = slow["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["ms"].as_f64().unwrap(),
                c["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let first_token = chunks
        .iter()
        .position(|(_, t)| t.contains("tok-0"))
        .expect("tok-0");
    let keepalives: usize = chunks[..first_token]
        .iter()
        .map(|(_, t)| t.matches(": keepalive").count())
        .sum();
    assert!(
        keepalives >= 5,
        "{keepalives} keepalives in the silence: {slow}"
    );
    let token_times: Vec<f64> = (0..TOKENS)
        .map(|i| {
            let needle = format!("tok-{i} ");
            chunks
                .iter()
                .find(|(_, t)| t.contains(&needle))
                .expect(&needle)
                .0
        })
        .collect();
    assert!(
        token_times[0] >= 4500.0,
        "first token at {} ms",
        token_times[0]
    );
    let spread = token_times[TOKENS - 1] - token_times[0];
    let sent = (TOKENS - 1) as f64 * TOKEN_GAP.as_millis() as f64;
    assert!(
        spread >= sent * 0.6,
        "tokens read over {spread} ms, sent over {sent}: {slow}"
    );
    assert!(chunks.last().unwrap().1.contains("[DONE]"), "{slow}");

    // Relay-made errors, readable by the script.
    let errors = &out["errors"];
    assert_eq!(errors["limited_first"], 200, "{errors}");
    let limited = &errors["limited"];
    assert_eq!(limited["status"], 429, "{errors}");
    assert_eq!(limited["body"]["error"]["code"], "rate_limit_exceeded");
    assert_eq!(limited["sse_edge_error"], "rate_limit_exceeded");
    assert!(
        limited["retry_after"]
            .as_str()
            .is_some_and(|s| s.parse::<u64>().is_ok()),
        "{errors}"
    );
    let down = &errors["down"];
    assert_eq!(down["status"], 502, "{errors}");
    assert_eq!(down["body"]["error"]["code"], "upstream_unreachable");
    assert_eq!(down["sse_edge_error"], "upstream_unreachable");
    assert_eq!(errors["unauthorized"]["status"], 401, "{errors}");
    assert_eq!(
        errors["unauthorized"]["body"]["error"]["code"],
        "invalid_api_key"
    );
    assert_eq!(errors["authorized"], 200, "{errors}");

    // The EventSource came back by itself and got every event once.
    let resume = &out["resume"];
    assert_eq!(resume["end"], "done", "{resume}");
    let data: Vec<&str> = resume["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(data, want, "exactly the upstream's events: {resume}");
    let token = resume["token"].as_str().unwrap();
    let ids: Vec<String> = (1..=EVENTS).map(|i| format!("{token}:{i}")).collect();
    let got_ids: Vec<&str> = resume["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(got_ids, ids);
    assert!(
        !resume["errors"].as_array().unwrap().is_empty(),
        "the cut reached it: {resume}"
    );
    let seen = fwd.seen();
    assert_eq!(seen[0].response.len(), CUT_AFTER, "cut where asked");
    let last_id = |c: &Crossed| {
        let text = String::from_utf8_lossy(&c.request).to_ascii_lowercase();
        text.starts_with("get ")
            .then(|| {
                text.lines()
                    .find_map(|l| l.strip_prefix("last-event-id: ").map(str::to_owned))
            })
            .flatten()
    };
    let resumed_from = seen[1..].iter().find_map(last_id).unwrap_or_else(|| {
        let requests: Vec<_> = seen
            .iter()
            .map(|c| String::from_utf8_lossy(&c.request).into_owned())
            .collect();
        panic!("no reconnect with Last-Event-ID: {requests:?}")
    });
    assert!(resumed_from.starts_with(token), "{resumed_from}");
    let m = metrics(relay.admin).await;
    let resumed = metric(
        &m,
        "sse_edge_resume_reconnects_total",
        &[("result", "resumed")],
    );
    assert!(
        resumed >= Some(2.0),
        "the EventSource's request and its reconnect: {m}"
    );

    // Another origin: blocked by the browser, both ways.
    let blocked = &out["denied"];
    assert_eq!(blocked["post"], "blocked: TypeError", "{blocked}");
    assert_eq!(blocked["get"], "blocked: TypeError", "{blocked}");
    let console = blocked["console"].to_string();
    assert!(console.contains("CORS"), "the browser said why: {console}");

    // Preflights were the relay's: the upstream saw no OPTIONS, the relay
    // answered some (204 for the page, 403 for the other origin).
    let methods: Vec<String> = up.requests().iter().map(|r| r.method.to_string()).collect();
    assert!(!methods.iter().any(|m| m == "OPTIONS"), "{methods:?}");
    let ok = log
        .find("for an allowed preflight", |v| {
            v["method"] == "OPTIONS" && v["status"] == 204
        })
        .await;
    assert_eq!(ok.unwrap()["route"], "/app");
    log.find("for the other origin's preflight", |v| {
        v["method"] == "OPTIONS" && v["status"] == 403
    })
    .await
    .unwrap();
    // The other origin's simple GET reached the upstream; the browser, not
    // the relay, kept the answer from the script.
    assert!(
        up.requests()
            .iter()
            .any(|r| r.method == "GET" && r.target == "/v1/models")
    );
    stop_relay(relay).await;
}

/// The URL the demo prints for its page.
async fn page_url(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> (String, Vec<String>) {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line.clone());
            if let Some(rest) = line.trim_start().strip_prefix("browser page") {
                return rest.split_whitespace().next().map(str::to_owned);
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(url)) => (url, seen),
        _ => panic!("the demo printed no page URL:\n{}", seen.join("\n")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_streams_marks_keepalives_and_resumes_after_a_cut() {
    let Some(chromium) = chromium() else { return };
    ensure_interop_packages();
    let _one = BROWSER.lock().await;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sse-edge"));
    cmd.args([
        "demo",
        "--keep-running",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--page",
        "127.0.0.1:0",
        "--head-delay",
        "1500ms",
        "--pause",
        "2s",
    ])
    .env("NO_COLOR", "1")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SSE_EDGE_") {
            cmd.env_remove(name);
        }
    }
    let mut demo = cmd.spawn().expect("the demo binary runs");
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let (url, _) = page_url(&mut lines).await;
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
        "{url}"
    );
    // Keep reading the demo's output so it never blocks on a full pipe.
    let printed = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            all.push(line);
        }
        all
    });

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-demo.png");
    let out = browser_check(json!({
        "chromium": chromium,
        "mode": "demo",
        "url": url,
        "screenshot": shot,
        "cut_after_tokens": 3,
    }))
    .await;
    let _ = demo.start_kill();
    let _ = demo.wait().await;
    let _ = printed.await;

    assert_eq!(out["state"], "done", "{out:#}");
    assert_eq!(out["state_after_cut"], "resuming", "{out:#}");
    assert_eq!(out["answer"], OPENAI_ANSWER, "the whole answer: {out:#}");
    let before = out["before_cut"].as_str().unwrap();
    assert!(!before.is_empty() && OPENAI_ANSWER.starts_with(before) && before != OPENAI_ANSWER);
    let verdict = out["verdict"].as_str().unwrap();
    assert!(
        verdict.contains("each once and in order") && verdict.contains("nothing lost"),
        "{verdict}"
    );
    let counts = &out["counts"];
    assert!(counts["keepalives"].as_u64().unwrap() >= 1, "{counts}");
    assert_eq!(
        counts["tokens"],
        OPENAI_ANSWER.split_whitespace().count(),
        "{counts}"
    );
    assert_eq!(counts["cuts"], 1, "{counts}");
    assert_eq!(counts["resumes"], 1, "{counts}");
    let words = OPENAI_ANSWER.split_whitespace().count();
    assert!(
        out["usage"]
            .as_str()
            .unwrap()
            .contains(&format!("completion {words}")),
        "{out:#}"
    );
    let log = out["log"].to_string();
    for mark in [
        "♥",
        "committed early",
        "✂",
        "↻ GET /sse-edge/streams/",
        "■ [DONE]",
    ] {
        assert!(log.contains(mark), "{mark} in the page's log: {log}");
    }
    let errors: Vec<&Value> = out["console"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| {
            l.as_str()
                .is_some_and(|s| s.starts_with("error") || s.starts_with("pageerror"))
        })
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");

    // The screenshot: the page's size, and more than a blank page (text,
    // the marked log, coloured controls).
    let s = &out["screenshot"];
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let dim = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    assert_eq!((dim(16), dim(20)), (1280, 800), "IHDR");
    assert_eq!(s["bytes"], png.len());
    assert!(s["distinct_colors"].as_u64().unwrap() >= 64, "{s}");
    let ink = s["non_background"].as_f64().unwrap();
    assert!(
        (0.05..0.95).contains(&ink),
        "share of non-background pixels {ink}: {s}"
    );
    eprintln!("demo page screenshot: {} ({s})", shot.display());
}
