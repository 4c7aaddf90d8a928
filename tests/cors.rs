//! CORS at the edge over real sockets (the browser's side of it is in
//! `tests/browser.rs`): preflights answered by the relay without keys and
//! without an upstream round trip; the policy on relayed, early-committed,
//! relay-made (401, 429, 502, 503), resumed and `json_keepalive` answers,
//! replacing the upstream's own CORS fields; a disallowed origin gets
//! none; a route without a policy passes the upstream's through and holds
//! early commit for cross-origin requests.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod support;

use std::time::{Duration, Instant};

use http::{HeaderValue, Method, Request};
use http_body_util::BodyExt;
use sse_edge::cli::{Invocation, from_args};
use sse_edge::{key_digest as digest, key_hex as hex};
use support::*;

const APP: &str = "https://app.example";
const KEY: &str = "sk-edge-browser-0123456789";
/// The upstream's silence before a slow answer's head: well past the
/// relay's heartbeat (`HB`).
const SLOW: Duration = Duration::from_millis(800);
const HB: &str = "150ms";

/// The upstream: `/slow/*` answers after [`SLOW`], the rest at once;
/// streaming requests get three events and `[DONE]`, others JSON; every
/// answer carries CORS fields of its own that the relay must replace.
async fn upstream() -> Upstream {
    Upstream::start(Mode::Http1, |r| async move {
        if r.target.starts_with("/slow") {
            tokio::time::sleep(SLOW).await;
        }
        let own = [
            ("access-control-allow-origin", "*"),
            ("access-control-expose-headers", "x-upstream-secret"),
            ("vary", "accept-encoding"),
        ];
        if r.body.windows(13).any(|w| w == b"\"stream\":true") {
            let events = concat(&sse_events(4));
            let mut headers = vec![("content-type", "text/event-stream")];
            headers.extend(own);
            response(200, &headers, full(events))
        } else {
            let mut headers = vec![("content-type", "application/json")];
            headers.extend(own);
            response(200, &headers, full(r#"{"ok":true}"#))
        }
    })
    .await
}

struct Edge {
    relay: sse_edge::Running,
    log: CapturedLog,
    up: Upstream,
    _dir: TempDir,
}

/// Routes: `/p` (policy, client keys, resumption, json_keepalive), `/open`
/// (policy, `max_requests`-free), `/limited` (policy, 1 request an hour),
/// `/down` (policy, nothing listening), `/plain` (no policy).
async fn edge(extra_args: &[&str]) -> Edge {
    let up = upstream().await;
    let dir = TempDir::new("cors");
    let keys = dir.write(
        "keys",
        format!("{}\n", hex(&digest(KEY.as_bytes()))).as_bytes(),
    );
    let (url, down) = (up.url(), format!("http://{}", closed_port_addr()));
    let policy = format!(
        "cors = {{ allow_origins = [\"{APP}\", \"https://*.example.com\"], expose_headers = [\"x-up\"] }}"
    );
    let route = |prefix: &str, url: &str, extra: &str| {
        format!(
            "\n[[route]]\nprefix = \"{prefix}\"\nstrip_prefix = true\nupstream = \"{url}\"\n{extra}\n"
        )
    };
    let toml = [
        format!("heartbeat = \"{HB}\"\n"),
        route(
            "/p",
            &url,
            &format!(
                "{policy}\nauth_keys_file = \"{}\"\nresume = {{ window = \"10s\" }}\njson_keepalive = true",
                keys.display()
            ),
        ),
        route("/open", &url, &policy),
        route("/limited", &url, &format!("{policy}\nrate_limit = \"1/h\"")),
        route("/down", &down, &format!("{policy}\nretry_attempts = 0")),
        route("/plain", &url, "json_keepalive = true"),
    ]
    .concat();
    let file = dir.write("sse-edge.toml", toml.as_bytes());
    let mut args = vec![
        "sse-edge",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--config",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra_args);
    let config = match from_args(args, &|_| None) {
        Ok(Invocation::Run(c)) => c,
        Ok(_) => panic!("not a run"),
        Err(e) => panic!("{e}\n{toml}"),
    };
    let (relay, log) = start_with_log(config).await;
    Edge {
        relay,
        log,
        up,
        _dir: dir,
    }
}

fn request(method: Method, path: &str, body: &str, headers: &[(&str, &str)]) -> Request<TestBody> {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, HeaderValue::from_str(v).unwrap());
    }
    req.body(full(body.to_owned())).unwrap()
}

fn stream_body() -> &'static str {
    STREAM_REQ
}

