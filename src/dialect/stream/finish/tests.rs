//! The completion signal per dialect: which events count, what the chat
//! tracker needs (every choice, the usage when asked), and that the cheap
//! pre-filter lets through every event the parse would count.

use bytes::Bytes;

use super::{ChatAsk, Finish, has_finish_reason, sentinel};
use crate::dialect::Dialect;
use crate::sse::Event;

fn event(parts: &[&[u8]]) -> Event {
    let mut e = Event::default();
    for p in parts {
        e.push(Bytes::copy_from_slice(p));
    }
    e
}

/// Feeds `raw` whole, then split into two segments at every point, to a
/// fresh tracker per split; all must agree. Returns the whole feed's
/// tracker.
fn feed(dialect: Dialect, ask: Option<ChatAsk>, events: &[&str]) -> Finish {
    let mut whole = Finish::new(dialect, ask);
    for raw in events {
        whole.on_event(&event(&[raw.as_bytes()]));
    }
    for (i, raw) in events.iter().enumerate() {
        for at in 0..=raw.len() {
            let mut split = Finish::new(dialect, ask);
            for (j, other) in events.iter().enumerate() {
                let bytes = other.as_bytes();
                if i == j {
                    split.on_event(&event(&[&bytes[..at], &bytes[at..]]));
                } else {
                    split.on_event(&event(&[bytes]));
                }
            }
            assert_eq!(
                split.is_complete(),
                whole.is_complete(),
                "{dialect:?} event {i} split at {at}: {events:?}"
            );
        }
    }
    whole
}

const ONE: ChatAsk = ChatAsk {
    choices: 1,
    usage: false,
};
const ONE_WITH_USAGE: ChatAsk = ChatAsk {
    choices: 1,
    usage: true,
};
const TWO: ChatAsk = ChatAsk {
    choices: 2,
    usage: false,
};

fn chunk(index: u64, content: &str, reason: &str) -> String {
    format!(
        "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":{index},\"delta\":{{\"content\":\"{content}\"}},\"logprobs\":null,\"finish_reason\":{reason}}}],\"usage\":null}}\n\n"
    )
}

const USAGE_CHUNK: &str = "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n";

fn chat(ask: ChatAsk, events: &[String]) -> bool {
    let refs: Vec<&str> = events.iter().map(String::as_str).collect();
    feed(Dialect::OpenAiChat, Some(ask), &refs).is_complete()
}

#[test]
fn chat_one_choice_finishes_on_its_finish_reason() {
    let head = vec![chunk(0, "Hel", "null"), chunk(0, "lo", "null")];
    assert!(!chat(ONE, &head), "no finish_reason yet");
    let mut done = head.clone();
    done.push(chunk(0, "", "\"stop\""));
    assert!(chat(ONE, &done));
    for reason in ["\"length\"", "\"tool_calls\"", "\"content_filter\""] {
        assert!(chat(ONE, &[chunk(0, "", reason)]), "{reason}");
    }
    // Spelled with spaces (Python's json.dumps), or on the content chunk.
    let spaced =
        "data: {\"choices\": [{\"index\": 0, \"delta\": {}, \"finish_reason\": \"stop\"}]}\n\n";
    assert!(chat(ONE, &[spaced.into()]));
    assert!(chat(ONE, &[chunk(0, "end", "\"stop\"")]));
    // Legacy completions: `text` instead of `delta`.
    let legacy = "data: {\"choices\":[{\"text\":\"!\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"length\"}]}\n\n";
    assert!(chat(ONE, &[legacy.into()]));
}

