//! Balancing within a group: least outstanding requests with two random
//! choices, honouring weights, streams counted until they end.
//!
//! Requests start 15-40 ms apart rather than all in the same instant, so
//! each choice sees the streams already open (what "outstanding" means);
//! held streams stay open until every request is in.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::support::*;
use crate::*;

/// `n` streaming requests, one every `gap`, each read to its end.
async fn streams(addr: SocketAddr, n: usize, gap: Duration) -> Vec<JoinHandle<Outcome>> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        tasks.push(tokio::spawn(ask(addr, stream_req(CHAT, "m"))));
        tokio::time::sleep(gap).await;
    }
    tasks
}

/// Every stream was served whole by one of `ups`.
async fn all_served(tasks: Vec<JoinHandle<Outcome>>, ups: &[&FaultyUpstream]) {
    for t in tasks {
        let r = t.await.unwrap();
        let by = served(&r).unwrap_or_default();
        let up = ups
            .iter()
            .find(|u| u.name == by)
            .unwrap_or_else(|| panic!("served by {by:?}: {}", r.text()));
        assert_served(&r, up, "m", CHAT);
    }
}

fn counts(ups: &[&FaultyUpstream]) -> Vec<usize> {
    ups.iter().map(|u| u.request_count()).collect()
}

/// Starts held streams until `n` are open across `ups`; returns the
/// tasks reading them.
async fn hold_open(
    addr: SocketAddr,
    ups: &[&FaultyUpstream],
    n: usize,
) -> Vec<JoinHandle<Outcome>> {
    for u in ups {
        u.hold();
    }
    let tasks = streams(addr, n, Duration::from_millis(15)).await;
    eventually(Duration::from_secs(10), "every stream in", || {
        counts(ups).iter().sum::<usize>() == n
            && ups.iter().map(|u| u.open_answers()).sum::<usize>() == n
    })
    .await;
    tasks
}

#[tokio::test]
async fn thirty_streams_spread_evenly_over_three_equal_endpoints() {
    limit(20, async {
        let a = FaultyUpstream::start("a").await;
        let b = FaultyUpstream::start("b").await;
        let c = FaultyUpstream::start("c").await;
        let ups = [&a, &b, &c];
        let file = route_file(vec![group("only", [ep(&a), ep(&b), ep(&c)])]);
        let (relay, _log) = start_route_file(&file, &[]).await;
        let tasks = hold_open(relay.listen, &ups, 30).await;
        let got = counts(&ups);
        for u in ups {
            u.release();
        }
        all_served(tasks, &ups).await;
        assert!(got.iter().all(|n| (8..=12).contains(n)), "a, b, c: {got:?}");
        at_rest(relay.admin, &ups).await;
        stop_relay(relay).await;
    })
    .await;
}

#[tokio::test]
async fn weights_share_held_streams_in_proportion() {
    limit(20, async {
        let a = FaultyUpstream::start("a").await;
        let b = FaultyUpstream::start("b").await;
        let ups = [&a, &b];
        let file = route_file(vec![group("only", [ep(&a).weight(3), ep(&b).weight(1)])]);
        let (relay, _log) = start_route_file(&file, &[]).await;
        let tasks = hold_open(relay.listen, &ups, 40).await;
        let got = counts(&ups);
        for u in ups {
            u.release();
        }
        all_served(tasks, &ups).await;
        assert!((26..=34).contains(&got[0]), "3:1 of 40, a and b: {got:?}");
        stop_relay(relay).await;
    })
    .await;
}

/// `c` takes 1.5 s before its head, so its streams stay outstanding while
/// `a`'s and `b`'s end at once: it gets few of them.
#[tokio::test]
async fn a_slow_endpoint_gets_fewer_streams() {
    limit(20, async {
        let a = FaultyUpstream::start("a").await;
        let b = FaultyUpstream::start("b").await;
        let c = FaultyUpstream::failing("c", "slow-first=1500ms").await;
        let ups = [&a, &b, &c];
        let file = route_file(vec![group("only", [ep(&a), ep(&b), ep(&c)])]);
        let (relay, _log) = start_route_file(&file, &[]).await;
        let tasks = streams(relay.listen, 30, Duration::from_millis(40)).await;
        all_served(tasks, &ups).await;
        let got = counts(&ups);
        assert_eq!(got.iter().sum::<usize>(), 30, "{got:?}");
        assert!(
            got[2] <= 7 && got[2] < got[0] && got[2] < got[1],
            "a, b, slow c: {got:?}"
        );
        stop_relay(relay).await;
    })
    .await;
}
