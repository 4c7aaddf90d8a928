//! The injection property: for any upstream stream, any chunking and any
//! injection moments, the reference parse of the downstream equals the
//! reference parse of the upstream. Checked exhaustively on short token
//! streams and randomly on realistic model-API streams.
//!
//! Every run also checks, after every step, that the scanner's position
//! equals the reference parser's position on the bytes written so far, and
//! that the scanner's own events parse to the upstream's events.

use bytes::Bytes;

use super::{BOM, CASES, dispatched};
use crate::sse::whatwg::{self, Dispatched};
use crate::sse::{Keepalive, ParsedEvent, Scanner};

/// What one run with injections produced.
struct Injected {
    output: Vec<u8>,
    forwarded: Vec<u8>,
    events: Vec<u8>,
    parsed: Vec<ParsedEvent>,
    fulls: usize,
}

/// Feeds `chunks`; before chunk `i` asks for `inject[i]` frames
/// (`inject[chunks.len()]`: after the last chunk), then finishes.
fn inject_run(chunks: &[&[u8]], inject: &[usize], ka: &Keepalive, max: usize) -> Injected {
    let mut s = Scanner::new(max);
    let mut client = whatwg::Parser::new();
    let (mut output, mut forwarded, mut events, mut parsed) = (vec![], vec![], vec![], vec![]);
    let mut fulls = 0;
    let mut on_event = |e: &crate::sse::Event| {
        e.segments()
            .iter()
            .for_each(|s| events.extend_from_slice(s));
        parsed.push(e.parse());
    };
    for i in 0..=chunks.len() {
        for _ in 0..inject.get(i).copied().unwrap_or(0) {
            let Some(frame) = ka.frame(&mut s) else {
                continue;
            };
            fulls += usize::from(frame == ka.full());
            output.extend_from_slice(&frame);
            client.feed(&frame);
            assert_eq!(
                s.position(),
                client.position(),
                "after frame, {chunks:?} {inject:?}"
            );
        }
        let Some(chunk) = chunks.get(i) else { break };
        let out = s.feed(Bytes::copy_from_slice(chunk), &mut on_event);
        let out = out.unwrap_or_else(|o| o.forward);
        output.extend_from_slice(&out);
        forwarded.extend_from_slice(&out);
        client.feed(&out);
        assert_eq!(
            s.position(),
            client.position(),
            "after chunk {i}, {chunks:?} {inject:?}"
        );
    }
    let rest = s.finish(&mut on_event);
    output.extend_from_slice(&rest);
    forwarded.extend_from_slice(&rest);
    Injected {
        output,
        forwarded,
        events,
        parsed,
        fulls,
    }
}

/// The property for comment frames, plus the scanner's own invariants.
fn check(input: &[u8], run: &Injected, ctx: &dyn std::fmt::Debug) {
    let want = whatwg::parse(input);
    assert_eq!(
        whatwg::parse(&run.output),
        want,
        "downstream differs: {ctx:?}"
    );
    assert_eq!(
        dispatched(&run.parsed),
        want,
        "scanner events differ: {ctx:?}"
    );
    let bom = if run.output.starts_with(BOM) {
        BOM.len()
    } else {
        0
    };
    let body = &run.forwarded[bom..];
    assert!(
        body.starts_with(&run.events),
        "events are not a prefix: {ctx:?}"
    );
}

/// Tokens for the exhaustive runs: field names that matter, delimiters,
/// line ends and a value byte.
const TOKENS: [&[u8]; 8] = [b"data", b"id", b"event", b":", b" ", b"\n", b"\r", b"x"];

/// Calls `f` with every token sequence of length `len` and the byte
/// offsets of its token boundaries.
fn each_sequence(len: u32, f: &mut dyn FnMut(&[u8], &[usize])) {
    let (mut bytes, mut cuts) = (vec![], vec![]);
    for mut code in 0..TOKENS.len().pow(len) {
        bytes.clear();
        cuts.clear();
        cuts.push(0);
        for _ in 0..len {
            bytes.extend_from_slice(TOKENS[code % TOKENS.len()]);
            code /= TOKENS.len();
            cuts.push(bytes.len());
        }
        f(&bytes, &cuts);
    }
}

