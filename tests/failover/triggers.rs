//! Each reason to fail over, each answer that passes through, the order
//! endpoints and groups are tried in, the limits on trying (attempts,
//! `retry_on_reset`, silent endpoints, Retry-After), the deadlines and
//! where they are set, the end of failover at the first event, and that
//! nothing of a failed attempt reaches the client.

use std::time::Duration;

use crate::support::*;
use crate::*;

/// `a` (the primary, failing with `fault`, its group set with `overrides`)
/// is tried once, then `b` (the backup) serves the whole stream; the access
/// log and the failover metric say so.
async fn fails_over(fault: &str, overrides: &[(&str, &str)], path: &str) {
    limit(15, async {
        let a = FaultyUpstream::failing("a", fault).await;
        let b = FaultyUpstream::start("b").await;
        let primary = overrides
            .iter()
            .fold(group("primary", [ep(&a)]), |g, (k, v)| g.set(k, v));
        let file = route_file(vec![primary, group("backup", [ep(&b)])]);
        let (relay, mut log) = start_route_file(&file, &[]).await;
        let r = ask(relay.listen, stream_req(path, "m")).await;
        assert_served(&r, &b, "m", path);
        assert!(
            r.took < Duration::from_secs(3),
            "{fault}: took {:?}",
            r.took
        );
        assert_eq!(a.request_count(), 1, "{fault}: a tried once");
        assert_eq!(b.request_count(), 1, "{fault}: b tried once");
        assert_eq!(b.requests()[0].model().as_deref(), Some("m"));
        at_rest(relay.admin, &[&a, &b]).await;

        let line = log_line(&mut log, path).await;
        let class = class_of(fault);
        assert_eq!(served_by(&line), Some("b"), "{line}");
        assert_eq!(attempts(&line), Some(2), "{line}");
        assert_eq!(failed_attempts(&line), [("a".to_owned(), class.clone())]);
        let m = metrics(relay.admin).await;
        assert_eq!(failovers(&m, "a", "b", &class), 1.0, "{fault}: {m}");
        stop_relay(relay).await;
    })
    .await;
}

macro_rules! fails_over {
    ($name:ident, $fault:literal) => {
        fails_over!($name, $fault, &[], CHAT);
    };
    ($name:ident, $fault:literal, $overrides:expr) => {
        fails_over!($name, $fault, $overrides, CHAT);
    };
    ($name:ident, $fault:literal, $overrides:expr, $path:expr) => {
        #[tokio::test]
        async fn $name() {
            fails_over($fault, $overrides, $path).await;
        }
    };
}

fails_over!(fails_over_on_429, "429");
fails_over!(fails_over_on_500, "500");
fails_over!(fails_over_on_502, "502");
fails_over!(fails_over_on_503, "503");
fails_over!(fails_over_on_504, "504");
fails_over!(fails_over_on_529, "529");
fails_over!(
    fails_over_on_529_for_anthropic_messages,
    "529",
    &[],
    MESSAGES
);
fails_over!(fails_over_on_a_reset_after_the_request_was_read, "reset");
fails_over!(
    fails_over_on_a_close_after_the_request_was_read,
    "close-after-head-read"
);
fails_over!(
    fails_over_on_the_first_byte_timeout,
    "silent",
    &[("first_byte_timeout", "300ms")]
);
fails_over!(
    fails_over_on_the_first_event_timeout_after_a_bare_head,
    "head-then-silent",
    &[("first_event_timeout", "300ms")]
);
// Comments are bytes: they keep the read deadline (300 ms) from firing,
// but they are no event, so the first-event deadline (800 ms) does.
fails_over!(
    fails_over_on_the_first_event_timeout_despite_comments,
    "comments-only=100ms",
    &[("first_event_timeout", "800ms"), ("read_timeout", "300ms")]
);
fails_over!(
    fails_over_on_a_stall_inside_the_first_event,
    "partial-then-silent",
    &[("read_timeout", "300ms"), ("first_event_timeout", "10s")]
);

