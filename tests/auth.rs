//! Edge auth end to end over real sockets: client keys (Bearer and
//! x-api-key), upstream credential injection, 401/429 in each dialect's
//! shape, keys-file rotation, per-key and per-address rate limits, and
//! keys never reaching the logs.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod support;

use std::process::Stdio;
use std::time::Duration;

use http::{HeaderValue, Request};
use sse_edge::AccessLog;
use sse_edge::cli::{CliError, Invocation, from_args};
use sse_edge::{key_digest as digest, key_hex as hex};
use support::*;
use tokio::io::AsyncWriteExt;

const ALICE: &str = "sk-edge-alice-0123456789";
const BOB: &str = "sk-edge-bob-9876543210";
const CAROL: &str = "sk-edge-carol-5555555555";
const RELAY_OPENAI: &str = "sk-provider-openai-SECRET";
const RELAY_ANTHROPIC: &str = "sk-ant-provider-SECRET";
const CHAT: &str = "/v1/chat/completions";
const MESSAGES: &str = "/v1/messages";
const BODY: &str = r#"{"model":"m","messages":[]}"#;

fn keys_file(entries: &[(&str, Option<&str>)]) -> String {
    let mut out = String::from("# test keys\n\n");
    for (key, label) in entries {
        out.push_str(&hex(&digest(key.as_bytes())));
        if let Some(l) = label {
            out.push(' ');
            out.push_str(l);
        }
        out.push('\n');
    }
    out
}

/// A relay from a config file (`--listen`/`--admin` on port 0), with its
/// environment given explicitly and its access log captured.
struct Edge {
    relay: sse_edge::Running,
    log: CapturedLog,
}

