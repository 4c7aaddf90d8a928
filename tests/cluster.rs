//! Cluster mode (`[cluster]`) against a real `redis-server`: three relays
//! in this process share one Redis; a rate limit holds across them, and
//! a Redis that dies or hangs degrades each route as it says
//! (`rate_limit_on_cluster_error`), never hangs a request, and recovers.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod support;

use std::time::{Duration, Instant};

use http::{HeaderValue, Request};
use sse_edge::cli::{Invocation, from_args};
use sse_edge::{key_digest as digest, key_hex as hex};
use support::*;

const ALICE: &str = "sk-edge-alice-0123456789";
const CHAT: &str = "/v1/chat/completions";
const BODY: &str = r#"{"model":"m","messages":[]}"#;

/// A relay started from `toml` with `--cluster-url` from the environment,
/// as an operator would pass a URL holding a password.
async fn replica(dir: &TempDir, toml: &str, url: &str) -> sse_edge::Running {
    let file = dir.write("sse-edge.toml", toml.as_bytes());
    let args = [
        "sse-edge",
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--config",
        file.to_str().unwrap(),
    ];
    let url = url.to_owned();
    let env = move |k: &str| (k == "SSE_EDGE_CLUSTER_URL").then(|| url.clone());
    let config = match from_args(args, &env) {
        Ok(Invocation::Run(c)) => c,
        Ok(_) => panic!("not a run invocation"),
        Err(e) => panic!("bad config: {e}\n{toml}"),
    };
    start_with_log(config).await.0
}

async fn send(relay: &sse_edge::Running, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req: Request<TestBody> = post(path, BODY);
    for (k, v) in headers {
        let name = http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut()
            .append(name, HeaderValue::from_str(v).unwrap());
    }
    within(fetch_once(relay.listen, req)).await
}

fn route(prefix: &str, up: &Upstream, extra: &str) -> String {
    let url = up.url();
    format!(
        "\n[[route]]\nprefix = \"{prefix}\"\nstrip_prefix = true\nupstream = \"{url}\"\n{extra}\n"
    )
}

#[tokio::test]
async fn a_limit_of_n_holds_across_three_replicas() {
    let redis = RedisServer::start();
    let up = Upstream::ok(Mode::Http1).await;
    let dir = TempDir::new("cluster-n");
    let keys = dir.write(
        "keys",
        format!("{}\n", hex(&digest(ALICE.as_bytes()))).as_bytes(),
    );
    let toml = [
        route("/ip", &up, "rate_limit = \"5/m\""),
        route(
            "/key",
            &up,
            &format!(
                "auth_keys_file = \"{}\"\nrate_limit = \"4/m\"",
                keys.display()
            ),
        ),
        route("/burst", &up, "rate_limit = \"2/s\"\nrate_limit_burst = 6"),
    ]
    .concat();
    let relays = [
        replica(&dir, &toml, &redis.url()).await,
        replica(&dir, &toml, &redis.url()).await,
        replica(&dir, &toml, &redis.url()).await,
    ];
    // Per address: 5 per minute in all, whichever replica a request meets.
    let mut admitted = 0;
    for i in 0..15 {
        let r = send(&relays[i % 3], &format!("/ip{CHAT}"), &[]).await;
        match r.status.as_u16() {
            200 => admitted += 1,
            429 => assert_eq!(r.header("sse-edge-error"), Some("rate_limit_exceeded")),
            s => panic!("request {i}: status {s}"),
        }
    }
    assert_eq!(admitted, 5, "per-address limit across replicas");
    // One round trip per admitted request (the limit is too slow for a
    // lease of more than one token), and one per replica for its first
    // refusal: Redis said when the next token comes, and until then the
    // replica refuses on its own.
    assert_eq!(round_trips(&relays).await, BUS + 5.0 + 3.0);
    // Per key: 4 per minute in all.
    let alice = [("x-api-key", ALICE)];
    let mut admitted = 0;
    for i in 0..12 {
        let r = send(&relays[(i + 1) % 3], &format!("/key{CHAT}"), &alice).await;
        if r.status == 200 {
            admitted += 1;
        } else {
            assert_eq!(r.status, 429, "request {i}");
            let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=15).contains(&secs), "Retry-After {secs}");
        }
    }
    assert_eq!(admitted, 4, "per-key limit across replicas");
    assert_eq!(round_trips(&relays).await, BUS + 8.0 + 4.0 + 3.0);
    assert_eq!(up.request_count(), 9);
    // At once: 30 concurrent requests over the three replicas, 6 admitted.
    let mut all = tokio::task::JoinSet::new();
    for i in 0..30 {
        let addr = relays[i % 3].listen;
        all.spawn(fetch_once(addr, post(&format!("/burst{CHAT}"), BODY)));
    }
    let mut admitted = 0;
    while let Some(r) = within(all.join_next()).await {
        match r.unwrap().status.as_u16() {
            200 => admitted += 1,
            429 => {}
            s => panic!("status {s}"),
        }
    }
    assert_eq!(admitted, 6, "concurrent requests across replicas");
    // The shared bucket refills at its rate: 2/s is one more per 500 ms
    // (the next one 500 ms later: no slack for a slow burst to eat).
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        send(&relays[2], &format!("/burst{CHAT}"), &[]).await.status,
        200
    );
    assert_eq!(
        send(&relays[0], &format!("/burst{CHAT}"), &[]).await.status,
        429
    );
    let rounds = round_trips(&relays).await;
    // Concurrent requests all miss the replica's cache, so each may pay one.
    assert!(
        (BUS + 15.0 + 6.0 + 2.0..=BUS + 15.0 + 30.0 + 2.0).contains(&rounds),
        "{rounds} round trips"
    );
    for r in relays {
        stop_relay(r).await;
    }
}