#[test]
fn chat_finish_reason_must_be_a_non_empty_string() {
    for reason in ["null", "\"\"", "0", "{}", "false", " null"] {
        assert!(!chat(ONE, &[chunk(0, "x", reason)]), "{reason}");
    }
    // The key inside a string is escaped: content, not a key.
    let quoted = chunk(0, "\\\"finish_reason\\\":\\\"stop\\\"", "null");
    assert!(!chat(ONE, &[quoted]));
    // A space before the colon is not looked for: never complete.
    let odd = "data: {\"choices\":[{\"index\":0,\"finish_reason\" : \"stop\"}]}\n\n";
    assert!(!chat(ONE, &[odd.into()]));
    // No JSON, no choices, or not a data field.
    let broken = "data: {\"choices\":[{\"index\":0,\"finish_reason\":\"stop\"\n\n";
    assert!(!chat(ONE, &[broken.into()]));
    let top = "data: {\"finish_reason\":\"stop\"}\n\n";
    assert!(!chat(ONE, &[top.into()]));
    let comment = ": {\"choices\":[{\"index\":0,\"finish_reason\":\"stop\"}]}\n\n";
    assert!(!chat(ONE, &[comment.into()]));
}

#[test]
fn chat_needs_the_usage_it_asked_for() {
    let finished = vec![chunk(0, "hi", "null"), chunk(0, "", "\"stop\"")];
    assert!(!chat(ONE_WITH_USAGE, &finished), "usage not yet arrived");
    let mut f = feed_strings(ONE_WITH_USAGE, &finished);
    f.usage_arrived();
    assert!(f.is_complete());
    // Usage before the finish_reason (servers that report it on every
    // chunk) counts too.
    let mut f = Finish::new(Dialect::OpenAiChat, Some(ONE_WITH_USAGE));
    f.usage_arrived();
    f.on_event(&event(&[chunk(0, "", "\"stop\"").as_bytes()]));
    assert!(f.is_complete());
    // Usage alone is not an answer.
    let mut f = feed_strings(ONE_WITH_USAGE, &[USAGE_CHUNK.into()]);
    f.usage_arrived();
    assert!(!f.is_complete());
}

fn feed_strings(ask: ChatAsk, events: &[String]) -> Finish {
    let refs: Vec<&str> = events.iter().map(String::as_str).collect();
    feed(Dialect::OpenAiChat, Some(ask), &refs)
}

#[test]
fn chat_every_choice_must_finish() {
    let one_done = vec![
        chunk(0, "a", "null"),
        chunk(1, "b", "null"),
        chunk(0, "", "\"stop\""),
        chunk(1, "c", "null"),
    ];
    assert!(!chat(TWO, &one_done));
    let mut both = one_done.clone();
    both.push(chunk(1, "", "\"length\""));
    assert!(chat(TWO, &both));
    // The same choice finishing twice is still one choice.
    let twice = vec![chunk(0, "", "\"stop\""), chunk(0, "", "\"stop\"")];
    assert!(!chat(TWO, &twice));
    // Finished in any order.
    assert!(chat(
        TWO,
        &[chunk(1, "", "\"stop\""), chunk(0, "", "\"stop\"")]
    ));
    // Both choices in one chunk, one of them finished.
    let pair = |r0: &str, r1: &str| {
        format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":{r0}}},{{\"index\":1,\"delta\":{{}},\"finish_reason\":{r1}}}]}}\n\n"
        )
    };
    assert!(!chat(TWO, &[pair("\"stop\"", "null")]));
    assert!(chat(TWO, &[pair("\"stop\"", "\"stop\"")]));
}

#[test]
fn chat_choices_named_by_parsed_chunks_count_too() {
    // The request said one choice (or nothing), the upstream sent two: a
    // parsed chunk naming index 1 makes it known.
    let odd = vec![chunk(1, "", "\"stop\"")];
    assert!(!chat(ONE, &odd), "choice 0 never finished");
    let pair = "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"},{\"index\":1,\"delta\":{},\"finish_reason\":null}]}\n\n";
    assert!(!chat(ONE, &[pair.into()]), "choice 1 seen, not finished");
    // A hostile index only makes the stream never complete.
    let huge = chunk(u64::MAX, "", "\"stop\"");
    assert!(!chat(ONE, &[chunk(0, "", "\"stop\""), huge]));
    // Without `index`, a choice's place in the array stands for it.
    let bare = "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
    assert!(chat(ONE, &[bare.into()]));
}