fn load(dir: &TempDir, toml: &str, env: &[(&str, &str)]) -> Result<Invocation, CliError> {
    let config = dir.write("sse-edge.toml", toml.as_bytes());
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let args = [
        "sse-edge",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
    ];
    let args = args
        .into_iter()
        .chain(["--config", config.to_str().unwrap()]);
    from_args(args, &move |k| {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
}

async fn start(dir: &TempDir, toml: &str, env: &[(&str, &str)]) -> Edge {
    let config = match load(dir, toml, env) {
        Ok(Invocation::Run(c)) => c,
        Ok(_) => panic!("not a run invocation"),
        Err(e) => panic!("bad config: {e}\n{toml}"),
    };
    let (relay, log) = start_with_log(config).await;
    Edge { relay, log }
}

impl Edge {
    async fn send(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req: Request<TestBody> = post(path, BODY);
        for (k, v) in headers {
            let name = http::HeaderName::from_bytes(k.as_bytes()).unwrap();
            req.headers_mut()
                .append(name, HeaderValue::from_str(v).unwrap());
        }
        within(fetch_once(self.relay.listen, req)).await
    }

    fn log_lines(&mut self, n: usize) -> Vec<String> {
        (0..n).map(|_| self.log.next_line()).collect()
    }
}

fn route(prefix: &str, up: &Upstream, extra: &str) -> String {
    let url = up.url();
    format!("\n[[route]]\nprefix = \"{prefix}\"\nupstream = \"{url}\"\n{extra}\n")
}

#[tokio::test]
async fn valid_keys_reach_the_upstream_with_the_relays_key() {
    let up = Upstream::ok(Mode::Http1).await;
    let dir = TempDir::new("inject");
    let keys = dir.write(
        "keys",
        keys_file(&[(ALICE, Some("alice")), (BOB, None)]).as_bytes(),
    );
    let keys = keys.to_str().unwrap();
    let toml = [
        route(
            "/",
            &up,
            &format!("auth_keys_file = \"{keys}\"\nupstream_key_env = \"OAI\""),
        ),
        route(
            "/anthropic",
            &up,
            &format!(
                "strip_prefix = true\nauth_keys_file = \"{keys}\"\nupstream_key_env = \"ANT\"\n\
                 upstream_key_header = \"x-api-key\""
            ),
        ),
    ]
    .concat();
    let mut edge = start(
        &dir,
        &toml,
        &[("OAI", RELAY_OPENAI), ("ANT", RELAY_ANTHROPIC)],
    )
    .await;
    let bearer = format!("Bearer {ALICE}");
    assert_eq!(
        edge.send(CHAT, &[("authorization", &bearer)]).await.status,
        200
    );
    assert_eq!(edge.send(CHAT, &[("x-api-key", BOB)]).await.status, 200);
    let both = [("x-api-key", ALICE), ("authorization", bearer.as_str())];
    let anth = format!("/anthropic{MESSAGES}");
    assert_eq!(edge.send(&anth, &both).await.status, 200);
    let seen = up.requests();
    assert_eq!(seen.len(), 3);
    for r in &seen[..2] {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {RELAY_OPENAI}").as_str())
        );
        assert_eq!(r.header("x-api-key"), None);
        assert_eq!(r.headers.get_all("authorization").iter().count(), 1);
    }
    assert_eq!(seen[2].target, MESSAGES);
    assert_eq!(seen[2].header("x-api-key"), Some(RELAY_ANTHROPIC));
    assert_eq!(seen[2].header("authorization"), None);
    let lines = edge.log_lines(3).join("\n");
    let bob_id = &hex(&digest(BOB.as_bytes()))[..8];
    assert!(
        lines.contains("\"key\":\"alice\"") && lines.contains(&format!("\"key\":\"{bob_id}\""))
    );
    stop_relay(edge.relay).await;
}

#[tokio::test]
async fn without_injection_the_clients_key_is_forwarded() {
    let up = Upstream::ok(Mode::Http1).await;
    let dir = TempDir::new("forward");
    let keys = dir.write("keys", keys_file(&[(ALICE, Some("alice"))]).as_bytes());
    let extra = format!("auth_keys_file = \"{}\"", keys.display());
    let edge = start(&dir, &route("/", &up, &extra), &[]).await;
    let bearer = format!("Bearer {ALICE}");
    assert_eq!(
        edge.send(CHAT, &[("authorization", &bearer)]).await.status,
        200
    );
    assert_eq!(
        edge.send(MESSAGES, &[("x-api-key", ALICE)]).await.status,
        200
    );
    let seen = up.requests();
    assert_eq!(seen[0].header("authorization"), Some(bearer.as_str()));
    assert_eq!(seen[1].header("x-api-key"), Some(ALICE));
    stop_relay(edge.relay).await;
}

#[tokio::test]
async fn missing_or_unknown_keys_get_401_in_the_dialects_shape() {
    let up = Upstream::ok(Mode::Http1).await;
    let dir = TempDir::new("401");
    let keys = dir.write("keys", keys_file(&[(ALICE, Some("alice"))]).as_bytes());
    let extra = format!("name = \"edge\"\nauth_keys_file = \"{}\"", keys.display());
    let edge = start(&dir, &route("/", &up, &extra), &[]).await;
    let wrong = format!("Bearer {BOB}");
    let cases: [(&str, &[(&str, &str)]); 4] = [
        (CHAT, &[]),
        (CHAT, &[("authorization", &wrong)]),
        (MESSAGES, &[("x-api-key", BOB)]),
        (MESSAGES, &[("authorization", "Basic YWxpY2U6cHc=")]),
    ];
    for (path, headers) in cases {
        let r = edge.send(path, headers).await;
        assert_eq!(r.status, 401, "{path} {headers:?}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert_eq!(r.header("sse-edge-error"), Some("invalid_api_key"));
        assert!(!r.text().contains(BOB), "{}", r.text());
        let j = r.json();
        if path == CHAT {
            let e = &j["error"];
            assert_eq!(e["type"], "invalid_request_error", "{j}");
            assert_eq!(e["code"], "invalid_api_key");
            assert!(e["param"].is_null() && e["message"].is_string());
        } else {
            assert_eq!(j["type"], "error", "{j}");
            assert_eq!(j["error"]["type"], "authentication_error");
            assert!(j["error"]["message"].is_string());
        }
    }
    assert_eq!(up.request_count(), 0, "the upstream is never contacted");
    let m = metrics(edge.relay.admin).await;
    assert_eq!(
        metric(&m, "sse_edge_auth_failures_total", &[("route", "edge")]),
        Some(4.0)
    );
    assert_eq!(
        metric(&m, "sse_edge_rate_limited_total", &[("route", "edge")]),
        Some(0.0)
    );
    stop_relay(edge.relay).await;
}

#[tokio::test]
async fn key_file_rotation_is_picked_up_and_bad_files_are_refused() {
    let up = Upstream::ok(Mode::Http1).await;
    let dir = TempDir::new("rotate");
    let keys = dir.write("keys", keys_file(&[(ALICE, None)]).as_bytes());
    let toml = format!(
        "auth_reload_interval = \"50ms\"\n{}",
        route(
            "/",
            &up,
            &format!("auth_keys_file = \"{}\"", keys.display())
        )
    );
    let edge = start(&dir, &toml, &[]).await;
    let alice = [("x-api-key", ALICE)];
    let bob = [("x-api-key", BOB)];
    assert_eq!(edge.send(CHAT, &alice).await.status, 200);
    assert_eq!(edge.send(CHAT, &bob).await.status, 401);
    dir.write("keys", keys_file(&[(BOB, Some("bob"))]).as_bytes());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while edge.send(CHAT, &bob).await.status != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "rotation not picked up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(edge.send(CHAT, &alice).await.status, 401);
    // A broken file (a pasted key, not a digest) keeps the keys in service.
    dir.write("keys", format!("{CAROL}\n").as_bytes());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(edge.send(CHAT, &bob).await.status, 200);
    assert_eq!(edge.send(CHAT, &[("x-api-key", CAROL)]).await.status, 401);
    stop_relay(edge.relay).await;
}

#[tokio::test]
async fn rate_limit_burst_then_429_then_refill() {
    let up = Upstream::ok(Mode::Http1).await;
    let dir = TempDir::new("limit");
    let keys = dir.write("keys", keys_file(&[(ALICE, None), (BOB, None)]).as_bytes());
    let extra = format!(
        "name = \"lim\"\nauth_keys_file = \"{}\"\nrate_limit = \"5/s\"",
        keys.display()
    );
    let edge = start(&dir, &route("/", &up, &extra), &[]).await;
    let alice = [("x-api-key", ALICE)];
    for i in 0..5 {
        assert_eq!(edge.send(CHAT, &alice).await.status, 200, "request {i}");
    }
    let r = edge.send(CHAT, &alice).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.header("sse-edge-error"), Some("rate_limit_exceeded"));
    let j = r.json();
    assert_eq!(j["error"]["type"], "rate_limit_error", "{j}");
    assert_eq!(j["error"]["code"], "rate_limit_exceeded");
    let r = edge.send(MESSAGES, &alice).await;
    assert_eq!(r.status, 429);
    let j = r.json();
    assert_eq!(
        (&j["type"], &j["error"]["type"]),
        (&"error".into(), &"rate_limit_error".into())
    );
    // Other keys have their own bucket.
    assert_eq!(edge.send(CHAT, &[("x-api-key", BOB)]).await.status, 200);
    assert_eq!(up.request_count(), 6);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    for i in 0..5 {
        assert_eq!(
            edge.send(CHAT, &alice).await.status,
            200,
            "after refill {i}"
        );
    }
    let m = metrics(edge.relay.admin).await;
    assert_eq!(
        metric(&m, "sse_edge_rate_limited_total", &[("route", "lim")]),
        Some(2.0)
    );
    stop_relay(edge.relay).await;
}

#[tokio::test]
async fn without_keys_the_limit_is_per_client_address() {
    let up = Upstream::ok(Mode::Http1).await;
    let dir = TempDir::new("per-ip");
    let extra = "rate_limit = \"1/m\"\nrate_limit_burst = 3";
    let mut edge = start(&dir, &route("/", &up, extra), &[]).await;
    for i in 0..3 {
        assert_eq!(edge.send(CHAT, &[]).await.status, 200, "request {i}");
    }
    // A key the route does not know about changes nothing: same address.
    let r = edge.send(CHAT, &[("x-api-key", ALICE)]).await;
    assert_eq!(r.status, 429);
    let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((59..=60).contains(&secs), "Retry-After {secs}");
    assert_eq!(up.request_count(), 3);
    let lines = edge.log_lines(4);
    assert!(lines.iter().all(|l| !l.contains("\"key\"")), "{lines:?}");
    stop_relay(edge.relay).await;
}

#[test]
fn start_is_refused_without_the_upstream_key() {
    let dir = TempDir::new("no-env");
    let toml = "[[route]]\nupstream = \"http://127.0.0.1:9\"\nupstream_key_env = \"OAI\"\n";
    for env in [&[][..], &[("OAI", "  ")][..]] {
        let Err(CliError::Invalid(msg)) = load(&dir, toml, env) else {
            panic!("accepted without OAI");
        };
        assert!(!msg.contains('\n'));
        assert!(
            msg.contains("route[0].upstream_key_env") && msg.contains("OAI"),
            "{msg}"
        );
    }
    let bad = [
        ("rate_limit = \"60/d\"", "route[0].rate_limit"),
        ("rate_limit = \"0/s\"", "route[0].rate_limit"),
        (
            "rate_limit_burst = 5",
            "route[0].rate_limit_burst is set but route[0].rate_limit",
        ),
        (
            "upstream_key_header = \"x-api-key\"",
            "route[0].upstream_key_header is set",
        ),
        (
            "auth_keys_file = \"/nonexistent/keys\"",
            "route[0].auth_keys_file",
        ),
    ];
    for (line, want) in bad {
        let toml = format!("[[route]]\nupstream = \"http://127.0.0.1:9\"\n{line}\n");
        let Err(CliError::Invalid(msg)) = load(&dir, &toml, &[]) else {
            panic!("accepted {line}");
        };
        assert!(msg.contains(want), "{line}: {msg}");
    }
}

/// The configuration holds the keys file's path; auth reads the file when
/// the routes are built at start, and check-config reads it too. Either
/// refuses a bad file in one line naming the key and the line, never its
/// text (which could be a pasted key).
#[tokio::test]
async fn a_bad_keys_file_refuses_the_start_and_check_config() {
    let dir = TempDir::new("bad-keys");
    let keys = dir.write("keys", format!("{ALICE}\n").as_bytes());
    let toml = format!(
        "[[route]]\nupstream = \"http://127.0.0.1:9\"\nauth_keys_file = \"{}\"\n",
        keys.display()
    );
    let why = "line 1: expected a 64-digit hex SHA-256 digest (see sse-edge hash-key)";
    let Ok(Invocation::Run(config)) = load(&dir, &toml, &[]) else {
        panic!("the path alone is valid");
    };
    let Err(e) = sse_edge::start(config, AccessLog::disabled()).await else {
        panic!("started with a bad keys file");
    };
    let path = format!("{:?}", keys.display().to_string());
    assert_eq!(
        e.to_string(),
        format!("route setup: invalid value for route[0].auth_keys_file: {path}: {why}")
    );
    let cfg = dir.write("c.toml", toml.as_bytes());
    let args = ["sse-edge", "check-config", cfg.to_str().unwrap()];
    let Err(CliError::Invalid(msg)) = from_args(args, &|_| None) else {
        panic!("check-config accepted a bad keys file");
    };
    let file = cfg.display();
    assert_eq!(
        msg,
        format!(
            "invalid value for route[0].auth_keys_file (from config file {file}): {path}: {why}"
        )
    );
    assert!(!msg.contains(ALICE));
}

#[test]
fn check_config_shows_auth_keys_but_never_the_secret() {
    let dir = TempDir::new("render");
    let keys = dir.write("keys", keys_file(&[(ALICE, None)]).as_bytes());
    let toml = format!(
        "[[route]]\nupstream = \"http://127.0.0.1:9\"\nauth_keys_file = \"{}\"\n\
         upstream_key_env = \"OAI\"\nrate_limit = \"60/m\"\n",
        keys.display()
    );
    let cfg = dir.write("c.toml", toml.as_bytes());
    let env = |k: &str| (k == "OAI").then(|| RELAY_OPENAI.to_owned());
    let args = ["sse-edge", "check-config", cfg.to_str().unwrap()];
    let Ok(Invocation::CheckConfig { config, rendered }) = from_args(args, &env) else {
        panic!("check-config failed");
    };
    for line in [
        &format!(
            "auth_keys_file = {:?}  # 1 key(s)",
            keys.display().to_string()
        ),
        "upstream_key_env = \"OAI\"",
        "upstream_key_header = \"authorization\"",
        "rate_limit = \"60/m\"",
        "rate_limit_burst = 60",
        "auth_reload_interval = \"10s\"",
    ] {
        assert!(rendered.contains(line), "{line} missing from\n{rendered}");
    }
    assert!(!rendered.contains("SECRET") && !format!("{config:?}").contains("SECRET"));
    let again = dir.write("again.toml", rendered.as_bytes());
    let args = ["sse-edge", "check-config", again.to_str().unwrap()];
    let Ok(Invocation::CheckConfig { config: c2, .. }) = from_args(args, &env) else {
        panic!("the rendering does not load");
    };
    assert_eq!(format!("{c2:?}"), format!("{config:?}"));
}

#[tokio::test]
async fn hash_key_prints_the_digest() {
    let mut cmd = bin_command();
    cmd.arg("hash-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{ALICE}\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = within(child.wait_with_output()).await.unwrap();
    assert!(out.status.success());
    let want = format!("{}\n", hex(&digest(ALICE.as_bytes())));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want);
    assert_eq!(
        hex(&digest(b"abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[tokio::test]
async fn keys_never_reach_the_access_log_or_stderr() {
    let up = Upstream::ok(Mode::Http1).await;
    let dir = TempDir::new("bin-logs");
    let keys = dir.write("keys", keys_file(&[(ALICE, Some("alice"))]).as_bytes());
    let extra = format!(
        "auth_keys_file = \"{}\"\nupstream_key_env = \"OAI\"\nrate_limit = \"2/m\"",
        keys.display()
    );
    let cfg = dir.write("c.toml", route("/", &up, &extra).as_bytes());
    let (listen, admin) = (free_port(), free_port());
    let (l, a) = (format!("127.0.0.1:{listen}"), format!("127.0.0.1:{admin}"));
    let child = bin_command()
        .args([
            "--listen",
            &l,
            "--admin",
            &a,
            "--log-level",
            "debug",
            "--config",
        ])
        .arg(&cfg)
        .env("OAI", RELAY_OPENAI)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let admin = a.parse().unwrap();
    let ready = async {
        while !matches!(try_fetch(admin, get("/readyz")).await, Ok(r) if r.status == 200) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    within(ready).await;
    let listen = l.parse().unwrap();
    let send = |h: &'static str, v: String| {
        let mut req = post(CHAT, BODY);
        req.headers_mut()
            .insert(h, HeaderValue::from_str(&v).unwrap());
        within(fetch_once(listen, req))
    };
    let statuses = [
        send("authorization", format!("Bearer {ALICE}"))
            .await
            .status,
        send("x-api-key", BOB.to_owned()).await.status,
        send("x-api-key", ALICE.to_owned()).await.status,
        send("x-api-key", ALICE.to_owned()).await.status,
    ];
    assert_eq!(statuses.map(|s| s.as_u16()), [200, 401, 200, 429]);
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(killed.unwrap().success());
    let out = within(child.wait_with_output()).await.unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    assert_eq!(stdout.matches("\"key\":\"alice\"").count(), 3, "{stdout}");
    assert!(
        stderr.contains("refused") && stderr.contains("rate limited"),
        "{stderr}"
    );
    for secret in [ALICE, BOB, RELAY_OPENAI, "SECRET"] {
        assert!(
            !stdout.contains(secret),
            "{secret} in the access log:\n{stdout}"
        );
        assert!(!stderr.contains(secret), "{secret} on stderr:\n{stderr}");
    }
}