/// Round trips of three replicas' buses at start (each checks that no
/// other replica drew its id: `PUBSUB NUMSUB`).
const BUS: f64 = 3.0;

/// Round trips to Redis by all `relays` so far; checks each relay is up,
/// error-free, and times every round trip.
async fn round_trips(relays: &[sse_edge::Running]) -> f64 {
    let mut rounds = 0.0;
    for r in relays {
        let m = metrics(r.admin).await;
        assert_eq!(metric(&m, "sse_edge_cluster_up", &[]), Some(1.0));
        assert_eq!(
            metric(&m, "sse_edge_cluster_errors_total", &[("kind", "error")]),
            Some(0.0)
        );
        let n = metric(&m, "sse_edge_cluster_round_trips_total", &[]).unwrap();
        assert_eq!(
            metric(&m, "sse_edge_cluster_latency_seconds_count", &[]),
            Some(n)
        );
        rounds += n;
    }
    rounds
}

#[tokio::test]
async fn leased_tokens_spare_round_trips_and_never_admit_more_than_n() {
    let redis = RedisServer::start();
    let up = Upstream::ok(Mode::Http1).await;
    let dir = TempDir::new("cluster-lease");
    // 30 per hour, all at once if need be: one token per 120 s, so none
    // comes back during the test. A lease of 10 minutes is 5 tokens.
    let toml = format!(
        "[cluster]\nrate_limit_lease = \"10m\"\n{}",
        route(
            "/lease",
            &up,
            "rate_limit = \"30/h\"\nrate_limit_burst = 30"
        )
    );
    let relays = [
        replica(&dir, &toml, &redis.url()).await,
        replica(&dir, &toml, &redis.url()).await,
        replica(&dir, &toml, &redis.url()).await,
    ];
    let mut admitted = 0;
    for i in 0..60 {
        let r = send(&relays[i % 3], &format!("/lease{CHAT}"), &[]).await;
        match r.status.as_u16() {
            200 => admitted += 1,
            429 => {
                let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=121).contains(&secs), "Retry-After {secs}");
            }
            s => panic!("request {i}: status {s}"),
        }
    }
    assert_eq!(admitted, 30, "N across replicas, leases or not");
    // Each replica took two leases of 5 (its 10 requests) and asked once
    // more, to hear when the next token comes: 9 round trips, not 60.
    assert_eq!(round_trips(&relays).await, BUS + 6.0 + 3.0);
    for r in relays {
        stop_relay(r).await;
    }
}

/// Sends to `path` on `relay` and checks the answer came within `limit`.
async fn timed(relay: &sse_edge::Running, path: &str, limit: Duration) -> Resp {
    let start = Instant::now();
    let r = send(relay, path, &[]).await;
    let took = start.elapsed();
    assert!(took < limit, "{path}: answered after {took:?}");
    r
}