#[test]
fn chat_request_not_read_never_completes() {
    let f = feed(Dialect::OpenAiChat, None, &[&chunk(0, "", "\"stop\"")]);
    assert!(!f.is_complete());
    assert!(matches!(f, Finish::Never));
    // `n: 0` is refused upstream; it still means at least one choice.
    let zero = ChatAsk {
        choices: 0,
        usage: false,
    };
    assert!(!Finish::new(Dialect::OpenAiChat, Some(zero)).is_complete());
    assert!(chat(zero, &[chunk(0, "", "\"stop\"")]));
}

#[test]
fn chat_prefilter_parses_only_non_null_values() {
    for every in [false, true] {
        let ordinary = chunk(0, "finish_reason", "null");
        assert!(!has_finish_reason(&event(&[ordinary.as_bytes()]), every));
        let spaced = "data: {\"finish_reason\":  \t null}\n\n";
        assert!(!has_finish_reason(&event(&[spaced.as_bytes()]), every));
        let usage = USAGE_CHUNK.as_bytes();
        assert!(!has_finish_reason(&event(&[usage]), every));
        let stop = chunk(0, "", "\"stop\"");
        for at in 0..=stop.len() {
            let (a, b) = stop.as_bytes().split_at(at);
            assert!(has_finish_reason(&event(&[a, b]), every), "split at {at}");
        }
    }
    // Several choices in one chunk: only a look at every key finds the
    // second one's reason.
    let two = "data: {\"choices\":[{\"index\":0,\"finish_reason\":null},{\"index\":1,\"finish_reason\":\"stop\"}]}\n\n";
    assert!(has_finish_reason(&event(&[two.as_bytes()]), true));
    assert!(!has_finish_reason(&event(&[two.as_bytes()]), false));
}

fn anthropic(events: &[&str]) -> bool {
    feed(Dialect::Anthropic, None, events).is_complete()
}

const MESSAGE_START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"stop_reason\":null,\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n";
const TEXT: &str = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"stop_reason message_delta\"}}\n\n";
const DELTA: &str = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":5}}\n\n";

#[test]
fn anthropic_stops_on_message_delta_with_a_stop_reason() {
    assert!(!anthropic(&[MESSAGE_START, TEXT]));
    assert!(anthropic(&[MESSAGE_START, TEXT, DELTA]));
    assert!(anthropic(&[
        DELTA,
        "event: ping\ndata: {\"type\":\"ping\"}\n\n"
    ]));
    let tool = "event:message_delta\r\ndata: {\"delta\":{\"stop_reason\":\"tool_use\"}}\r\n\r\n";
    assert!(anthropic(&[tool]));
}

#[test]
fn anthropic_other_deltas_do_not_stop() {
    let null = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":null},\"usage\":{\"output_tokens\":5}}\n\n";
    let empty = "event: message_delta\ndata: {\"delta\":{\"stop_reason\":\"\"}}\n\n";
    let unnamed = "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"}}\n\n";
    let renamed =
        "event: message_delta\nevent: ping\ndata: {\"delta\":{\"stop_reason\":\"end_turn\"}}\n\n";
    let commented = ": event: message_delta\ndata: {\"delta\":{\"stop_reason\":\"end_turn\"}}\n\n";
    let top = "event: message_delta\ndata: {\"stop_reason\":\"end_turn\"}\n\n";
    for raw in [
        null,
        empty,
        unnamed,
        renamed,
        commented,
        top,
        TEXT,
        MESSAGE_START,
    ] {
        assert!(!anthropic(&[raw]), "{raw}");
    }
}

#[test]
fn other_dialects_have_no_signal() {
    let stop = chunk(0, "", "\"stop\"");
    for d in [Dialect::OpenAiResponses, Dialect::Generic] {
        let f = feed(d, Some(ONE), &[&stop, DELTA]);
        assert!(!f.is_complete(), "{d:?}");
    }
    assert_eq!(
        sentinel(Dialect::OpenAiChat),
        Some(&b"data: [DONE]\n\n"[..])
    );
    for d in [
        Dialect::Anthropic,
        Dialect::OpenAiResponses,
        Dialect::Generic,
    ] {
        assert_eq!(sentinel(d), None, "{d:?}");
    }
}