#[tokio::test]
async fn fails_over_when_the_connection_is_refused() {
    limit(15, async {
        let (_reserved, dead) = refusing_port();
        let dead = Endpoint::url(&format!("http://{dead}")).named("dead");
        let b = FaultyUpstream::start("b").await;
        let file = route_file(vec![group("primary", [dead]), group("backup", [ep(&b)])]);
        let (relay, mut log) = start_route_file(&file, &[]).await;
        let r = ask(relay.listen, stream_req(CHAT, "m")).await;
        assert_served(&r, &b, "m", CHAT);
        let line = log_line(&mut log, CHAT).await;
        assert_eq!(served_by(&line), Some("b"), "{line}");
        let failed = failed_attempts(&line);
        assert_eq!(failed, [("dead".to_owned(), class_of("connect"))]);
        let m = metrics(relay.admin).await;
        assert_eq!(failovers(&m, "dead", "b", &class_of("connect")), 1.0);
        stop_relay(relay).await;
    })
    .await;
}

/// Spec assumption: a non-streaming request fails over the same way
/// before its first byte.
#[tokio::test]
async fn a_json_request_fails_over_too() {
    limit(15, async {
        let a = FaultyUpstream::failing("a", "503").await;
        let b = FaultyUpstream::start("b").await;
        let file = route_file(vec![group("primary", [ep(&a)]), group("backup", [ep(&b)])]);
        let (relay, _log) = start_route_file(&file, &[]).await;
        let r = ask(relay.listen, post(CHAT, body(CHAT, "m", false))).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(served(&r), Some("b"));
        assert_same(&r.body, healthy_json("b", "m", CHAT).as_bytes(), "b's JSON");
        assert_eq!((a.request_count(), b.request_count()), (1, 1));
        stop_relay(relay).await;
    })
    .await;
}