#[tokio::test]
async fn redis_down_degrades_per_route_and_recovers() {
    let mut redis = RedisServer::start();
    let up = Upstream::ok(Mode::Http1).await;
    let dir = TempDir::new("cluster-down");
    let toml = [
        route("/open", &up, "rate_limit = \"3/m\""),
        route(
            "/closed",
            &up,
            "rate_limit = \"3/m\"\nrate_limit_on_cluster_error = \"closed\"",
        ),
        route("/free", &up, ""),
    ]
    .concat();
    let toml =
        format!("[cluster]\ncommand_timeout = \"200ms\"\nconnect_timeout = \"200ms\"\n{toml}");
    let a = replica(&dir, &toml, &redis.url()).await;
    let b = replica(&dir, &toml, &redis.url()).await;
    // No round trip yet: ready, the cluster's state unknown.
    let ready = within(fetch_once(a.admin, get("/readyz"))).await;
    assert_eq!(
        (ready.status.as_u16(), ready.text()),
        (200, "ready\ncluster: unknown\n".to_owned())
    );
    let quick = Duration::from_secs(2);
    let open = format!("/open{CHAT}");
    let closed = format!("/closed{CHAT}");
    // Shared while Redis is up: 3 in all.
    for relay in [&a, &b, &a] {
        assert_eq!(timed(relay, &open, quick).await.status, 200);
    }
    assert_eq!(timed(&b, &open, quick).await.status, 429);

    // A hung Redis (SIGSTOP): answers within command_timeout, no hang.
    redis.freeze(true);
    let r = timed(&a, &closed, quick).await;
    assert_eq!(r.status, 503, "fail-closed while Redis hangs");
    assert_eq!(r.header("sse-edge-error"), Some("rate_limit_unavailable"));
    assert_eq!(r.header("retry-after"), Some("1"));
    let j = r.json();
    assert_eq!(j["error"]["code"], "rate_limit_unavailable", "{j}");
    // Fail-open: each replica's own bucket (3 each), not the shared one.
    for i in 0..3 {
        assert_eq!(timed(&a, &open, quick).await.status, 200, "open {i}");
    }
    assert_eq!(timed(&a, &open, quick).await.status, 429);
    // Routes without a rate limit never touch Redis.
    assert_eq!(timed(&b, &format!("/free{CHAT}"), quick).await.status, 200);
    redis.freeze(false);

    // A dead Redis (SIGKILL): refused connections, same degradation.
    redis.kill();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for relay in [&a, &b] {
        assert_eq!(timed(relay, &closed, quick).await.status, 503);
    }
    let ready = within(fetch_once(b.admin, get("/readyz"))).await;
    assert_eq!(
        (ready.status.as_u16(), ready.text()),
        (200, "ready\ncluster: down\n".to_owned())
    );

    // Back: after the backoff the buckets are Redis' again (a fresh,
    // empty server: full buckets).
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = timed(&b, &closed, quick).await;
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {}", r.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for relay in [&a, &b] {
        assert_eq!(timed(relay, &closed, quick).await.status, 200);
    }
    assert_eq!(timed(&a, &closed, quick).await.status, 429);
    let ready = within(fetch_once(a.admin, get("/readyz"))).await;
    assert_eq!(
        (ready.status.as_u16(), ready.text()),
        (200, "ready\ncluster: up\n".to_owned())
    );
    let m = metrics(a.admin).await;
    assert!(
        metric(
            &m,
            "sse_edge_cluster_fallbacks_total",
            &[("decision", "local")]
        ) >= Some(3.0)
    );
    assert!(
        metric(
            &m,
            "sse_edge_cluster_fallbacks_total",
            &[("decision", "refused")]
        ) >= Some(2.0)
    );
    assert!(metric(&m, "sse_edge_cluster_errors_total", &[("kind", "timeout")]) >= Some(1.0));
    stop_relay(a).await;
    stop_relay(b).await;
}