#[test]
fn sse_inject_exhaustive_one_point() {
    let ka = Keepalive::comment();
    for len in 0..=6 {
        each_sequence(len, &mut |input, cuts| {
            for &cut in cuts {
                let chunks = [&input[..cut], &input[cut..]];
                let run = inject_run(&chunks, &[0, 1, 0], &ka, 1 << 10);
                check(input, &run, &chunks);
            }
        });
    }
}

/// Decodes `plan` (base `actions`) into one action per token boundary:
/// 0 nothing, 1 split, 2 split and inject once, 3 split and inject twice.
fn plan_run(input: &[u8], cuts: &[usize], mut plan: usize, actions: usize) -> Injected {
    let (mut chunks, mut inject, mut from) = (vec![], vec![0], 0);
    for &cut in cuts {
        let action = plan % actions;
        plan /= actions;
        if action > 0 {
            chunks.push(&input[from..cut]);
            inject.push(action - 1);
            from = cut;
        }
    }
    chunks.push(&input[from..]);
    inject.push(0);
    inject_run(&chunks, &inject, &Keepalive::comment(), 1 << 10)
}

#[test]
fn sse_inject_exhaustive_all_plans() {
    // Up to 3 tokens: every boundary nothing, split, inject once or twice;
    // 4 tokens: nothing, split or inject once.
    for (len, actions) in [(0, 4usize), (1, 4), (2, 4), (3, 4), (4, 3)] {
        each_sequence(len, &mut |input, cuts| {
            for plan in 0..actions.pow(cuts.len() as u32) {
                let run = plan_run(input, cuts, plan, actions);
                check(input, &run, &(input, plan));
            }
        });
    }
}

#[test]
fn sse_inject_every_split_of_handcrafted_cases() {
    let ka = Keepalive::comment();
    for input in CASES {
        for a in 0..=input.len() {
            for b in a..=input.len() {
                let chunks = [&input[..a], &input[a..b], &input[b..]];
                for inject in [[1, 0, 1, 0], [0, 2, 0, 1], [1, 1, 1, 1]] {
                    let run = inject_run(&chunks, &inject, &ka, 1 << 10);
                    check(input, &run, &(&chunks, inject));
                }
            }
        }
    }
}

#[test]
fn sse_inject_before_a_bom_drops_it() {
    let ka = Keepalive::comment();
    let input: &[u8] = b"\xEF\xBB\xBFdata: a\r\n\r\ndata: b\n\n";
    for cut in 0..=input.len() {
        let chunks = [&input[..cut], &input[cut..]];
        let run = inject_run(&chunks, &[1, 0, 0], &ka, 1 << 10);
        check(input, &run, &cut);
        assert_eq!(
            &run.output[..],
            b": keepalive\n\ndata: a\r\n\r\ndata: b\n\n"
        );
        // Without the drop, the BOM would poison the first field name.
        let mut naive = b": keepalive\n\n".to_vec();
        naive.extend_from_slice(input);
        assert_ne!(whatwg::parse(&naive), whatwg::parse(input));
    }
}

#[test]
fn sse_inject_after_cr_swallows_only_the_crs_own_lf() {
    let ka = Keepalive::comment();
    let cases: [(&[&[u8]], &[u8]); 4] = [
        (&[b"data: a\r", b"\n\n"], b"data: a\r\n: keepalive\n\n"),
        (&[b"data: a\r", b"\r"], b"data: a\r\n: keepalive\n\r"),
        (
            &[b"data: a\n\r", b"\ndata: b\n\n"],
            b"data: a\n\r\n: keepalive\ndata: b\n\n",
        ),
        (
            &[b"data: a\r", b"", b"\n", b"\n"],
            b"data: a\r\n: keepalive\n\n",
        ),
    ];
    for (chunks, want) in cases {
        let run = inject_run(chunks, &[0, 1, 0, 0, 0], &ka, 1 << 10);
        assert_eq!(run.output, want);
        check(&chunks.concat(), &run, &chunks);
    }
}

#[test]
fn sse_inject_anthropic_ping_adds_only_pings() {
    let ka = Keepalive::anthropic_ping();
    let is_ping = |e: &Dispatched| e.event_type == "ping";
    let mut rng = XorShift(0x5eed_0001);
    for _ in 0..300 {
        let input = realistic(&mut rng);
        let (chunks, inject) = random_plan(&mut rng, &input);
        let run = inject_run(&chunks, &inject, &ka, 1 << 16);
        let (want, got) = (whatwg::parse(&input), whatwg::parse(&run.output));
        let pings = |v: &[Dispatched]| v.iter().filter(|e| is_ping(e)).count();
        assert_eq!(pings(&got), pings(&want) + run.fulls);
        let strip = |v: Vec<Dispatched>| v.into_iter().filter(|e| !is_ping(e)).collect::<Vec<_>>();
        assert_eq!(strip(got), strip(want));
        assert_eq!(dispatched(&run.parsed), whatwg::parse(&input));
    }
}