impl Edge {
    async fn send(&self, req: Request<TestBody>) -> Resp {
        within(fetch_once(self.relay.listen, req)).await
    }

    async fn post(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> Resp {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.send(request(Method::POST, path, body, &all)).await
    }
}

/// The fields an allowed origin's answer carries, and none of the
/// upstream's.
fn granted(r: &Resp, origin: &str) {
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some(origin),
        "{r:?}"
    );
    let expose = r
        .header("access-control-expose-headers")
        .unwrap_or_default();
    for field in [
        "x-up",
        "sse-edge-error",
        "retry-after",
        "sse-edge-early-commit",
    ] {
        assert!(
            expose.split(", ").any(|f| f == field),
            "{field} in {expose}"
        );
    }
    assert!(!expose.contains("x-upstream-secret"), "{expose}");
    assert!(r.header("access-control-allow-credentials").is_none());
    assert!(
        r.headers.get_all("vary").iter().any(|v| v == "origin"),
        "{:?}",
        r.headers
    );
}

fn nothing_granted(r: &Resp) {
    for (name, _) in &r.headers {
        assert!(
            !name.as_str().starts_with("access-control-"),
            "{name} on {r:?}"
        );
    }
}

#[tokio::test]
async fn preflights_are_answered_by_the_relay_without_keys() {
    let mut e = edge(&[]).await;
    let asked = [
        ("origin", APP),
        ("access-control-request-method", "POST"),
        (
            "access-control-request-headers",
            "authorization, content-type",
        ),
    ];
    let ok = e
        .send(request(
            Method::OPTIONS,
            "/p/v1/chat/completions",
            "",
            &asked,
        ))
        .await;
    assert_eq!(ok.status, 204, "{ok:?}");
    assert_eq!(ok.header("access-control-allow-origin"), Some(APP));
    assert_eq!(ok.header("access-control-allow-methods"), Some("GET, POST"));
    let allowed = ok.header("access-control-allow-headers").unwrap();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"));
    assert_eq!(ok.header("access-control-max-age"), Some("600"));
    assert!(ok.body.is_empty());

    let sub = [("origin", "https://chat.eu.example.com"), asked[1]];
    let ok = e.send(request(Method::OPTIONS, "/open/x", "", &sub)).await;
    assert_eq!(
        ok.header("access-control-allow-origin"),
        Some("https://chat.eu.example.com")
    );

    for origin in ["https://evil.example", "https://example.com", "null"] {
        let no = e
            .send(request(
                Method::OPTIONS,
                "/p/v1/chat/completions",
                "",
                &[("origin", origin), asked[1]],
            ))
            .await;
        assert_eq!(no.status, 403, "{origin}: {no:?}");
        assert_eq!(no.header("sse-edge-error"), Some("cors_origin_refused"));
        nothing_granted(&no);
    }
    // A plain OPTIONS (no Access-Control-Request-Method) is no preflight:
    // it goes through auth like any request.
    let plain = e
        .send(request(Method::OPTIONS, "/p/x", "", &[("origin", APP)]))
        .await;
    assert_eq!(plain.status, 401);
    assert!(e.up.requests().is_empty(), "{:?}", e.up.requests());
    let line = e
        .log
        .find("for the preflight", |v| {
            v["method"] == "OPTIONS" && v["status"] == 204
        })
        .await
        .unwrap();
    assert_eq!(line["route"], "/p");
    assert_eq!(line["outcome"], "complete");
    let m = metrics(e.relay.admin).await;
    let count = |status| {
        metric(
            &m,
            "sse_edge_requests_total",
            &[("route", "/p"), ("status", status)],
        )
    };
    assert_eq!(count("204"), Some(1.0), "{m}");
    assert_eq!(count("403"), Some(3.0), "{m}");
    stop_relay(e.relay).await;
}

