//! `dialect::stream::ending` per event: the line-start filter against the
//! substring pre-filter it replaced (`src/dialect/stream/reference.rs`,
//! compiled in here), with the scanner alone as the baseline in the same
//! run.
//!
//! Streams: a 300-token OpenAI chat stream (~280-byte chunks, then the
//! usage chunk and `[DONE]`), a 300-token Responses stream and a 300-token
//! Anthropic stream. Chunkings: one event per chunk (every event one
//! segment) and 16 KiB pieces (about one event in 50 split across two).
//!
//! `sse::Event` has no public constructor and is not `Clone`: events exist
//! only inside the scanner's callback. So every variant runs the scanner;
//! the cost of `ending` is a variant's time minus `scanner_only`. One call
//! per event is what the relay does, but its cost is small next to the
//! scanner's and the difference is noisy; the `_x16` variants classify
//! every event 16 times, so one call costs
//! `(variant - scanner_only) / (300 * 16)`.
//!
//! The OpenAI chat groups also time the per-event check for the answer's
//! own completion signal (issue 15, `dialect::stream::finish`): one memmem
//! search for `"finish_reason":` and a look at the value after each hit
//! (`finish_reason` and `finish_reason_x16`, read against `scanner_only` the
//! same way). The crate does not export `Finish`, and its file cannot be
//! compiled in here as `reference` is (cargo builds harness-less benches
//! with `cfg(test)`, which pulls in its unit tests and their private
//! items), so [`finish_reason_non_null`] is a copy of that check; keep the
//! two alike.
//!
//! Run: `cargo bench --bench ending -- --warm-up-time 1 --measurement-time 3`.
// Test code: an unwrap is an assertion, and helpers are `pub` for the
// files that share them.
#![allow(clippy::unwrap_used, unreachable_pub)]

use std::hint::black_box;
use std::sync::LazyLock;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sse_edge::internals::Dialect;
use sse_edge::internals::{Ending, ending};
use sse_edge::internals::{Event, Scanner};

/// The pre-change `ending`, verbatim (also the unit tests' oracle).
#[path = "../src/dialect/stream/reference.rs"]
mod reference;

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

fn openai_responses() -> String {
    let mut s = String::from(
        "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_68af\",\"object\":\"response\",\"status\":\"in_progress\",\"model\":\"gpt-4o-mini-2024-07-18\",\"output\":[],\"usage\":null}}\n\n\
         event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"sequence_number\":1,\"output_index\":0,\"item\":{\"id\":\"msg_68af\",\"type\":\"message\",\"status\":\"in_progress\",\"content\":[],\"role\":\"assistant\"}}\n\n",
    );
    for i in 0..TOKENS - 3 {
        s += &format!(
            "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"sequence_number\":{},\"item_id\":\"msg_68af\",\"output_index\":0,\"content_index\":0,\"delta\":\" tok{i}\",\"logprobs\":[]}}\n\n",
            i + 2
        );
    }
    s + "event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":300,\"response\":{\"id\":\"resp_68af\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"gpt-4o-mini-2024-07-18\",\"usage\":{\"input_tokens\":19,\"output_tokens\":300,\"total_tokens\":319}}}\n\n"
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
fn event_chunks(all: &Bytes) -> Vec<Bytes> {
    let mut out = vec![];
    let mut from = 0;
    for end in memchr::memmem::find_iter(all, b"\n\n").map(|i| i + 2) {
        out.push(all.slice(from..end));
        from = end;
    }
    out
}

/// TCP-sized pieces.
fn tcp_chunks(all: &Bytes) -> Vec<Bytes> {
    (0..all.len())
        .step_by(16 << 10)
        .map(|i| all.slice(i..all.len().min(i + (16 << 10))))
        .collect()
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

/// Events by result (None, Complete, Error), each event classified
/// `calls` times (the last result counted).
fn classify(
    chunks: &[Bytes],
    dialect: Dialect,
    f: fn(Dialect, &Event) -> Ending,
    calls: usize,
) -> [usize; 3] {
    let mut n = [0; 3];
    scan(chunks, &mut |e| {
        for _ in 1..calls {
            black_box(f(black_box(dialect), black_box(e)));
        }
        n[f(black_box(dialect), black_box(e)) as usize] += 1;
    });
    n
}

/// Copy of `dialect::stream::finish`'s searcher: built once.
static FINISH_REASON: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(b"\"finish_reason\":"));

/// Copy of `has_finish_reason` in `src/dialect/stream/finish.rs`: whether
/// `"finish_reason":` occurs with a value other than `null` (the relay then
/// parses that one chunk; here it is only counted).
fn finish_reason_non_null(event: &Event) -> bool {
    let non_null_in = |hay: &[u8]| {
        let n = FINISH_REASON.needle().len();
        FINISH_REASON.find_iter(hay).any(|at| {
            let value = &hay[at + n..];
            let start = value
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(value.len());
            !value[start..].starts_with(b"null")
        })
    };
    match event.segments() {
        [one] => non_null_in(one),
        many => non_null_in(&many.concat()),
    }
}

/// Events whose `finish_reason` is not null, each event checked `calls`
/// times.
fn finish_reasons(chunks: &[Bytes], calls: usize) -> usize {
    let mut n = 0;
    scan(chunks, &mut |e| {
        for _ in 1..calls {
            black_box(finish_reason_non_null(black_box(e)));
        }
        n += usize::from(finish_reason_non_null(black_box(e)));
    });
    n
}

type Variant = (&'static str, fn(Dialect, &Event) -> Ending, usize);

const VARIANTS: [Variant; 4] = [
    ("line_starts", ending, 1),
    ("substring_reference", reference::ending, 1),
    ("line_starts_x16", ending, 16),
    ("substring_reference_x16", reference::ending, 16),
];

fn bench(c: &mut Criterion) {
    let streams = [
        ("openai_chat", Dialect::OpenAiChat, openai_chat()),
        (
            "openai_responses",
            Dialect::OpenAiResponses,
            openai_responses(),
        ),
        ("anthropic", Dialect::Anthropic, anthropic()),
    ];
    for (name, dialect, text) in streams {
        let all = Bytes::from(text);
        let per_event = event_chunks(&all);
        let events = per_event.len();
        assert_eq!(events, TOKENS);
        for (chunking, chunks) in [("per_event", per_event), ("tcp_16k", tcp_chunks(&all))] {
            assert_eq!(scanner_only(&chunks), events);
            for (_, f, calls) in VARIANTS {
                assert_eq!(classify(&chunks, dialect, f, calls), [events - 1, 1, 0]);
            }
            let mut g = c.benchmark_group(format!("ending/{name}/{chunking}"));
            g.throughput(Throughput::Elements(events as u64));
            g.bench_function("scanner_only", |b| b.iter(|| scanner_only(&chunks)));
            for (variant, f, calls) in VARIANTS {
                g.bench_function(variant, |b| b.iter(|| classify(&chunks, dialect, f, calls)));
            }
            if dialect == Dialect::OpenAiChat {
                // One chunk says "stop"; the usage chunk has no choices.
                assert_eq!(finish_reasons(&chunks, 1), 1);
                for (variant, calls) in [("finish_reason", 1), ("finish_reason_x16", 16)] {
                    g.bench_function(variant, |b| b.iter(|| finish_reasons(&chunks, calls)));
                }
            }
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
