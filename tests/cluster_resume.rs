//! Resumption across replicas (cluster mode) against a real `redis-server`:
//! a stream started on one relay process is resumed on another and then a
//! third, with exact events and one upstream request; a reader elsewhere
//! gets every event its producer made, then an error event, when the
//! producer is killed; takeover, auth and a dead Redis behave as on one
//! replica, or say honestly why they cannot.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sse_edge::internals::whatwg;
use support::*;

const CHAT: &str = "/v1/chat/completions";

/// One client connection's answer, read event by event.
struct Conn {
    status: u16,
    stream_id: Option<String>,
    error_code: Option<String>,
    body: Option<Incoming>,
    parser: whatwg::Parser,
    raw: Vec<u8>,
    /// The body reached its end.
    ended: bool,
}

impl Conn {
    async fn open(addr: SocketAddr, req: Request<TestBody>) -> Conn {
        let mut client = Client::h1(addr).await;
        let res = client.send(req).await.expect("request sent");
        let header = |n: &str| {
            res.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        Conn {
            status: res.status().as_u16(),
            stream_id: header("sse-edge-stream-id"),
            error_code: header("sse-edge-error"),
            body: Some(res.into_body()),
            parser: whatwg::Parser::new(),
            raw: Vec::new(),
            ended: false,
        }
    }

    /// Reads until `n` events arrived or the body ended.
    async fn until(&mut self, n: usize) {
        let limit = Duration::from_secs(15);
        while self.parser.events().len() < n && !self.ended {
            let body = self.body.as_mut().expect("body still open");
            match tokio::time::timeout(limit, body.frame()).await {
                Err(_) => panic!(
                    "no frame within {limit:?}; so far: {}",
                    String::from_utf8_lossy(&self.raw)
                ),
                Ok(None) => self.ended = true,
                Ok(Some(f)) => {
                    if let Ok(data) = f.expect("body frame").into_data() {
                        self.raw.extend_from_slice(&data);
                        self.parser.feed(&data);
                    }
                }
            }
        }
    }

    async fn read_all(&mut self) {
        self.until(usize::MAX).await;
    }

    fn events(&self) -> &[whatwg::Dispatched] {
        self.parser.events()
    }

    fn last_id(&self) -> String {
        self.events()
            .last()
            .expect("an event")
            .last_event_id
            .clone()
    }

    /// Drops the connection, as a client losing its network does.
    fn cut(&mut self) {
        self.body = None;
    }
}

fn datas(events: &[whatwg::Dispatched]) -> Vec<String> {
    events.iter().map(|e| e.data.clone()).collect()
}

/// The seq of each event id (`<token>:<seq>`), checking the token.
fn seqs(events: &[whatwg::Dispatched], token: &str) -> Vec<u64> {
    events
        .iter()
        .filter(|e| !e.last_event_id.is_empty())
        .map(|e| {
            let (t, n) = e.last_event_id.split_once(':').unwrap();
            assert_eq!(t, token, "event id of another stream");
            n.parse().unwrap()
        })
        .collect()
}

/// An upstream streaming `data: {"tick":N}` every `gap` until its reader
/// goes, and the record of when readers went.
async fn endless(gap: Duration) -> (Upstream, std::sync::Arc<Stops>) {
    let stops = std::sync::Arc::new(Stops::default());
    let up = Upstream::endless(Mode::Http1, gap, stops.clone()).await;
    (up, stops)
}

fn cluster_args<'a>(up: &'a str, redis: &'a str) -> Vec<&'a str> {
    vec![
        "--upstream",
        up,
        "--resume-window",
        "10s",
        "--heartbeat",
        "1s",
        "--cluster-url",
        redis,
    ]
}

#[tokio::test]
async fn a_stream_started_on_a_is_resumed_on_b_then_c_with_exact_events_and_one_upstream_request() {
    within(async {
        const N: usize = 40;
        let redis = RedisServer::start();
        let up = Upstream::streaming(Mode::Http1, N + 1, Duration::from_millis(25)).await;
        let (url, redis_url) = (up.url(), redis.url());
        let args = cluster_args(&url, &redis_url);
        let (a, b, c) = tokio::join!(
            RelayProc::spawn(&args),
            RelayProc::spawn(&args),
            RelayProc::spawn(&args)
        );
        let want = datas(&whatwg::parse(&concat(&sse_events(N + 1))));

        // A: the original request, cut after 5 events.
        let mut on_a = Conn::open(a.listen, post(CHAT, STREAM_REQ)).await;
        assert_eq!(on_a.status, 200);
        let token = on_a.stream_id.clone().expect("sse-edge-stream-id");
        on_a.until(5).await;
        on_a.cut();
        let mut got = datas(&on_a.events()[..5]);
        let last = on_a.events()[4].last_event_id.clone();

        // B: the SDK-style reconnect (the original request again, with
        // Last-Event-ID), cut after 10 more.
        let mut on_b = Conn::open(b.listen, resume_post(&last)).await;
        assert_eq!(on_b.status, 200, "{:?}", on_b.error_code);
        assert_eq!(on_b.stream_id.as_deref(), Some(token.as_str()));
        on_b.until(10).await;
        on_b.cut();
        got.extend(datas(&on_b.events()[..10]));
        let last = on_b.events()[9].last_event_id.clone();

        // C: the EventSource-style reconnect on the resume path, to the end.
        let mut on_c = Conn::open(c.listen, resume_get(&token, Some(&last))).await;
        assert_eq!(on_c.status, 200, "{:?}", on_c.error_code);
        on_c.read_all().await;
        got.extend(datas(on_c.events()));

        assert_eq!(got, want, "events across three replicas");
        let mut all = on_a.events()[..5].to_vec();
        all.extend_from_slice(&on_b.events()[..10]);
        all.extend_from_slice(on_c.events());
        let expected: Vec<u64> = (1..=(N as u64 + 1)).collect();
        assert_eq!(seqs(&all, &token), expected, "ids count on without a gap");
        assert_eq!(up.request_count(), 1, "reconnects never reach the upstream");
    })
    .await;
}

#[tokio::test]
async fn a_reader_elsewhere_gets_every_event_then_an_error_event_when_the_producer_is_killed() {
    within(async {
        let redis = RedisServer::start();
        let (up, _stops) = endless(Duration::from_millis(30)).await;
        let (url, redis_url) = (up.url(), redis.url());
        let args = cluster_args(&url, &redis_url);
        let (mut a, b) = tokio::join!(RelayProc::spawn(&args), RelayProc::spawn(&args));

        let mut on_a = Conn::open(a.listen, post(CHAT, STREAM_REQ)).await;
        let token = on_a.stream_id.clone().expect("sse-edge-stream-id");
        on_a.until(3).await;
        on_a.cut();
        let last = on_a.events()[2].last_event_id.clone();

        let mut on_b = Conn::open(b.listen, resume_post(&last)).await;
        assert_eq!(on_b.status, 200, "{:?}", on_b.error_code);
        on_b.until(8).await;
        let before_kill = on_b.events().len();
        a.sigkill().await;
        let killed = Instant::now();
        on_b.read_all().await;
        let took = killed.elapsed();

        let events = on_b.events();
        let (last_event, stream) = events.split_last().expect("events");
        // Every event A made reached B, in order, without a gap...
        let seqs = seqs(stream, &token);
        let expected: Vec<u64> = (4..4 + seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "contiguous events after Last-Event-ID");
        assert!(seqs.len() >= before_kill, "nothing taken back");
        // ...then one error event saying the producer is gone, within the
        // resumer's silence limit (3 s) and a margin.
        assert!(
            last_event.data.contains("resume_producer_lost"),
            "last event: {:?}",
            last_event.data
        );
        assert!(
            took < Duration::from_secs(6),
            "ended {took:?} after the kill"
        );
        assert!(on_b.ended);
    })
    .await;
}

#[tokio::test]
async fn takeover_is_cluster_wide_and_auth_stays_bound_to_route_and_key() {
    within(async {
        use sse_edge::{key_digest as digest, key_hex as hex};
        const ALICE: &str = "sk-edge-alice-0123456789";
        const BOB: &str = "sk-edge-bob-9876543210";
        let redis = RedisServer::start();
        let (up, stops) = endless(Duration::from_millis(20)).await;
        let dir = TempDir::new("cluster-resume-auth");
        let keys = format!(
            "{} alice\n{} bob\n",
            hex(&digest(ALICE.as_bytes())),
            hex(&digest(BOB.as_bytes()))
        );
        let keys = dir.write("keys", keys.as_bytes());
        let toml = format!(
            "[cluster]\nurl = \"{}\"\n\n[[route]]\nprefix = \"/\"\nupstream = \"{}\"\n\
             auth_keys_file = \"{}\"\nresume = {{ window = \"10s\" }}\nheartbeat = \"1s\"\n",
            redis.url(),
            up.url(),
            keys.display()
        );
        let config = dir.write("sse-edge.toml", toml.as_bytes());
        let args = ["--config", config.to_str().unwrap()];
        let (a, b, c) = tokio::join!(start_relay(&args), start_relay(&args), start_relay(&args));
        let key = |mut req: Request<TestBody>, k: Option<&str>| {
            if let Some(k) = k {
                let v = format!("Bearer {k}").parse().unwrap();
                req.headers_mut().insert("authorization", v);
            }
            req
        };

        let mut on_a = Conn::open(a.listen, key(post(CHAT, STREAM_REQ), Some(ALICE))).await;
        assert_eq!(on_a.status, 200);
        let token = on_a.stream_id.clone().unwrap();
        on_a.until(2).await;
        on_a.cut();
        let id = on_a.last_id();

        // Auth runs on the replica the reconnect reaches, against the route
        // and key the stream was opened with on another.
        let mut no_key = Conn::open(b.listen, key(resume_get(&token, Some(&id)), None)).await;
        no_key.read_all().await;
        assert_eq!(
            (no_key.status, no_key.error_code.as_deref()),
            (401, Some("invalid_api_key"))
        );
        let mut bob = Conn::open(b.listen, key(resume_post(&id), Some(BOB))).await;
        bob.read_all().await;
        assert_eq!(
            (bob.status, bob.error_code.as_deref()),
            (404, Some("resume_unknown"))
        );

        // Alice on B follows live; Alice on C takes the stream over, and B's
        // reader is told so.
        let mut on_b = Conn::open(b.listen, key(resume_get(&token, Some(&id)), Some(ALICE))).await;
        assert_eq!(on_b.status, 200, "{:?}", on_b.error_code);
        on_b.until(3).await;
        let id = on_b.last_id();
        let mut on_c = Conn::open(c.listen, key(resume_post(&id), Some(ALICE))).await;
        assert_eq!(on_c.status, 200, "{:?}", on_c.error_code);
        on_b.read_all().await;
        let last = on_b.events().last().unwrap();
        assert!(
            last.data.contains("resume_superseded"),
            "B's last event: {:?}",
            last.data
        );
        on_c.until(3).await;
        let first = seqs(on_c.events(), &token)[0];
        let after: u64 = id.split_once(':').unwrap().1.parse().unwrap();
        assert_eq!(first, after + 1, "C continues right after the id it named");

        // A token naming a replica that is not on the bus (stopped, or
        // never there): unknown, at once.
        let mut ghost = token.clone();
        ghost.replace_range(..8, "00000000");
        let mut lost = Conn::open(b.listen, key(resume_get(&ghost, None), Some(ALICE))).await;
        lost.read_all().await;
        assert_eq!(
            (lost.status, lost.error_code.as_deref()),
            (404, Some("resume_unknown"))
        );
        assert_eq!(stops.count(), 0, "the upstream runs on throughout");
        let on = |r: &sse_edge::Running| metrics(r.admin);
        let (ma, mb) = (on(&a).await, on(&b).await);
        let resumed = [("result", "resumed")];
        assert_eq!(
            metric(&mb, "sse_edge_resume_reconnects_total", &resumed),
            Some(1.0)
        );
        // Bob's and the ghost's.
        let unknown = [("result", "unknown")];
        assert_eq!(
            metric(&mb, "sse_edge_resume_reconnects_total", &unknown),
            Some(2.0)
        );
        assert_eq!(
            metric(&ma, "sse_edge_resume_forwarded_streams_total", &[]),
            Some(2.0)
        );
        assert!(metric(&ma, "sse_edge_resume_forwarded_bytes_total", &[]).unwrap() > 0.0);
        on_c.cut();
        for r in [a, b, c] {
            stop_relay(r).await;
        }
    })
    .await;
}

#[tokio::test]
async fn redis_stopped_mid_run_ends_readers_elsewhere_honestly_and_resumption_recovers() {
    within(async {
        let mut redis = RedisServer::start();
        let (up, _stops) = endless(Duration::from_millis(30)).await;
        let (url, redis_url) = (up.url(), redis.url());
        let args = cluster_args(&url, &redis_url);
        let (a, b) = tokio::join!(start_relay(&args), start_relay(&args));
        let mut on_a = Conn::open(a.listen, post(CHAT, STREAM_REQ)).await;
        let token = on_a.stream_id.clone().unwrap();
        on_a.until(2).await;
        on_a.cut();

        // A reader on B follows; Redis goes away under it.
        let mut on_b = Conn::open(b.listen, resume_post(&on_a.last_id())).await;
        assert_eq!(on_b.status, 200, "{:?}", on_b.error_code);
        on_b.until(3).await;
        redis.kill();
        let killed = Instant::now();
        on_b.read_all().await;
        assert!(killed.elapsed() < Duration::from_secs(6), "ended, not hung");
        let (last, stream) = on_b.events().split_last().unwrap();
        let got = seqs(stream, &token);
        assert_eq!(got, (3..3 + got.len() as u64).collect::<Vec<_>>());
        assert!(
            last.data.contains("cluster_unavailable") || last.data.contains("resume_producer_lost"),
            "last event: {:?}",
            last.data
        );
        let id = stream.last().unwrap().last_event_id.clone();

        // Meanwhile a reconnect elsewhere is refused at once...
        let started = Instant::now();
        let mut refused = Conn::open(b.listen, resume_post(&id)).await;
        refused.read_all().await;
        assert_eq!(
            (refused.status, refused.error_code.as_deref()),
            (503, Some("resume_unreachable"))
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "refused promptly"
        );
        // ...while the producing replica serves it as always.
        let mut local = Conn::open(a.listen, resume_get(&token, Some(&id))).await;
        assert_eq!(local.status, 200);
        local.until(2).await;
        local.cut();
        let id = local.last_id();

        // Redis back: the bus resubscribes and B follows the stream again.
        redis.restart();
        let mut back = None;
        for _ in 0..40 {
            let mut on_b = Conn::open(b.listen, resume_post(&id)).await;
            if on_b.status == 200 {
                on_b.until(3).await;
                back = Some(on_b);
                break;
            }
            on_b.read_all().await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let on_b = back.expect("a reconnect on B works once Redis is back");
        let after: u64 = id.split_once(':').unwrap().1.parse().unwrap();
        assert_eq!(seqs(on_b.events(), &token)[0], after + 1);
        assert_eq!(up.request_count(), 1, "one upstream request throughout");
        drop(on_b);
        stop_relay(a).await;
        stop_relay(b).await;
    })
    .await;
}

#[tokio::test]
async fn a_draining_producer_lets_a_reader_elsewhere_follow_for_its_drain_time_then_says_why() {
    within(async {
        let redis = RedisServer::start();
        let (up, _stops) = endless(Duration::from_millis(30)).await;
        let (url, redis_url) = (up.url(), redis.url());
        let mut args = cluster_args(&url, &redis_url);
        args.extend(["--drain-timeout", "1500ms"]);
        let (mut a, b) = tokio::join!(RelayProc::spawn(&args), RelayProc::spawn(&args));

        let mut on_a = Conn::open(a.listen, post(CHAT, STREAM_REQ)).await;
        let token = on_a.stream_id.clone().unwrap();
        on_a.until(2).await;
        on_a.cut();
        let mut on_b = Conn::open(b.listen, resume_post(&on_a.last_id())).await;
        assert_eq!(on_b.status, 200, "{:?}", on_b.error_code);
        on_b.until(3).await;
        a.sigterm();
        let at_term = on_b.events().len();
        on_b.read_all().await;
        let status = a.wait_exit(Duration::from_secs(10)).await;
        assert!(status.success(), "A exits cleanly: {status}");

        let (last, stream) = on_b.events().split_last().unwrap();
        let seqs = seqs(stream, &token);
        let expected: Vec<u64> = (3..3 + seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "contiguous events after Last-Event-ID");
        // ~1.5 s of drain at one event per 30 ms: well over 10 more events.
        assert!(
            seqs.len() >= at_term + 10,
            "B followed during the drain: {} events, {at_term} at SIGTERM",
            seqs.len()
        );
        assert!(
            last.data.contains("shutting_down"),
            "last event: {:?}",
            last.data
        );
    })
    .await;
}

#[tokio::test]
async fn a_long_replay_crosses_replicas_in_pieces() {
    within(async {
        // ~0.5 MB of events, produced at once while nobody reads.
        const N: usize = 5000;
        let redis = RedisServer::start();
        let up = Upstream::streaming(Mode::Http1, N + 1, Duration::ZERO).await;
        let (url, redis_url) = (up.url(), redis.url());
        let mut args = cluster_args(&url, &redis_url);
        args.extend(["--resume-max-bytes", "4MiB"]);
        let (a, b) = tokio::join!(start_relay(&args), start_relay(&args));
        let mut on_a = Conn::open(a.listen, post(CHAT, STREAM_REQ)).await;
        let token = on_a.stream_id.clone().unwrap();
        on_a.until(1).await;
        on_a.cut();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut on_b = Conn::open(b.listen, resume_get(&token, Some(&format!("{token}:1")))).await;
        assert_eq!(on_b.status, 200, "{:?}", on_b.error_code);
        on_b.read_all().await;
        let got = seqs(on_b.events(), &token);
        assert_eq!(got, (2..=(N as u64 + 1)).collect::<Vec<_>>());
        assert_eq!(on_b.events().last().unwrap().data, "[DONE]");
        assert!(on_b.raw.len() > 400_000, "{} bytes", on_b.raw.len());
        stop_relay(a).await;
        stop_relay(b).await;
    })
    .await;
}