#[test]
fn sse_inject_random_realistic_streams() {
    let ka = Keepalive::comment();
    let mut rng = XorShift(0x5eed_0002);
    let mut frames = 0;
    for _ in 0..2000 {
        let input = realistic(&mut rng);
        let (chunks, inject) = random_plan(&mut rng, &input);
        let max = [64, 512, 1 << 20][rng.below(3)];
        let run = inject_run(&chunks, &inject, &ka, max);
        frames += run.output.len() - run.forwarded.len();
        assert_eq!(whatwg::parse(&run.output), whatwg::parse(&input));
        if max == 1 << 20 {
            check(&input, &run, &chunks);
        }
    }
    assert!(
        frames > 10_000,
        "the plans injected too little: {frames} bytes"
    );
}

#[test]
fn sse_inject_random_bytes() {
    const ALPHABET: &[u8] = b"da:ti \n\r\n\r\xEF\xBB\xBFx";
    let ka = Keepalive::comment();
    let mut rng = XorShift(0x5eed_0003);
    for _ in 0..20_000 {
        let len = rng.below(40);
        let input: Vec<u8> = (0..len)
            .map(|_| ALPHABET[rng.below(ALPHABET.len())])
            .collect();
        let (chunks, inject) = random_plan(&mut rng, &input);
        let run = inject_run(&chunks, &inject, &ka, 1 << 10);
        check(&input, &run, &(&chunks, &inject));
    }
}

/// Tiny deterministic PRNG (xorshift64).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random chunking (empty, byte-sized, token-sized and TCP-sized chunks)
/// with injections before, between and after chunks.
fn random_plan<'a>(rng: &mut XorShift, input: &'a [u8]) -> (Vec<&'a [u8]>, Vec<usize>) {
    let (mut chunks, mut inject, mut from) = (vec![], vec![], 0);
    let max = [1, 4, 40, 2000][rng.below(4)];
    loop {
        inject.push(if rng.below(3) == 0 {
            1 + rng.below(3)
        } else {
            0
        });
        if from == input.len() && rng.below(2) == 0 {
            break;
        }
        let size = if rng.below(8) == 0 {
            0
        } else {
            1 + rng.below(max)
        };
        let to = input.len().min(from + size);
        chunks.push(&input[from..to]);
        from = to;
    }
    (chunks, inject)
}

/// A model-API stream (OpenAI chat, Responses or Anthropic) with random
/// line ends, comments, ids, an optional BOM and an optional cut-off end.
fn realistic(rng: &mut XorShift) -> Vec<u8> {
    let mut lines: Vec<String> = vec![];
    let events = 1 + rng.below(12);
    for n in 0..events {
        match rng.below(3) {
            0 => lines.push(format!(
                "data: {{\"id\":\"chatcmpl-1\",\"choices\":[{{\"delta\":{{\"content\":\"t{n}\"}}}}]}}"
            )),
            1 => {
                lines.push("event: response.output_text.delta".into());
                lines.push(format!("data: {{\"type\":\"response.output_text.delta\",\"sequence_number\":{n},\"delta\":\"w\"}}"));
            }
            _ => {
                lines.push("event: content_block_delta".into());
                lines.push(format!("data: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"text\":\"{n}\"}}}}"));
            }
        }
        match rng.below(6) {
            0 => lines.push(": comment".into()),
            1 => lines.push(format!("id: {n}")),
            2 => lines.extend(["", "event: ping", "data: {\"type\": \"ping\"}"].map(String::from)),
            _ => {}
        }
        lines.push(String::new());
    }
    lines.push("data: [DONE]".into());
    lines.push(String::new());
    let mut out = if rng.below(4) == 0 {
        BOM.to_vec()
    } else {
        vec![]
    };
    for line in lines {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice([&b"\n"[..], b"\r\n", b"\r"][rng.below(3)]);
    }
    let cut = if rng.below(4) == 0 {
        rng.below(out.len())
    } else {
        out.len()
    };
    out.truncate(cut);
    out
}
