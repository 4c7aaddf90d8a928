//! What a resumable stream adds per event: stamping each event with its id
//! (scanner + `Stamp`, against the scanner alone), and the replay log
//! (every part pushed, read back by a live reader, one replay lookup per
//! event, and eviction to a 64 KiB bound).
//!
//! Stream: 300 OpenAI chat chunks, one event per chunk, cut once outside
//! the timed loop.
//!
//! Run: `cargo bench --bench resume -- --warm-up-time 1 --measurement-time 3`.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

use std::collections::VecDeque;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sse_edge::internals::Scanner;
use sse_edge::internals::Stamp;
use sse_edge::internals::{Log, Token};

const EVENTS: usize = 300;

fn chunks() -> Vec<Bytes> {
    (0..EVENTS)
        .map(|i| {
            Bytes::from(format!(
                "data: {{\"id\":\"chatcmpl-BZ3kq9\",\"object\":\"chat.completion.chunk\",\"created\":1747000000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\" tok{i}\"}},\"finish_reason\":null}}],\"usage\":null}}\n\n"
            ))
        })
        .collect()
}

fn token() -> Token {
    Token::parse("0123456789abcdef0123456789abcdef").expect("valid token")
}

fn scanner_only(chunks: &[Bytes]) -> usize {
    let mut s = Scanner::new(1 << 20);
    let mut n = 0;
    for c in chunks {
        let _ = black_box(s.feed(c.clone(), &mut |e| n += e.len()));
    }
    n
}

fn stamped(chunks: &[Bytes]) -> Vec<(u64, Bytes)> {
    let mut s = Scanner::new(1 << 20);
    let mut stamp = Stamp::new(token());
    let mut out = Vec::with_capacity(2 * chunks.len());
    for c in chunks {
        let _ = black_box(s.feed(c.clone(), &mut |e| {
            if e.has_field() {
                stamp.event(e.segments(), e.terminator_len(), &mut out);
            }
        }));
    }
    out
}

/// The producer's and a live reader's work on the log for one stream.
fn log_round(parts: &[(u64, Bytes)]) -> u64 {
    let mut log = Log::new();
    let mut pending = VecDeque::new();
    let mut offset = 0;
    for (seq, b) in parts {
        log.push(*seq, b.clone());
        offset = log.read_from(offset, &mut pending).unwrap_or(offset);
        let _ = black_box(log.start_of(*seq));
        while log.held() > 64 << 10 && log.drop_oldest(offset).is_some() {}
        pending.clear();
    }
    offset
}

fn bench(c: &mut Criterion) {
    let chunks = chunks();
    let parts = stamped(&chunks);
    assert_eq!(
        parts.len(),
        2 * EVENTS,
        "each event: its bytes and an id line"
    );
    let mut g = c.benchmark_group("resume/openai_chat");
    g.throughput(Throughput::Elements(EVENTS as u64));
    g.bench_function("scanner_only", |b| b.iter(|| scanner_only(&chunks)));
    g.bench_function("scanner_and_stamp", |b| b.iter(|| stamped(&chunks)));
    g.bench_function("log_push_read_evict", |b| b.iter(|| log_round(&parts)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