#[tokio::test]
async fn relayed_and_early_committed_answers_carry_the_policy_instead_of_the_upstreams() {
    let e = edge(&[]).await;
    let auth = format!("Bearer {KEY}");
    let headers = [("origin", APP), ("authorization", auth.as_str())];
    let fast = e
        .post("/p/v1/chat/completions", r#"{"model":"m"}"#, &headers)
        .await;
    assert_eq!(fast.status, 200);
    granted(&fast, APP);
    assert_eq!(
        fast.header("vary"),
        Some("accept-encoding"),
        "upstream's Vary kept"
    );

    let start = Instant::now();
    let mut client = Client::h1(e.relay.listen).await;
    let mut req = request(Method::POST, "/p/slow/chat", stream_body(), &headers);
    req.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    let res = client.send(req).await.unwrap();
    assert!(
        start.elapsed() < SLOW,
        "committed before the upstream's head"
    );
    assert_eq!(res.headers()["sse-edge-early-commit"], "1");
    let r = collect(res).await;
    granted(&r, APP);
    assert!(r.header("sse-edge-stream-id").is_some());
    let expose = r.header("access-control-expose-headers").unwrap();
    assert!(expose.contains("sse-edge-stream-id"), "{expose}");
    assert!(r.text().contains("data: [DONE]"), "{}", r.text());

    // json_keepalive: a slow non-streaming answer, committed early too.
    let r = e.post("/p/slow/json", r#"{"model":"m"}"#, &headers).await;
    assert_eq!(r.header("sse-edge-early-commit"), Some("1"));
    granted(&r, APP);
    assert_eq!(r.text().trim_start(), r#"{"ok":true}"#);

    // A disallowed origin is relayed all the same, but granted nothing:
    // not ours, and not the upstream's `*` either.
    let evil = [("origin", "https://evil.example"), headers[1]];
    let r = e
        .post("/p/v1/chat/completions", r#"{"model":"m"}"#, &evil)
        .await;
    assert_eq!(r.status, 200);
    nothing_granted(&r);
    assert_eq!(r.headers.get_all("vary").iter().count(), 2);
    stop_relay(e.relay).await;
}

#[tokio::test]
async fn relay_made_errors_carry_the_policy() {
    let e = edge(&["--server-max-requests", "1"]).await;
    let origin = [("origin", "https://a.example.com")];
    let r = e.post("/p/v1/chat/completions", "{}", &origin).await;
    assert_eq!(r.status, 401);
    granted(&r, "https://a.example.com");
    assert_eq!(r.json()["error"]["code"], "invalid_api_key");

    assert_eq!(e.post("/limited/x", "{}", &origin).await.status, 200);
    let r = e.post("/limited/x", "{}", &origin).await;
    assert_eq!(r.status, 429);
    granted(&r, "https://a.example.com");
    assert!(r.header("retry-after").is_some());

    let r = e
        .post("/down/v1/chat/completions", stream_body(), &origin)
        .await;
    assert_eq!(r.status, 502, "{}", r.text());
    granted(&r, "https://a.example.com");
    assert_eq!(r.header("sse-edge-error"), Some("upstream_unreachable"));

    // 503 overloaded: one stream holds the only request slot.
    let mut held = Client::h1(e.relay.listen).await;
    let res = held
        .send(request(
            Method::POST,
            "/open/slow/x",
            stream_body(),
            &[("content-type", "application/json")],
        ))
        .await
        .unwrap();
    let r = e.post("/open/x", "{}", &origin).await;
    assert_eq!(r.status, 503);
    granted(&r, "https://a.example.com");
    drop(res);
    stop_relay(e.relay).await;
}

#[tokio::test]
async fn the_resume_endpoint_takes_the_policy_of_the_streams_route() {
    let e = edge(&[]).await;
    let auth = format!("Bearer {KEY}");
    let headers = [("origin", APP), ("authorization", auth.as_str())];
    let first = e
        .post("/p/v1/chat/completions", stream_body(), &headers)
        .await;
    let token = first.header("sse-edge-stream-id").unwrap().to_owned();
    let path = format!("/sse-edge/streams/{token}");

    let preflight = [
        ("origin", APP),
        ("access-control-request-method", "GET"),
        ("access-control-request-headers", "last-event-id"),
    ];
    let r = e
        .send(request(Method::OPTIONS, &path, "", &preflight))
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some(APP));

    let get = [
        headers[0],
        headers[1],
        ("last-event-id", &format!("{token}:2")),
    ];
    let r = e.send(request(Method::GET, &path, "", &get)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    granted(&r, APP);
    assert!(r.text().contains(&format!("id: {token}:3")), "{}", r.text());

    // Unknown stream: the first resumable route with a policy that allows
    // the origin speaks for it, so the 404 is readable.
    let unknown = "/sse-edge/streams/0123456789abcdef0123456789abcdef";
    let r = e.send(request(Method::GET, unknown, "", &headers)).await;
    assert_eq!(r.status, 404);
    granted(&r, APP);
    let r = e
        .send(request(
            Method::GET,
            unknown,
            "",
            &[("origin", "https://evil.example")],
        ))
        .await;
    assert_eq!(r.status, 404);
    nothing_granted(&r);
    stop_relay(e.relay).await;
}

/// Reads the head of a streaming POST and says how long it took.
async fn head_after(e: &Edge, path: &str, headers: &[(&str, &str)]) -> (Duration, Resp) {
    let start = Instant::now();
    let mut client = Client::h1(e.relay.listen).await;
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let res = client
        .send(request(Method::POST, path, stream_body(), &all))
        .await
        .unwrap();
    let took = start.elapsed();
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let r = Resp {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body,
    };
    (took, r)
}

#[tokio::test]
async fn without_a_policy_cross_origin_requests_wait_for_the_upstreams_head() {
    let e = edge(&[]).await;
    // No Origin, or a same-origin request: committed early as ever.
    for headers in [
        &[][..],
        &[("origin", APP), ("sec-fetch-site", "same-origin")][..],
    ] {
        let (took, r) = head_after(&e, "/plain/slow/x", headers).await;
        assert!(took < SLOW, "{headers:?}: {took:?}");
        assert_eq!(r.header("sse-edge-early-commit"), Some("1"));
        nothing_granted(&r);
    }
    // Cross-origin: the upstream's head, with its own CORS fields.
    for headers in [
        &[("origin", APP)][..],
        &[("origin", APP), ("sec-fetch-site", "cross-site")][..],
    ] {
        let (took, r) = head_after(&e, "/plain/slow/x", headers).await;
        assert!(took >= SLOW, "{headers:?}: {took:?}");
        assert_eq!(r.header("sse-edge-early-commit"), None);
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        assert_eq!(
            r.header("access-control-expose-headers"),
            Some("x-upstream-secret")
        );
        assert!(r.text().contains("data: [DONE]"));
    }
    // json_keepalive is held the same way.
    let start = Instant::now();
    let r = e.post("/plain/slow/json", "{}", &[("origin", APP)]).await;
    assert!(start.elapsed() >= SLOW);
    assert_eq!(r.header("sse-edge-early-commit"), None);
    assert_eq!(r.text(), r#"{"ok":true}"#);
    // A preflight on such a route is the upstream's to answer.
    let preflight = [("origin", APP), ("access-control-request-method", "POST")];
    let r = e
        .send(request(Method::OPTIONS, "/plain/x", "", &preflight))
        .await;
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(e.up.requests().iter().any(|r| r.method == Method::OPTIONS));
    stop_relay(e.relay).await;
}

/// The README's policy examples (the ```toml blocks under "## Browser
/// clients") load, and mean what the section says.
#[test]
fn the_readme_policy_examples_load() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md is readable");
    let section = readme
        .split_once("\n## Browser clients\n")
        .and_then(|(_, rest)| rest.split_once("\n## "))
        .map(|(section, _)| section)
        .expect("README has a Browser clients section");
    let blocks: Vec<&str> = section
        .split("```toml\n")
        .skip(1)
        .filter_map(|b| b.split_once("\n```").map(|(toml, _)| toml))
        .collect();
    let [route, table] = blocks[..] else {
        panic!("two ```toml examples: {blocks:?}")
    };
    let dir = TempDir::new("readme-cors");
    let toml = format!(
        "{route}\n\n[[route]]\nprefix = \"/b\"\nupstream = \"https://api.anthropic.com\"\n{table}\n"
    );
    let file = dir.write("sse-edge.toml", toml.as_bytes());
    let args = ["sse-edge", "check-config", file.to_str().unwrap()];
    let Ok(Invocation::CheckConfig { config, rendered }) = from_args(args, &|_| None) else {
        panic!("the README's examples do not load:\n{toml}");
    };
    let [a, b] = &config.routes[..] else {
        panic!("{:?}", config.routes)
    };
    let a = a.cors.as_ref().unwrap();
    assert!(a.origins.allows(b"https://app.example"));
    assert!(a.origins.allows(b"https://pr-12.preview.example"));
    assert!(!a.origins.allows(b"https://preview.example"));
    let b = b.cors.as_ref().unwrap();
    assert!(b.origins.allows(b"http://localhost:5173"));
    assert_eq!(b.max_age, Duration::from_secs(600));
    assert!(rendered.contains("sse-edge-stream-id"), "{rendered}");
}
