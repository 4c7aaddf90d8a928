//! Scanner throughput on realistic model-API streams, with baselines in the
//! same run: the `eventsource-stream` crate (the parser under
//! reqwest-eventsource and async-openai) and the crate's own WHATWG
//! reference parser, fed exactly the same chunks.
//!
//! Streams: an OpenAI chat-completions stream and an Anthropic messages
//! stream of 300 token events each, repeated to about 1 MiB. Chunkings:
//! TCP-sized (16 KiB), one event per chunk, and 40-byte pieces.
//!
//! Run: `cargo bench --bench scanner` (add `-- --quick` for a short run).
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

use std::convert::Infallible;
use std::hint::black_box;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eventsource_stream::EventStream;
use futures_core::Stream;
use sse_edge::internals::{Scanner, whatwg};

const TOKENS: usize = 300;
const TARGET: usize = 1 << 20;

fn openai_chat() -> Vec<u8> {
    let head = r#"{"id":"chatcmpl-BZ3kq9","object":"chat.completion.chunk","created":1747000000,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":"#;
    let mut s = format!(
        "data: {head}{{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
    );
    for i in 0..TOKENS {
        s += &format!(
            "data: {head}{{\"content\":\" tok{i}\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
        );
    }
    s += &format!(
        "data: {head}{{}},\"logprobs\":null,\"finish_reason\":\"stop\"}}],\"usage\":null}}\n\n"
    );
    s += r#"data: {"id":"chatcmpl-BZ3kq9","object":"chat.completion.chunk","created":1747000000,"model":"gpt-4o-mini-2024-07-18","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":300,"total_tokens":319,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#;
    s += "\n\ndata: [DONE]\n\n";
    s.into_bytes()
}

fn anthropic() -> Vec<u8> {
    let mut s = String::from(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\n\n\
         event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
         event: ping\ndata: {\"type\": \"ping\"}\n\n",
    );
    for i in 0..TOKENS {
        s += &format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\" tok{i}\"}}}}\n\n"
        );
    }
    s += "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
          event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":300}}\n\n\
          event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    s.into_bytes()
}

/// Repeats one stream to about `TARGET` bytes.
fn repeated(one: &[u8]) -> Bytes {
    Bytes::from(one.repeat(TARGET.div_ceil(one.len())))
}

fn fixed_chunks(all: &Bytes, size: usize) -> Vec<Bytes> {
    (0..all.len())
        .step_by(size)
        .map(|i| all.slice(i..all.len().min(i + size)))
        .collect()
}

/// One chunk per event: cut after every blank line.
fn event_chunks(all: &Bytes) -> Vec<Bytes> {
    let mut out = vec![];
    let mut from = 0;
    for end in memchr::memmem::find_iter(all, b"\n\n").map(|i| i + 2) {
        out.push(all.slice(from..end));
        from = end;
    }
    if from < all.len() {
        out.push(all.slice(from..));
    }
    out
}

fn scanner_events(chunks: &[Bytes]) -> usize {
    let mut s = Scanner::new(1 << 20);
    let mut n = 0;
    for c in chunks {
        let out = s.feed(c.clone(), &mut |e| {
            n += usize::from(!black_box(e).is_empty())
        });
        let _ = black_box(out);
    }
    n
}

/// The relay's real use: every event is also searched for a usage marker.
fn scanner_contains(chunks: &[Bytes]) -> usize {
    let mut s = Scanner::new(1 << 20);
    let mut n = 0;
    let usage = memchr::memmem::Finder::new(b"\"usage\":{");
    for c in chunks {
        let _ = black_box(s.feed(c.clone(), &mut |e| {
            n += usize::from(e.contains_with(&usage))
        }));
    }
    n
}

fn reference_events(chunks: &[Bytes]) -> usize {
    let mut p = whatwg::Parser::new();
    for c in chunks {
        p.feed(c);
    }
    black_box(p.events()).len()
}

/// Hands out borrowed chunks, always ready.
struct Chunks<'a>(std::slice::Iter<'a, Bytes>);

impl<'a> Stream for Chunks<'a> {
    type Item = Result<&'a Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.0.next().map(Ok))
    }
}

fn eventsource_events(chunks: &[Bytes]) -> usize {
    let mut stream = pin!(EventStream::new(Chunks(chunks.iter())));
    let mut cx = Context::from_waker(Waker::noop());
    let mut n = 0;
    while let Poll::Ready(Some(item)) = stream.as_mut().poll_next(&mut cx) {
        n += usize::from(black_box(item).is_ok());
    }
    n
}

fn bench(c: &mut Criterion) {
    let streams = [
        ("openai_chat", repeated(&openai_chat())),
        ("anthropic", repeated(&anthropic())),
    ];
    for (name, all) in streams {
        let chunkings = [
            ("tcp_16k", fixed_chunks(&all, 16 * 1024)),
            ("per_event", event_chunks(&all)),
            ("bytes_40", fixed_chunks(&all, 40)),
        ];
        for (cut, chunks) in chunkings {
            let events = reference_events(&chunks);
            assert_eq!(scanner_events(&chunks), events, "{name}/{cut}");
            assert_eq!(eventsource_events(&chunks), events, "{name}/{cut}");
            let mut g = c.benchmark_group(format!("{name}/{cut}"));
            g.throughput(Throughput::Bytes(all.len() as u64));
            g.bench_function("sse_edge_scanner", |b| b.iter(|| scanner_events(&chunks)));
            g.bench_function("sse_edge_scanner_contains", |b| {
                b.iter(|| scanner_contains(&chunks))
            });
            g.bench_function("eventsource_stream", |b| {
                b.iter(|| eventsource_events(&chunks))
            });
            g.bench_function("whatwg_reference", |b| b.iter(|| reference_events(&chunks)));
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
