//! The real binary: configuration errors, drain on SIGTERM, admin endpoints
//! and the access log.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Request;
use support::*;
use tokio::net::TcpStream;

fn error_line<'a>(stderr: &'a str, needles: &[&str]) -> Option<&'a str> {
    stderr
        .lines()
        .find(|l| needles.iter().all(|n| l.contains(n)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_values_are_refused_naming_the_key() {
    within(async {
        let up = "http://127.0.0.1:9";

        let out = run_bin(&["--upstream", up, "--upstream-connect-timeout", "5x"], &[]).await;
        assert!(!out.status.success());
        assert!(
            error_line(&out.stderr, &["upstream.connect_timeout", "5x"]).is_some(),
            "stderr: {}",
            out.stderr
        );

        let out = run_bin(&["--upstream", up], &[("SSE_EDGE_DRAIN_TIMEOUT", "abc")]).await;
        assert!(!out.status.success());
        assert!(
            error_line(
                &out.stderr,
                &["drain_timeout", "abc", "SSE_EDGE_DRAIN_TIMEOUT"]
            )
            .is_some(),
            "stderr: {}",
            out.stderr
        );

        let dir = TempDir::new("badcfg");
        let file = dir.write(
            "bad.toml",
            format!("heartbeat = \"fast\"\n\n[[route]]\nupstream = \"{up}\"\n").as_bytes(),
        );
        let file = file.to_str().unwrap();
        let out = run_bin(&["--config", file], &[]).await;
        assert!(!out.status.success());
        assert!(
            error_line(&out.stderr, &["heartbeat", "fast"]).is_some(),
            "stderr: {}",
            out.stderr
        );
        let out = run_bin(&["check-config", file], &[]).await;
        assert!(!out.status.success(), "check-config accepts a bad file");
        assert!(error_line(&out.stderr, &["heartbeat", "fast"]).is_some());

        // Each refusal is a single line.
        let out = run_bin(&["--upstream", up, "--upstream-connect-timeout", "5x"], &[]).await;
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_prints_the_effective_config() {
    within(async {
        let dir = TempDir::new("checkcfg");
        let file = dir.write(
            "good.toml",
            b"drain_timeout = \"7s\"\n\n[upstream]\nconnect_timeout = \"750ms\"\n\n\
              [[route]]\nname = \"openai\"\nprefix = \"/openai\"\nupstream = \"https://api.example.com/v1\"\n\
              strip_prefix = true\n",
        );
        let out = run_bin(&["check-config", file.to_str().unwrap()], &[]).await;
        assert!(out.status.success(), "stderr: {}", out.stderr);
        let s = &out.stdout;
        for needle in [
            "[[route]]",
            "\"/openai\"",
            "https://api.example.com/v1",
            "strip_prefix = true",
            "\"750ms\"",
            "\"7s\"",
            "[upstream]",
        ] {
            assert!(s.contains(needle), "check-config output lacks {needle}:\n{s}");
        }
        // The output is valid TOML that check-config accepts again.
        let again = dir.write("again.toml", strip_comments(s).as_bytes());
        let out = run_bin(&["check-config", again.to_str().unwrap()], &[]).await;
        assert!(out.status.success(), "re-check failed: {}", out.stderr);
    })
    .await;
}

/// Drops `# ...` comments (none of the values contain '#').
fn strip_comments(s: &str) -> String {
    s.lines()
        .map(|l| l.split_once('#').map_or(l, |(a, _)| a).trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_inflight_streams_then_exits_0() {
    within(async {
        const N: usize = 10;
        let up = Upstream::streaming(Mode::Http1, N, Duration::from_millis(150)).await;
        let url = up.url();
        let mut relay = RelayProc::spawn(&["--upstream", &url, "--drain-timeout", "20s"]).await;

        let mut c = Client::h1(relay.listen).await;
        let res = c.send(post("/v1/chat/completions", "{}")).await.unwrap();
        assert_eq!(res.status(), 200);
        let mut body = res.into_body();
        // Wait for the stream to be under way.
        let first = http_body_util::BodyExt::frame(&mut body)
            .await
            .unwrap()
            .unwrap();
        let reader = tokio::spawn(read_frames(body));

        let term_at = Instant::now();
        relay.sigterm();

        // readyz turns 503 quickly.
        let mut ready_status = 0;
        while term_at.elapsed() < Duration::from_secs(2) {
            match try_fetch(relay.admin, get("/readyz")).await {
                Ok(r) => {
                    ready_status = r.status.as_u16();
                    if ready_status == 503 {
                        break;
                    }
                }
                Err(_) => break,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(ready_status, 503, "readyz during drain");
        assert!(!reader.is_finished(), "the stream ended at SIGTERM");

        // New connections are refused (or closed without an answer).
        tokio::time::sleep(Duration::from_millis(100)).await;
        match TcpStream::connect(relay.listen).await {
            Err(_) => {}
            Ok(s) => {
                let mut late = Client::over(s, false, relay.listen.to_string(), false).await;
                let res = tokio::time::timeout(Duration::from_secs(3), late.send(get("/late")))
                    .await
                    .expect("a late connection must not hang");
                assert!(res.is_err(), "a new connection was served during drain");
            }
        }

        // The in-flight stream ends complete and byte-identical.
        let (frames, err) = reader.await.unwrap();
        assert!(err.is_none(), "stream cut during drain: {err:?}");
        let mut all = first.into_data().unwrap().to_vec();
        all.extend(joined(&frames));
        assert_same(&all, &concat(&sse_events(N)), "stream during drain");

        let status = relay.wait_exit(Duration::from_secs(10)).await;
        assert!(
            status.success(),
            "exit status {status}; stderr: {}",
            relay.stderr()
        );
        assert!(
            term_at.elapsed() < Duration::from_secs(8),
            "drain took {:?}",
            term_at.elapsed()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_cuts_endless_streams() {
    within(async {
        let up = Upstream::endless(Mode::Http1, Duration::from_millis(50), Arc::default()).await;
        let url = up.url();
        let mut relay = RelayProc::spawn(&["--upstream", &url, "--drain-timeout", "500ms"]).await;

        let mut c = Client::h1(relay.listen).await;
        let res = c.send(post("/v1/chat/completions", "{}")).await.unwrap();
        assert_eq!(res.status(), 200);
        let mut body = res.into_body();
        http_body_util::BodyExt::frame(&mut body)
            .await
            .unwrap()
            .unwrap();
        let reader = tokio::spawn(read_frames(body));

        let term_at = Instant::now();
        relay.sigterm();
        let status = relay.wait_exit(Duration::from_secs(10)).await;
        let took = term_at.elapsed();
        assert!(
            status.success(),
            "exit status {status}; stderr: {}",
            relay.stderr()
        );
        assert!(
            took >= Duration::from_millis(400),
            "exited after {took:?}, before the drain timeout"
        );
        assert!(took < Duration::from_secs(5), "exited after {took:?}");

        let (frames, err) = tokio::time::timeout(Duration::from_secs(5), reader)
            .await
            .expect("client stream ends after the relay exits")
            .unwrap();
        assert!(
            err.is_some(),
            "an endless stream cut by the drain timeout must not look complete ({} frames)",
            frames.len()
        );
        assert!(!frames.is_empty(), "frames kept flowing during the drain");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_and_access_log() {
    within(async {
        let up = Upstream::start(Mode::Http1, |req: Recorded| async move {
            match req.target.as_str() {
                "/v1/chat/completions" => sse_response(stream_frames(
                    sse_events(3),
                    Duration::from_millis(10),
                    None,
                )),
                "/missing?x=1" => json_response(404, r#"{"error":"nope"}"#),
                "/slow" => sse_response(stream_frames(
                    sse_events(4),
                    Duration::from_millis(300),
                    None,
                )),
                _ => json_response(200, r#"{"data":[]}"#),
            }
        })
        .await;
        let url = up.url();
        let mut relay = RelayProc::spawn(&["--upstream", &url]).await;

        let h = admin_get(relay.admin, "/healthz").await;
        assert_eq!(h.status, 200);
        assert_eq!(admin_get(relay.admin, "/readyz").await.status, 200);
        assert_eq!(admin_get(relay.admin, "/nope").await.status, 404);

        let mut c = Client::h1(relay.listen).await;
        let r = c.get("/v1/models").await;
        assert_eq!(r.status, 200);
        let r = c.fetch(post("/v1/chat/completions", "{}")).await;
        assert_same(&r.body, &concat(&sse_events(3)), "chat stream");
        let r = c.get("/missing?x=1").await;
        assert_eq!(r.status, 404);

        let m = metrics(relay.admin).await;
        assert_eq!(
            metric(
                &m,
                "sse_edge_requests_total",
                &[("route", "default"), ("status", "200")]
            ),
            Some(2.0),
            "{m}"
        );
        assert_eq!(
            metric(
                &m,
                "sse_edge_requests_total",
                &[("route", "default"), ("status", "404")]
            ),
            Some(1.0)
        );
        assert_eq!(metric(&m, "sse_edge_active_streams", &[]), Some(0.0));
        let origin = [("origin", url.as_str())];
        for name in [
            "sse_edge_upstream_connections",
            "sse_edge_upstream_idle_connections",
            "sse_edge_upstream_h2_streams",
            "sse_edge_upstream_connects_total",
            "sse_edge_upstream_reuses_total",
        ] {
            assert!(metric(&m, name, &origin).is_some(), "{name} missing:\n{m}");
        }
        assert_eq!(
            metric(&m, "sse_edge_upstream_connections", &origin),
            Some(1.0)
        );
        assert_eq!(
            metric(&m, "sse_edge_upstream_reuses_total", &origin),
            Some(2.0)
        );
        assert!(m.contains("# TYPE sse_edge_active_streams gauge"));

        // A stream in flight shows up in active_streams.
        let res = c
            .send(Request::post("/slow").body(full("{}")).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let reader = tokio::spawn(read_frames(res.into_body()));
        let m = metrics(relay.admin).await;
        assert_eq!(metric(&m, "sse_edge_active_streams", &[]), Some(1.0), "{m}");
        let (frames, err) = reader.await.unwrap();
        assert!(err.is_none());
        assert_same(&joined(&frames), &concat(&sse_events(4)), "slow stream");
        let m = metrics(relay.admin).await;
        assert_eq!(metric(&m, "sse_edge_active_streams", &[]), Some(0.0));

        relay.sigterm();
        let status = relay.wait_exit(Duration::from_secs(10)).await;
        assert!(status.success());

        let stdout = relay.stdout();
        let lines: Vec<serde_json::Value> = stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
            .collect();
        assert_eq!(lines.len(), 4, "one line per request:\n{stdout}");
        for l in &lines {
            for field in [
                "ts",
                "method",
                "path",
                "route",
                "status",
                "dialect",
                "ttfb_ms",
                "duration_ms",
                "bytes_out",
                "outcome",
                "upstream_attempts",
            ] {
                assert!(l.get(field).is_some(), "field {field} missing in {l}");
            }
            assert_eq!(l["route"], "default");
            assert_eq!(l["outcome"], "complete");
            assert_eq!(l["upstream_attempts"], 1);
            assert!(l["ts"].as_str().unwrap().ends_with('Z'));
            assert!(l["duration_ms"].as_f64().unwrap() >= l["ttfb_ms"].as_f64().unwrap());
        }
        let models = &lines[0];
        assert_eq!(models["method"], "GET");
        assert_eq!(models["path"], "/v1/models");
        assert_eq!(models["status"], 200);
        assert_eq!(models["dialect"], "generic");
        assert_eq!(models["bytes_out"], r#"{"data":[]}"#.len());
        let chat = &lines[1];
        assert_eq!(chat["method"], "POST");
        assert_eq!(chat["path"], "/v1/chat/completions");
        assert_eq!(chat["dialect"], "openai");
        assert_eq!(chat["bytes_out"], concat(&sse_events(3)).len());
        let missing = &lines[2];
        assert_eq!(missing["status"], 404);
        assert_eq!(missing["path"], "/missing");
    })
    .await;
}

// ---------------------------------------------------------------- the command line

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_flag_gets_a_suggestion() {
    within(async {
        let out = run_bin(
            &["--upstream", "http://127.0.0.1:9", "--heartbat", "5s"],
            &[],
        )
        .await;
        assert_eq!(out.status.code(), Some(2), "stderr: {}", out.stderr);
        assert!(
            out.stderr
                .contains("tip: a similar argument exists: '--heartbeat'"),
            "stderr: {}",
            out.stderr
        );
    })
    .await;
}

/// The README's configuration example (the first ```toml block under
/// "## Configuration"), checked as the README says to check it: with
/// stand-ins for its TLS files named by `SSE_EDGE_TLS_CERT` and
/// `SSE_EDGE_TLS_KEY`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_configuration_example_passes_check_config() {
    within(async {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md is readable");
        let section = readme
            .split_once("\n## Configuration\n")
            .map(|(_, rest)| rest)
            .expect("README has a Configuration section");
        let example = section
            .split_once("```toml\n")
            .and_then(|(_, rest)| rest.split_once("\n```"))
            .map(|(toml, _)| toml)
            .expect("the Configuration section has a ```toml example");
        let stand_ins = "SSE_EDGE_TLS_CERT=/tmp/tls.crt SSE_EDGE_TLS_KEY=/tmp/tls.key";
        assert!(
            section.contains(stand_ins),
            "the README no longer says how to check its example ({stand_ins})"
        );

        let dir = TempDir::new("readme");
        let file = dir.write("sse-edge.toml", example.as_bytes());
        let file = file.to_str().unwrap();
        // As written, the TLS files it names must exist.
        let out = run_bin(&["check-config", file], &[]).await;
        assert!(!out.status.success(), "stdout: {}", out.stdout);
        assert!(
            error_line(&out.stderr, &["tls.cert", "cannot read file"]).is_some(),
            "stderr: {}",
            out.stderr
        );
        // With the stand-ins the README names, it checks cleanly.
        let cert = dir.write("tls.crt", b"");
        let key = dir.write("tls.key", b"");
        let env = [
            ("SSE_EDGE_TLS_CERT", cert.to_str().unwrap()),
            ("SSE_EDGE_TLS_KEY", key.to_str().unwrap()),
        ];
        let out = run_bin(&["check-config", file], &env).await;
        assert!(out.status.success(), "stderr: {}", out.stderr);
        for needle in ["prefix = \"/openai\"", "https://api.anthropic.com"] {
            assert!(out.stdout.contains(needle), "{needle}:\n{}", out.stdout);
        }
    })
    .await;
}

// ---------------------------------------------------------------- open files

/// The default `server.max_connections` for an open-file limit, as
/// src/config/nofile.rs derives it: (limit - reserve) / 2, the reserve
/// 256 descriptors or a quarter of the limit.
fn room(limit: u64) -> u64 {
    (limit - (limit / 4).min(256)) / 2
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_file_limit_is_raised_and_sets_max_connections() {
    within(async {
        let dir = TempDir::new("nofile");
        let file = dir.write(
            "relay.toml",
            b"[[route]]\nupstream = \"http://127.0.0.1:9\"\n",
        );
        let file = file.to_str().unwrap();
        let (soft, hard) = (100, 300);
        let room = room(hard);
        assert_eq!(room, 112);

        // Started with a soft limit of 100, the relay raises it to the hard
        // 300: check-config shows the default that leaves room for.
        let out = run_command(
            bin_command_with_nofile(soft, hard),
            &["check-config", file],
            &[],
        )
        .await;
        assert!(out.status.success(), "stderr: {}", out.stderr);
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with("max_connections = "))
            .unwrap_or_else(|| panic!("no max_connections in:\n{}", out.stdout));
        assert!(
            line.starts_with(&format!("max_connections = {room} "))
                && line.ends_with("# from default: (open-file limit 300 - reserve 75) / 2"),
            "{line}"
        );

        // What fits is taken; one more is refused, in one line naming the
        // key, the value and the limit.
        let fits = room.to_string();
        let args = ["check-config", file, "--server-max-connections", &fits];
        let out = run_command(bin_command_with_nofile(soft, hard), &args, &[]).await;
        assert!(out.status.success(), "stderr: {}", out.stderr);
        let over = (room + 1).to_string();
        let args = ["--config", file, "--server-max-connections", &over];
        let out = run_command(bin_command_with_nofile(soft, hard), &args, &[]).await;
        assert_eq!(out.status.code(), Some(2), "stderr: {}", out.stderr);
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
        let quoted = format!("\"{over}\"");
        let needles = [
            "server.max_connections",
            &quoted,
            "open-file limit (300) leaves room for 112",
        ];
        assert!(
            error_line(&out.stderr, &needles).is_some(),
            "stderr: {}",
            out.stderr
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_small_open_file_limit_clients_past_max_connections_get_503() {
    within(async {
        let up = Upstream::streaming(Mode::Http1, 100_000, Duration::from_millis(500)).await;
        let url = up.url();
        let (soft, hard) = (64, 256);
        let relay = RelayProc::spawn_with_nofile(soft, hard, &["--upstream", &url]).await;
        let max = room(hard);
        assert!(
            relay.stderr().contains(&format!(
                "open-file limit raised from {soft} to {hard}; server.max_connections {max}"
            )),
            "stderr: {}",
            relay.stderr()
        );

        // Every connection the default admits relays a stream (two
        // descriptors each: the client's and the upstream's).
        let mut live = Vec::new();
        for _ in 0..max {
            let mut c = Client::h1(relay.listen).await;
            let res = c.send(post("/v1/chat/completions", "{}")).await.unwrap();
            assert_eq!(res.status(), 200);
            let mut body = res.into_body();
            http_body_util::BodyExt::frame(&mut body)
                .await
                .unwrap()
                .unwrap();
            live.push((c, body));
        }
        // The next client is answered 503 at once, not left in the backlog.
        let raw = format!("GET /v1/models HTTP/1.1\r\nHost: {}\r\n\r\n", relay.listen);
        let reply = tokio::time::timeout(
            Duration::from_secs(3),
            raw_exchange(relay.listen, raw.as_bytes()),
        )
        .await
        .expect("the client past max_connections gets an answer");
        assert_eq!(raw_status(&reply), 503, "{reply}");
        assert!(
            reply.to_ascii_lowercase().contains("retry-after: 1"),
            "{reply}"
        );
        let m = metrics(relay.admin).await;
        assert_eq!(
            metric(&m, "sse_edge_connections_refused_total", &[]),
            Some(1.0)
        );
        // The admitted streams go on.
        for (_, body) in &mut live {
            http_body_util::BodyExt::frame(body).await.unwrap().unwrap();
        }
        assert!(
            !relay.stderr().contains("accept failed"),
            "descriptors ran out: {}",
            relay.stderr()
        );
    })
    .await;
}

/// User plus system CPU time of process `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(100);
    Duration::from_millis(ticks * 1000 / per_second)
}

/// Waits (at most 5 s) until the relay's stderr holds `line`.
async fn logged(relay: &RelayProc, line: &str) {
    let start = Instant::now();
    while !relay.stderr().contains(line) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no {line:?} within 5 s; stderr: {}",
            relay.stderr()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_loops_back_off_while_descriptors_run_out() {
    within(async {
        let up = Upstream::ok(Mode::Http1).await;
        let url = up.url();
        let mut relay = RelayProc::spawn_with_nofile(64, 64, &["--upstream", &url]).await;

        // Idle admin connections take every descriptor the relay has left
        // (the admin listener has no connection limit); the rest wait in
        // its backlog, so its accept loop fails (EMFILE) at every try ...
        let mut held = Vec::new();
        for _ in 0..80 {
            held.push(TcpStream::connect(relay.admin).await.unwrap());
        }
        logged(&relay, "admin listener: accept failed").await;
        // ... and so does the client listener's, once a client waits in
        // its backlog.
        let waiting = TcpStream::connect(relay.listen).await.unwrap();
        logged(&relay, "client listener: accept failed").await;

        // Neither loop spins: the process stays nearly idle ...
        let before = cpu_time(relay.pid());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let used = cpu_time(relay.pid()) - before;
        assert!(
            used < Duration::from_millis(300),
            "{used:?} of CPU in one second while descriptors ran out"
        );
        // ... and each says so once, not every 50 ms.
        let stderr = relay.stderr();
        assert_eq!(stderr.matches("accept failed").count(), 2, "{stderr}");
        assert!(stderr.contains("Too many open files"), "{stderr}");

        // Descriptors back: /metrics answers at once, and the waiting
        // client was taken.
        drop(held);
        let start = Instant::now();
        loop {
            let probe = tokio::time::timeout(
                Duration::from_secs(1),
                try_fetch(relay.admin, get("/metrics")),
            )
            .await;
            if let Ok(Ok(r)) = probe {
                assert_eq!(r.status, 200);
                let connections = metric(&r.text(), "sse_edge_connections_total", &[]);
                if connections == Some(1.0) {
                    break;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "the relay did not recover: {}",
                relay.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(waiting);
        relay.sigterm();
        assert!(relay.wait_exit(Duration::from_secs(10)).await.success());
    })
    .await;
}