/// A refused answer's body is read in the background, so its connection
/// serves the next attempt on that endpoint instead of being closed.
#[tokio::test]
async fn the_connection_of_a_refused_answer_is_kept_for_the_next_request() {
    limit(15, async {
        for fault in ["503", "429"] {
            let a = FaultyUpstream::failing("a", fault).await;
            let b = FaultyUpstream::start("b").await;
            let file = route_file(vec![group("primary", [ep(&a)]), group("backup", [ep(&b)])]);
            let (relay, _log) = start_route_file(&file, &[]).await;
            for i in 1..=2 {
                let r = ask(relay.listen, post(CHAT, body(CHAT, "m", false))).await;
                assert_eq!(r.status, 200, "{fault} #{i}: {}", r.text());
                assert_eq!(served(&r), Some("b"));
                // The connection goes back once its body is read.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(a.request_count(), 2, "{fault}: a was asked each time");
            assert_eq!(a.connections(), 1, "{fault}: one connection to a for both");
            stop_relay(relay).await;
        }
    })
    .await;
}

// ---------------------------------------------------------------- pass-through

/// `a`'s answer to `fault` reaches the client unchanged; `b` is never asked.
async fn passes_through(fault: &str, path: &str) {
    limit(15, async {
        let a = FaultyUpstream::failing("a", fault).await;
        let b = FaultyUpstream::start("b").await;
        let file = route_file(vec![group("primary", [ep(&a)]), group("backup", [ep(&b)])]);
        let (relay, mut log) = start_route_file(&file, &[]).await;
        let r = ask(relay.listen, stream_req(path, "m")).await;
        assert_passed_through(&r, &a, fault, path);
        assert_eq!(a.request_count(), 1, "{fault}: not retried");
        assert_eq!(b.request_count(), 0, "{fault}: no failover");
        let line = log_line(&mut log, path).await;
        assert_eq!(served_by(&line), Some("a"), "{line}");
        assert_eq!(attempts(&line), Some(1), "{line}");
        assert!(failed_attempts(&line).is_empty(), "{line}");
        assert_eq!(all_failovers(&metrics(relay.admin).await), 0.0);
        stop_relay(relay).await;
    })
    .await;
}

macro_rules! passes_through {
    ($name:ident, $fault:literal) => {
        passes_through!($name, $fault, CHAT);
    };
    ($name:ident, $fault:literal, $path:expr) => {
        #[tokio::test]
        async fn $name() {
            passes_through($fault, $path).await;
        }
    };
}

passes_through!(a_content_policy_400_passes_through, "policy400");
passes_through!(a_401_passes_through, "401");
passes_through!(a_403_passes_through, "403");
passes_through!(a_404_passes_through, "404");
passes_through!(a_422_passes_through, "422");
passes_through!(
    a_context_overflow_passes_through_without_a_context_group,
    "context"
);
passes_through!(
    an_anthropic_context_overflow_passes_through_without_a_context_group,
    "context",
    MESSAGES
);

// ---------------------------------------------------------------- context fallback

/// `a` overflows its context window: the context group's `c`, asked for
/// its own model, serves; the chain's backup `b` is not asked.
async fn context_overflow_goes_to_the_context_group(path: &str) {
    limit(15, async {
        let a = FaultyUpstream::failing("a", "context").await;
        let b = FaultyUpstream::start("b").await;
        let c = FaultyUpstream::start("c").await;
        let file = route_file(vec![
            group("primary", [ep(&a)]),
            group("backup", [ep(&b)]),
            group("long", [ep(&c).model("long-model")]).context_fallback(),
        ]);
        let (relay, mut log) = start_route_file(&file, &[]).await;
        let r = ask(relay.listen, stream_req(path, "m")).await;
        assert_served(&r, &c, "long-model", path);
        assert_eq!(c.requests()[0].model().as_deref(), Some("long-model"));
        assert_eq!((a.request_count(), b.request_count()), (1, 0));
        let line = log_line(&mut log, path).await;
        assert_eq!(served_by(&line), Some("c"), "{line}");
        assert_eq!(served_model(&line), Some("long-model"), "{line}");
        let m = metrics(relay.admin).await;
        assert_eq!(failovers(&m, "a", "c", &class_of("context")), 1.0, "{m}");
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn an_openai_context_overflow_goes_to_the_context_group() {
    context_overflow_goes_to_the_context_group(CHAT).await;
}

#[tokio::test]
async fn an_anthropic_context_overflow_goes_to_the_context_group() {
    context_overflow_goes_to_the_context_group(MESSAGES).await;
}

#[tokio::test]
async fn the_context_group_takes_nothing_but_context_overflows() {
    limit(15, async {
        let a = FaultyUpstream::failing("a", "503").await;
        let c = FaultyUpstream::start("c").await;
        let file = route_file(vec![
            group("primary", [ep(&a)]),
            group("long", [ep(&c).model("long-model")]).context_fallback(),
        ])
        .set("retry_backoff", "50ms");
        let (relay, _log) = start_route_file(&file, &[]).await;
        let r = ask(relay.listen, stream_req(CHAT, "m")).await;
        assert_passed_through(&r, &a, "503", CHAT);
        assert_eq!(c.request_count(), 0);
        stop_relay(relay).await;
    })
    .await;
}

// ---------------------------------------------------------------- order and limits

#[tokio::test]
async fn the_rest_of_the_group_is_tried_before_the_next_group() {
    limit(15, async {
        let a1 = FaultyUpstream::failing("a1", "503").await;
        let a2 = FaultyUpstream::failing("a2", "502").await;
        let b = FaultyUpstream::start("b").await;
        let c = FaultyUpstream::start("c").await;
        let file = route_file(vec![
            group("primary", [ep(&a1), ep(&a2)]),
            group("backup", [ep(&b)]),
            group("last", [ep(&c)]),
        ]);
        let (relay, mut log) = start_route_file(&file, &[]).await;
        let r = ask(relay.listen, stream_req(CHAT, "m")).await;
        assert_served(&r, &b, "m", CHAT);
        let counts = [&a1, &a2, &b, &c].map(|u| u.request_count());
        assert_eq!(counts, [1, 1, 1, 0], "a1, a2, b, c");
        let at_b = b.requests()[0].at;
        assert!(a1.requests()[0].at < at_b && a2.requests()[0].at < at_b);
        let line = log_line(&mut log, CHAT).await;
        let mut failed: Vec<String> = failed_attempts(&line).into_iter().map(|f| f.0).collect();
        failed.sort();
        assert_eq!(failed, ["a1", "a2"], "{line}");
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn a_healthy_endpoint_of_the_group_serves_before_any_fallback() {
    limit(15, async {
        let a1 = FaultyUpstream::failing("a1", "503").await;
        let a2 = FaultyUpstream::start("a2").await;
        let b = FaultyUpstream::start("b").await;
        let file = route_file(vec![
            group("primary", [ep(&a1), ep(&a2)]),
            group("backup", [ep(&b)]),
        ]);
        let (relay, _log) = start_route_file(&file, &[]).await;
        for _ in 0..6 {
            let r = ask(relay.listen, stream_req(CHAT, "m")).await;
            assert_served(&r, &a2, "m", CHAT);
        }
        assert_eq!(b.request_count(), 0);
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn groups_are_tried_in_order() {
    limit(15, async {
        let ups = [
            FaultyUpstream::failing("a", "503").await,
            FaultyUpstream::failing("b", "429").await,
            FaultyUpstream::failing("c", "reset").await,
            FaultyUpstream::start("d").await,
        ];
        let groups = ups
            .iter()
            .enumerate()
            .map(|(i, u)| group(&format!("g{i}"), [ep(u)]))
            .collect();
        let (relay, mut log) = start_route_file(&route_file(groups), &[]).await;
        let r = ask(relay.listen, stream_req(CHAT, "m")).await;
        assert_served(&r, &ups[3], "m", CHAT);
        let times: Vec<_> = ups.iter().map(|u| u.requests()[0].at).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "a, b, c, d in turn");
        let line = log_line(&mut log, CHAT).await;
        assert_eq!(attempts(&line), Some(4), "{line}");
        let want: Vec<(String, String)> = [("a", "503"), ("b", "429"), ("c", "reset")]
            .map(|(e, f)| (e.to_owned(), class_of(f)))
            .into();
        assert_eq!(failed_attempts(&line), want, "{line}");
        let m = metrics(relay.admin).await;
        assert_eq!(failovers(&m, "a", "b", &class_of("503")), 1.0, "{m}");
        assert_eq!(failovers(&m, "b", "c", &class_of("429")), 1.0, "{m}");
        assert_eq!(failovers(&m, "c", "d", &class_of("reset")), 1.0, "{m}");
        stop_relay(relay).await;
    })
    .await;
}

/// `retry_attempts = 1`: two attempts; the last failed answer is the
/// client's (spec reading: the endpoint that answered last "served").
#[tokio::test]
async fn retry_attempts_bounds_the_attempts() {
    limit(15, async {
        let a = FaultyUpstream::failing("a", "503").await;
        let b = FaultyUpstream::failing("b", "503").await;
        let c = FaultyUpstream::start("c").await;
        let file = route_file(vec![
            group("primary", [ep(&a)]),
            group("second", [ep(&b)]),
            group("third", [ep(&c)]),
        ])
        .set("retry_attempts", "1");
        let (relay, _log) = start_route_file(&file, &[]).await;
        let r = ask(relay.listen, stream_req(CHAT, "m")).await;
        assert_passed_through(&r, &b, "503", CHAT);
        let counts = [&a, &b, &c].map(|u| u.request_count());
        assert_eq!(counts, [1, 1, 0], "a, b, c");
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn without_retry_on_reset_a_reset_after_the_request_is_an_error() {
    limit(15, async {
        for fault in ["reset", "close-after-head-read"] {
            let a = FaultyUpstream::failing("a", fault).await;
            let b = FaultyUpstream::start("b").await;
            let file = route_file(vec![group("primary", [ep(&a)]), group("backup", [ep(&b)])])
                .set("retry_on_reset", "false");
            let (relay, _log) = start_route_file(&file, &[]).await;
            let r = ask(relay.listen, stream_req(CHAT, "m")).await;
            assert_eq!(r.status, 502, "{fault}: {}", r.text());
            assert!(r.header("sse-edge-error").is_some(), "{fault}: relay-made");
            assert_eq!((a.request_count(), b.request_count()), (1, 0), "{fault}");
            stop_relay(relay).await;
        }
    })
    .await;
}

/// A refused connect never carried the request: it fails over whatever
/// `retry_on_reset` says.
#[tokio::test]
async fn without_retry_on_reset_a_refused_connect_still_fails_over() {
    limit(15, async {
        let (_reserved, dead) = refusing_port();
        let dead = Endpoint::url(&format!("http://{dead}")).named("dead");
        let b = FaultyUpstream::start("b").await;
        let file = route_file(vec![group("primary", [dead]), group("backup", [ep(&b)])])
            .set("retry_on_reset", "false");
        let (relay, _log) = start_route_file(&file, &[]).await;
        let r = ask(relay.listen, stream_req(CHAT, "m")).await;
        assert_served(&r, &b, "m", CHAT);
        stop_relay(relay).await;
    })
    .await;
}

/// A silent endpoint is not asked again within the request, even when it
/// is the only one and attempts are left.
#[tokio::test]
async fn a_silent_endpoint_is_tried_once_per_request() {
    limit(15, async {
        for (fault, key) in [
            ("silent", "first_byte_timeout"),
            ("head-then-silent", "first_event_timeout"),
        ] {
            let a = FaultyUpstream::failing("a", fault).await;
            let file = route_file(vec![group("only", [ep(&a)]).set(key, "300ms")])
                .set("retry_attempts", "3")
                .set("retry_backoff", "50ms");
            let (relay, _log) = start_route_file(&file, &[]).await;
            let r = ask(relay.listen, stream_req(CHAT, "m")).await;
            timed_out(&r).unwrap_or_else(|e| panic!("{fault}: {e}"));
            assert!(
                r.took < Duration::from_millis(1500),
                "{fault}: {:?}",
                r.took
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(a.request_count(), 1, "{fault}: not asked again");
            stop_relay(relay).await;
        }
    })
    .await;
}

#[tokio::test]
async fn retry_after_is_waited_out_on_the_only_endpoint() {
    limit(15, async {
        let a = FaultyUpstream::failing("a", "429:retry=1:times=1").await;
        let file = route_file(vec![group("only", [ep(&a)])]);
        let (relay, _log) = start_route_file(&file, &[]).await;
        let r = ask(relay.listen, stream_req(CHAT, "m")).await;
        assert_served(&r, &a, "m", CHAT);
        assert_eq!(a.request_count(), 2);
        let gap = a.requests()[1].at - a.requests()[0].at;
        assert!(
            gap >= Duration::from_millis(950),
            "asked again after {gap:?}"
        );
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn retry_after_beyond_the_budget_is_not_waited_for() {
    limit(15, async {
        let a = FaultyUpstream::failing("a", "429:retry=5:times=1").await;
        let file = route_file(vec![group("only", [ep(&a)])]).set("retry_budget", "1s");
        let (relay, _log) = start_route_file(&file, &[]).await;
        let r = ask(relay.listen, stream_req(CHAT, "m")).await;
        assert_passed_through(&r, &a, "429", CHAT);
        assert_eq!(r.header("retry-after"), Some("5"));
        assert!(r.took < Duration::from_millis(1500), "took {:?}", r.took);
        assert_eq!(a.request_count(), 1);
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn retry_after_does_not_hold_up_a_request_another_endpoint_can_serve() {
    limit(15, async {
        let a = FaultyUpstream::failing("a", "429:retry=2:times=1").await;
        let b = FaultyUpstream::start("b").await;
        let file = route_file(vec![group("primary", [ep(&a)]), group("backup", [ep(&b)])]);
        let (relay, _log) = start_route_file(&file, &[]).await;
        let r = ask(relay.listen, stream_req(CHAT, "m")).await;
        assert_served(&r, &b, "m", CHAT);
        assert!(r.took < Duration::from_millis(900), "took {:?}", r.took);
        assert_eq!(a.request_count(), 1);
        stop_relay(relay).await;
    })
    .await;
}

// ---------------------------------------------------------------- after the first event

/// `a` fails after two events: the client keeps them and gets an honest
/// end; `b` is never asked.
async fn no_failover_after_the_first_event(fault: &str, code: &str, route: &[(&str, &str)]) {
    limit(15, async {
        let a = FaultyUpstream::failing("a", fault).await;
        let b = FaultyUpstream::start("b").await;
        let file = route.iter().fold(
            route_file(vec![group("primary", [ep(&a)]), group("backup", [ep(&b)])]),
            |f, (k, v)| f.set(k, v),
        );
        let (relay, _log) = start_route_file(&file, &[]).await;
        let r = ask(relay.listen, stream_req(CHAT, "m")).await;
        expect_error_event(&r, code).unwrap_or_else(|e| panic!("{fault}: {e}"));
        assert_eq!(served(&r), Some("a"));
        let first_two = healthy_events("a", "m", CHAT, false)[..2].concat();
        assert!(r.text().starts_with(&first_two), "{fault}: {}", r.text());
        assert_eq!((a.request_count(), b.request_count()), (1, 0), "{fault}");
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn a_reset_after_the_first_event_ends_the_stream_honestly() {
    no_failover_after_the_first_event("cut-after=2", "upstream_reset", &[]).await;
}

#[tokio::test]
async fn a_stream_ended_early_after_the_first_event_is_reported_truncated() {
    no_failover_after_the_first_event("truncate-after=2", "upstream_truncated", &[]).await;
}

#[tokio::test]
async fn a_stall_after_the_first_event_ends_the_stream_honestly() {
    let route = [("read_timeout", "500ms")];
    no_failover_after_the_first_event("stall-after=2", "upstream_timeout", &route).await;
}

// ---------------------------------------------------------------- deadlines

/// A silent single endpoint; `file` sets where the first-byte deadline
/// comes from. The client's error comes after about `want`.
async fn silent_until(file: RouteFile, a: &FaultyUpstream, want: Duration) {
    let (relay, _log) = start_route_file(&file, &[]).await;
    let r = ask(relay.listen, stream_req(CHAT, "m")).await;
    timed_out(&r).unwrap_or_else(|e| panic!("{}: {e}", file.toml()));
    let early = want.saturating_sub(Duration::from_millis(50));
    assert!(
        r.took >= early && r.took < want + Duration::from_millis(1500),
        "error after {:?}, want ~{want:?}\n{}",
        r.took,
        file.toml()
    );
    assert_eq!(a.request_count(), 1);
    stop_relay(relay).await;
}

#[tokio::test]
async fn the_first_byte_deadline_comes_from_the_group_then_the_route_then_the_top() {
    limit(20, async {
        let ms = Duration::from_millis;
        let top = |a: &FaultyUpstream| {
            route_file(vec![group("only", [ep(a)])]).top("upstream.first_byte_timeout", "700ms")
        };
        let a = FaultyUpstream::failing("a", "silent").await;
        silent_until(top(&a), &a, ms(700)).await;
        let a = FaultyUpstream::failing("a", "silent").await;
        silent_until(top(&a).set("first_byte_timeout", "400ms"), &a, ms(400)).await;
        let a = FaultyUpstream::failing("a", "silent").await;
        let file = route_file(vec![
            group("only", [ep(&a)]).set("first_byte_timeout", "250ms"),
        ])
        .top("upstream.first_byte_timeout", "10s")
        .set("first_byte_timeout", "10s");
        silent_until(file, &a, ms(250)).await;
    })
    .await;
}

/// Streams that never start are bounded too: a bare head and comments by
/// the first-event deadline, half an event by the read deadline (here set
/// at the top level).
#[tokio::test]
async fn streams_that_never_start_are_bounded_by_the_event_and_read_deadlines() {
    limit(20, async {
        let ms = Duration::from_millis;
        for fault in ["head-then-silent", "comments-only=100ms"] {
            let a = FaultyUpstream::failing("a", fault).await;
            let file =
                route_file(vec![group("only", [ep(&a)])]).set("first_event_timeout", "500ms");
            silent_until(file, &a, ms(500)).await;
        }
        let a = FaultyUpstream::failing("a", "partial-then-silent").await;
        let file = route_file(vec![group("only", [ep(&a)])])
            .top("upstream.read_timeout", "600ms")
            .set("first_event_timeout", "10s");
        silent_until(file, &a, ms(600)).await;
    })
    .await;
}

// ---------------------------------------------------------------- leaks

/// Four attempts that each sent something (comments, half an event, a
/// head) or nothing before failing; the client gets `d`'s stream and not a
/// byte more, and every failed attempt's connection is let go of.
#[tokio::test]
async fn nothing_of_the_failed_attempts_reaches_the_client() {
    limit(15, async {
        let a = FaultyUpstream::failing("a", "comments-only=100ms").await;
        let b = FaultyUpstream::failing("b", "partial-then-silent").await;
        let c = FaultyUpstream::failing("c", "head-then-silent").await;
        let d = FaultyUpstream::start("d").await;
        let file = route_file(vec![
            group("g0", [ep(&a)]).set("first_event_timeout", "500ms"),
            group("g1", [ep(&b)])
                .set("read_timeout", "300ms")
                .set("first_event_timeout", "10s"),
            group("g2", [ep(&c)]).set("first_event_timeout", "300ms"),
            group("g3", [ep(&d)]),
        ]);
        let (relay, _log) = start_route_file(&file, &[]).await;
        let r = ask(relay.listen, stream_req(CHAT, "m")).await;
        assert_served(&r, &d, "m", CHAT);
        for leaked in ["waiting for", "partial", "\"a\"", "chatcmpl-c"] {
            assert!(!r.text().contains(leaked), "{leaked:?} leaked");
        }
        let counts = [&a, &b, &c, &d].map(|u| u.request_count());
        assert_eq!(counts, [1, 1, 1, 1]);
        at_rest(relay.admin, &[&a, &b, &c, &d]).await;
        stop_relay(relay).await;
    })
    .await;
}
