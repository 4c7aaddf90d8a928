//! Usage-extraction cost per stream: the relay's way (a memmem test per
//! event, simd-json only for the few candidates) against the naive way (a
//! full simd-json parse of every event's data), with the scanner alone as
//! the baseline in the same run.
//!
//! Streams: a 300-token OpenAI chat stream with include_usage (every chunk
//! carries `"usage":null`, then the usage-only chunk and `[DONE]`) and a
//! 300-token Anthropic stream. The chunks (one per event) are cut once,
//! outside the timed loop.
//!
//! `sse::Event` has no public constructor and is not `Clone`: events exist
//! only inside the scanner's callback. So every variant runs the scanner;
//! the extraction cost is a variant's time minus `scanner_only`.
//!
//! Run: `cargo bench --bench usage -- --warm-up-time 1 --measurement-time 3`.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sse_edge::internals::Dialect;
use sse_edge::internals::{Event, Scanner};
use sse_edge::internals::{Seen, StreamUsage};

/// Events per stream.
const TOKENS: usize = 300;

fn openai_chat() -> String {
    let head = r#"{"id":"chatcmpl-BZ3kq9","object":"chat.completion.chunk","created":1747000000,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[{"index":0,"delta":"#;
    let mut s = format!(
        "data: {head}{{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
    );
    for i in 0..TOKENS - 4 {
        s += &format!(
            "data: {head}{{\"content\":\" tok{i}\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n"
        );
    }
    s += &format!(
        "data: {head}{{}},\"logprobs\":null,\"finish_reason\":\"stop\"}}],\"usage\":null}}\n\n"
    );
    s += r#"data: {"id":"chatcmpl-BZ3kq9","object":"chat.completion.chunk","created":1747000000,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_34a54ae93c","choices":[],"usage":{"prompt_tokens":19,"completion_tokens":300,"total_tokens":319,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#;
    s + "\n\ndata: [DONE]\n\n"
}

fn anthropic() -> String {
    let mut s = String::from(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5-20250929\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\n\n\
         event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
         event: ping\ndata: {\"type\": \"ping\"}\n\n",
    );
    for i in 0..TOKENS - 6 {
        s += &format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\" tok{i}\"}}}}\n\n"
        );
    }
    s + "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
         event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":300}}\n\n\
         event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
}

/// One chunk per event: cut after every blank line.
fn event_chunks(all: &str) -> Vec<Bytes> {
    let all = Bytes::copy_from_slice(all.as_bytes());
    let mut out = vec![];
    let mut from = 0;
    for end in memchr::memmem::find_iter(&all, b"\n\n").map(|i| i + 2) {
        out.push(all.slice(from..end));
        from = end;
    }
    out
}

/// Feeds the chunks through a fresh scanner, handing every event to `f`.
fn scan(chunks: &[Bytes], f: &mut dyn FnMut(&Event)) {
    let mut s = Scanner::new(1 << 20);
    for c in chunks {
        let _ = black_box(s.feed(c.clone(), f));
    }
}

fn scanner_only(chunks: &[Bytes]) -> usize {
    let mut n = 0;
    scan(chunks, &mut |e| n += usize::from(!black_box(e).is_empty()));
    n
}

/// The relay's way.
fn stream_usage(chunks: &[Bytes], dialect: Dialect) -> usize {
    let mut tracker = StreamUsage::new(dialect);
    let mut n = 0;
    scan(chunks, &mut |e| {
        n += usize::from(tracker.on_event(e) != Seen::Other);
    });
    assert!(black_box(tracker.usage()).is_some());
    n
}

/// The naive way: every event's data parsed.
fn full_parse(chunks: &[Bytes]) -> usize {
    let mut n = 0;
    scan(chunks, &mut |e| {
        if let Some(data) = e.parse().data {
            let mut buf = data.into_bytes();
            n += usize::from(black_box(simd_json::to_borrowed_value(&mut buf)).is_ok());
        }
    });
    n
}

fn bench(c: &mut Criterion) {
    let streams = [
        ("openai_chat", Dialect::OpenAiChat, openai_chat()),
        ("anthropic", Dialect::Anthropic, anthropic()),
    ];
    for (name, dialect, text) in streams {
        let chunks = event_chunks(&text);
        let events = scanner_only(&chunks);
        assert_eq!(events, chunks.len());
        assert!(stream_usage(&chunks, dialect) >= 1);
        let mut g = c.benchmark_group(format!("usage/{name}"));
        g.throughput(Throughput::Elements(events as u64));
        g.bench_function("scanner_only", |b| b.iter(|| scanner_only(&chunks)));
        g.bench_function("stream_usage", |b| {
            b.iter(|| stream_usage(&chunks, dialect))
        });
        g.bench_function("full_simd_json_parse", |b| b.iter(|| full_parse(&chunks)));
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