#[test]
fn the_url_is_checked_and_never_shown_with_its_password() {
    let dir = TempDir::new("cluster-cfg");
    let toml = "[cluster]\nkey_prefix = \"edge:\"\n\n[[route]]\nupstream = \"http://127.0.0.1:9\"\n\
                rate_limit = \"5/m\"\nrate_limit_on_cluster_error = \"closed\"\n";
    let file = dir.write("c.toml", toml.as_bytes());
    let file = file.to_str().unwrap();
    let run = |url: &str, sub: &[&str]| {
        let mut args = vec!["sse-edge"];
        args.extend_from_slice(sub);
        if sub.is_empty() {
            args.push("--config");
        }
        args.push(file);
        let url = url.to_owned();
        from_args(args, &move |k| {
            (k == "SSE_EDGE_CLUSTER_URL").then(|| url.clone())
        })
    };
    let Err(e) = run("redis://:hunter2@127.0.0.1:notaport/0", &[]) else {
        panic!("bad URL accepted");
    };
    let msg = e.to_string();
    assert!(
        msg.contains("cluster.url") && msg.contains("SSE_EDGE_CLUSTER_URL"),
        "{msg}"
    );
    assert!(!msg.contains("hunter2"), "{msg}");
    let Err(e) = run("http://127.0.0.1:6379", &[]) else {
        panic!("http URL accepted");
    };
    assert!(e.to_string().contains("redis://"), "{e}");
    // The route key: a choice, and only with a rate limit.
    for (route, want) in [
        (
            "rate_limit = \"5/m\"\nrate_limit_on_cluster_error = \"maybe\"",
            "expected open",
        ),
        (
            "rate_limit_on_cluster_error = \"open\"",
            "route[0].rate_limit",
        ),
    ] {
        let toml = format!("[[route]]\nupstream = \"http://127.0.0.1:9\"\n{route}\n");
        let f = dir.write("r.toml", toml.as_bytes());
        let args = ["sse-edge", "check-config", f.to_str().unwrap()];
        let Err(e) = from_args(args, &|_| None) else {
            panic!("accepted: {route}");
        };
        let msg = e.to_string();
        assert!(
            msg.contains("route[0].rate_limit_on_cluster_error") && msg.contains(want),
            "{msg}"
        );
    }
    // cluster.ca_file: only for rediss://, and only a file of certificates.
    let not_pem = dir.write("not.pem", b"hello");
    for (cluster, url, want) in [
        (
            format!("ca_file = \"{}\"", ca_pem_path().display()),
            "redis://127.0.0.1:6379/0",
            "not rediss://",
        ),
        (
            format!("ca_file = \"{}\"", not_pem.display()),
            "rediss://127.0.0.1:6379/0",
            "no PEM certificates",
        ),
        (
            "ca_file = \"/nonexistent/ca.pem\"".to_owned(),
            "rediss://127.0.0.1:6379/0",
            "cannot read",
        ),
    ] {
        let toml = format!(
            "[cluster]\nurl = \"{url}\"\n{cluster}\n[[route]]\nupstream = \"http://127.0.0.1:9\"\n"
        );
        let f = dir.write("ca.toml", toml.as_bytes());
        let args = ["sse-edge", "check-config", f.to_str().unwrap()];
        let Err(e) = from_args(args, &|_| None) else {
            panic!("accepted: {cluster}");
        };
        let msg = e.to_string();
        assert!(
            msg.contains("cluster.ca_file") && msg.contains(want),
            "{msg}"
        );
    }
    let Ok(Invocation::Run(c)) = run("rediss://edge:hunter2@cache.internal:6380/2", &[]) else {
        panic!("good URL refused");
    };
    let cluster = c.cluster.as_ref().unwrap();
    assert_eq!(cluster.key_prefix, "edge:");
    assert_eq!(cluster.command_timeout, Duration::from_millis(250));
    let shown = format!("{cluster:?}");
    assert!(
        shown.contains("rediss://edge:***@cache.internal:6380/2"),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
    let url = "rediss://edge:hunter2@cache.internal:6380/2";
    let Ok(Invocation::CheckConfig { rendered, .. }) = run(url, &["check-config"]) else {
        panic!("check-config refused");
    };
    assert!(!rendered.contains("hunter2"), "{rendered}");
    for line in [
        "url = \"rediss://edge:***@cache.internal:6380/2\"",
        "key_prefix = \"edge:\"",
        "rate_limit_on_cluster_error = \"closed\"",
    ] {
        assert!(rendered.contains(line), "{line} in\n{rendered}");
    }
}

#[tokio::test]
async fn rediss_is_verified_against_cluster_ca_file() {
    let redis = RedisServer::start_tls();
    let up = Upstream::ok(Mode::Http1).await;
    let dir = TempDir::new("cluster-tls");
    let ca = ca_pem_path().display().to_string();
    let limited = route("/tls", &up, "rate_limit = \"100/m\"");
    // The private CA: Redis is reached over TLS and decides.
    let trusted = replica(
        &dir,
        &format!("[cluster]\nca_file = \"{ca}\"\n{limited}"),
        &redis.tls_url(),
    )
    .await;
    assert_eq!(
        send(&trusted, &format!("/tls{CHAT}"), &[]).await.status,
        200
    );
    let m = metrics(trusted.admin).await;
    assert_eq!(metric(&m, "sse_edge_cluster_up", &[]), Some(1.0));
    assert_eq!(
        metric_or_zero(
            &m,
            "sse_edge_cluster_fallbacks_total",
            &[("decision", "local")]
        ),
        0.0
    );
    // The system's CA store does not know the test CA: the handshake
    // fails, and the route falls back to its own bucket (fail-open).
    let untrusted = replica(&dir, &limited, &redis.tls_url()).await;
    assert_eq!(
        send(&untrusted, &format!("/tls{CHAT}"), &[]).await.status,
        200
    );
    let m = metrics(untrusted.admin).await;
    assert_eq!(metric(&m, "sse_edge_cluster_up", &[]), Some(0.0));
    assert_eq!(
        metric(
            &m,
            "sse_edge_cluster_fallbacks_total",
            &[("decision", "local")]
        ),
        Some(1.0)
    );
    stop_relay(trusted).await;
    stop_relay(untrusted).await;
}
