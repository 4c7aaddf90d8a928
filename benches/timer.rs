//! Heartbeat timer cost: the per-connection hashed wheel against the naive
//! design (one `tokio::time::Sleep` per stream, reset on every chunk).
//!
//! - `per_chunk`: what forwarding one chunk costs the timer. The wheel
//!   stores a timestamp; the naive design re-registers its `Sleep` with the
//!   runtime's timer.
//! - `heartbeat_round`: 1,000 silent streams all reaching their heartbeat
//!   deadline and re-arming, on a paused clock (timer work only, no I/O).
//!
//! Run: `cargo bench --bench timer`.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sse_edge::internals::Heartbeat;
use sse_edge::internals::Wheel;
use tokio::time::{Instant, Sleep};

const INTERVAL: Duration = Duration::from_secs(15);
const STREAMS: usize = 1_000;

fn runtime(paused: bool) -> tokio::runtime::Runtime {
    let mut b = tokio::runtime::Builder::new_current_thread();
    b.enable_time();
    if paused {
        b.start_paused(true);
    }
    b.build().expect("runtime")
}

fn per_chunk(c: &mut Criterion) {
    let rt = runtime(false);
    let _guard = rt.enter();
    let mut g = c.benchmark_group("timer/per_chunk");
    g.throughput(Throughput::Elements(1));
    let wheel = Arc::new(Wheel::new(INTERVAL / 16));
    let mut hb = Heartbeat::new(wheel, INTERVAL);
    g.bench_function("wheel_record_write", |b| {
        b.iter(|| hb.wrote(Instant::now()))
    });
    let mut sleep: Pin<Box<Sleep>> = Box::pin(tokio::time::sleep(INTERVAL));
    g.bench_function("naive_sleep_reset", |b| {
        b.iter(|| sleep.as_mut().reset(Instant::now() + INTERVAL))
    });
    g.finish();
}

/// Wheel: every stream waits on its entry; one driver fires them.
async fn wheel_round(streams: usize) {
    let wheel = Arc::new(Wheel::new(INTERVAL / 16));
    let driver = tokio::spawn({
        let w = wheel.clone();
        async move { w.drive().await }
    });
    let mut tasks = Vec::with_capacity(streams);
    for _ in 0..streams {
        let mut hb = Heartbeat::new(wheel.clone(), INTERVAL);
        tasks.push(tokio::spawn(async move {
            poll_fn(|cx| hb.poll_due(cx)).await;
            hb.rearm();
        }));
    }
    tokio::time::advance(INTERVAL + INTERVAL / 8).await;
    for t in tasks {
        let _ = t.await;
    }
    driver.abort();
}

/// Naive: every stream owns a `Sleep`.
async fn naive_round(streams: usize) {
    let mut tasks = Vec::with_capacity(streams);
    for _ in 0..streams {
        tasks.push(tokio::spawn(async move {
            let mut sleep = Box::pin(tokio::time::sleep(INTERVAL));
            sleep.as_mut().await;
            sleep.as_mut().reset(Instant::now() + INTERVAL);
        }));
    }
    tokio::time::advance(INTERVAL + INTERVAL / 8).await;
    for t in tasks {
        let _ = t.await;
    }
}

fn heartbeat_round(c: &mut Criterion) {
    let mut g = c.benchmark_group("timer/heartbeat_round");
    g.throughput(Throughput::Elements(STREAMS as u64));
    g.bench_function("wheel", |b| {
        b.iter_batched(
            || runtime(true),
            |rt| rt.block_on(wheel_round(STREAMS)),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("naive_sleep", |b| {
        b.iter_batched(
            || runtime(true),
            |rt| rt.block_on(naive_round(STREAMS)),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, per_chunk, heartbeat_round);
criterion_main!(benches);
