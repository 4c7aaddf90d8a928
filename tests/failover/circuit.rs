//! The circuit breaker: consecutive failures open an endpoint's circuit
//! for an ejection time that grows with repeated ejections; then one
//! half-open probe, which closes it on success and reopens it on failure.
//! With every endpoint open, a request still goes to one (the least
//! recently failed), never refused.
//!
//! Assumed (not configurable in the spec): a base ejection of 5 s, growing
//! on each ejection (10 s the second time) up to 60 s, and a failure
//! threshold of at most 10 consecutive failures. The recovery test takes
//! about 20 s under those figures.

use std::time::{Duration, Instant};

use crate::support::*;
use crate::*;

/// Time between two requests of the recovery test.
const PACE: Duration = Duration::from_millis(500);

/// One request of the recovery test.
#[derive(Debug)]
struct Step {
    at: Instant,
    /// Whether the primary was asked.
    primary_asked: bool,
    served_by: String,
}

/// The index of the failed probe: failures, then a run of requests the
/// primary was not asked for (open), then one it was asked for and failed.
fn failed_probe(steps: &[Step]) -> Option<usize> {
    let opened = steps.iter().position(|s| !s.primary_asked)?;
    let probe = opened + steps[opened..].iter().position(|s| s.primary_asked)?;
    (opened > 0 && steps[probe].served_by != "a").then_some(probe)
}

#[tokio::test]
async fn the_circuit_opens_probes_and_closes_around_a_recovering_primary() {
    limit(55, async {
        let a = FaultyUpstream::failing("a", "503").await;
        let b = FaultyUpstream::start("b").await;
        let file = route_file(vec![group("primary", [ep(&a)]), group("backup", [ep(&b)])])
            .set("retry_backoff", "50ms");
        let (relay, _log) = start_route_file(&file, &[]).await;
        let start = Instant::now();
        let mut steps: Vec<Step> = Vec::new();
        let mut recovered_after: Option<usize> = None;
        loop {
            assert!(
                start.elapsed() < Duration::from_secs(50),
                "no recovery within 50 s: {steps:#?}"
            );
            let before = a.request_count();
            let r = ask(relay.listen, stream_req(CHAT, "m")).await;
            // Every request is answered whole, by one or the other.
            assert_eq!(r.status, 200, "request {}: {}", steps.len(), r.text());
            assert!(r.err.is_none(), "request {}: {:?}", steps.len(), r.err);
            steps.push(Step {
                at: Instant::now(),
                primary_asked: a.request_count() > before,
                served_by: served(&r).unwrap_or_default().to_owned(),
            });
            if recovered_after.is_none() {
                if let Some(p) = failed_probe(&steps) {
                    a.recover();
                    recovered_after = Some(p);
                }
            }
            let closed_again = recovered_after.is_some()
                && steps.len() >= 3
                && steps[steps.len() - 3..].iter().all(|s| s.served_by == "a");
            if closed_again {
                break;
            }
            tokio::time::sleep(PACE).await;
        }
        check_recovery(&steps);
        stop_relay(relay).await;
    })
    .await;
}

/// failures (asked, b served) -> open (not asked) -> failed probe (asked,
/// b served) -> open again, longer -> probe that succeeds (a served) ->
/// closed (a serves).
fn check_recovery(steps: &[Step]) {
    let trace = format!("{steps:#?}");
    let opened = steps.iter().position(|s| !s.primary_asked).unwrap();
    assert!(
        (1..=10).contains(&opened),
        "opened after {opened} failures: {trace}"
    );
    let failures = &steps[..opened];
    assert!(failures.iter().all(|s| s.served_by == "b"), "{trace}");
    let probe = failed_probe(steps).unwrap();
    assert!(probe - opened >= 2, "open for too short a while: {trace}");
    assert!(
        steps[opened..probe].iter().all(|s| s.served_by == "b"),
        "{trace}"
    );
    let success = probe
        + 1
        + steps[probe + 1..]
            .iter()
            .position(|s| s.primary_asked)
            .unwrap();
    assert!(success > probe + 1, "a failed probe reopens: {trace}");
    assert_eq!(
        steps[success].served_by, "a",
        "the probe succeeded: {trace}"
    );
    assert!(
        steps[success..].iter().all(|s| s.served_by == "a"),
        "closed again: {trace}"
    );
    let first = steps[probe].at - steps[opened - 1].at;
    let second = steps[success].at - steps[probe].at;
    assert!(
        first >= Duration::from_secs(1),
        "ejected {first:?}: {trace}"
    );
    assert!(
        second >= first + Duration::from_secs(1),
        "the second ejection ({second:?}) is longer than the first ({first:?}): {trace}"
    );
}

#[tokio::test]
async fn with_every_endpoint_open_the_least_recently_failed_is_still_asked() {
    limit(20, async {
        let a = FaultyUpstream::failing("a", "503").await;
        let b = FaultyUpstream::failing("b", "503").await;
        let file = route_file(vec![group("only", [ep(&a), ep(&b)])]).set("retry_attempts", "0");
        let (relay, _log) = start_route_file(&file, &[]).await;
        let mut asked = Vec::new();
        for i in 0..40 {
            let before = (a.request_count(), b.request_count());
            let r = ask(relay.listen, stream_req(CHAT, "m")).await;
            let after = (a.request_count(), b.request_count());
            let who = match (after.0 - before.0, after.1 - before.1) {
                (1, 0) => &a,
                (0, 1) => &b,
                other => panic!("request {i}: asked (a, b) = {other:?}"),
            };
            // Not refused: the endpoint's own answer.
            assert_passed_through(&r, who, "503", CHAT);
            asked.push(who.name.clone());
        }
        let tail = &asked[asked.len() - 8..];
        assert!(
            tail.windows(2).all(|w| w[0] != w[1]),
            "both open: each request goes to the one that failed longer ago: {asked:?}"
        );
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn a_lone_open_endpoint_is_still_asked() {
    limit(20, async {
        let a = FaultyUpstream::failing("a", "503").await;
        let file = route_file(vec![group("only", [ep(&a)])]).set("retry_attempts", "0");
        let (relay, _log) = start_route_file(&file, &[]).await;
        for i in 1..=15 {
            let r = ask(relay.listen, stream_req(CHAT, "m")).await;
            assert_passed_through(&r, &a, "503", CHAT);
            assert_eq!(a.request_count(), i);
        }
        stop_relay(relay).await;
    })
    .await;
}
