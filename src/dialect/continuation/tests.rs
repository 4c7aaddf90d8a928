use super::*;

fn events(s: &str) -> Vec<Bytes> {
    vec![Bytes::from(s.to_owned())]
}

fn chat_chunk(content: &str) -> String {
    format!(
        "data: {{\"id\":\"c\",\"model\":\"m\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{content:?}}},\"finish_reason\":null}}]}}\n\n"
    )
}

const ROLE: &str = "data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n";

#[test]
fn chat_text_is_collected() {
    let s = format!("{ROLE}{}{}", chat_chunk("Hello"), chat_chunk(" wor"));
    let d = delivered(Dialect::OpenAiChat, &events(&s)).unwrap();
    assert_eq!(d.text, "Hello wor");
    assert_eq!(d.tokens, 2);
}

#[test]
fn chat_tool_calls_and_choices_refuse() {
    let tool = "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"a\"}}]},\"finish_reason\":null}]}\n\n";
    assert!(delivered(Dialect::OpenAiChat, &events(tool)).is_err());
    let two = "data: {\"choices\":[{\"index\":1,\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}\n\n";
    assert!(delivered(Dialect::OpenAiChat, &events(two)).is_err());
    let reasoning = "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"hmm\"},\"finish_reason\":null}]}\n\n";
    assert!(delivered(Dialect::OpenAiChat, &events(reasoning)).is_err());
}

#[test]
fn anthropic_text_blocks_and_refusals() {
    let s = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{}}\n\n\
             event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
             event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello \"}}\n\n";
    let d = delivered(Dialect::Anthropic, &events(s)).unwrap();
    assert_eq!(d.text, "Hello ");
    assert_eq!(d.open_block, Some(0));
    let tool = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":{}}}\n\n";
    assert!(delivered(Dialect::Anthropic, &events(tool)).is_err());
}

#[test]
fn requests_carry_the_prefill_in_each_mechanism() {
    let d = Delivered {
        dialect: Dialect::OpenAiChat,
        text: "Hello wor".into(),
        tokens: 2,
        open_block: None,
        blocks: 0,
    };
    let original = br#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let out = request(original, &d, Mechanism::ContinueFinalMessage).unwrap();
    let mut copy = out.to_vec();
    let v = simd_json::to_owned_value(&mut copy).unwrap();
    let msgs = v.get("messages").unwrap().as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[1].get("role").unwrap().as_str(), Some("assistant"));
    assert_eq!(msgs[1].get("content").unwrap().as_str(), Some("Hello wor"));
    assert_eq!(
        v.get("continue_final_message").unwrap().as_bool(),
        Some(true)
    );
    assert_eq!(
        v.get("add_generation_prompt").unwrap().as_bool(),
        Some(false)
    );
    assert_eq!(v.get("stream").unwrap().as_bool(), Some(true));
    assert!(request(original, &d, Mechanism::AnthropicPrefill).is_none());

    let a = Delivered {
        dialect: Dialect::Anthropic,
        text: "Hello ".into(),
        tokens: 1,
        open_block: Some(0),
        blocks: 1,
    };
    let out = request(original, &a, Mechanism::AnthropicPrefill).unwrap();
    let mut copy = out.to_vec();
    let v = simd_json::to_owned_value(&mut copy).unwrap();
    let msgs = v.get("messages").unwrap().as_array().unwrap();
    assert_eq!(msgs[1].get("content").unwrap().as_str(), Some("Hello"));
    assert!(v.get("continue_final_message").is_none());
}

fn one_event(s: &str) -> Event {
    let mut scanner = Scanner::new(usize::MAX);
    let mut out: Option<Event> = None;
    let _ = scanner.feed(Bytes::from(s.to_owned()), &mut |ev: &Event| {
        out.get_or_insert_with(|| {
            let mut copy = Event::default();
            for seg in ev.segments() {
                copy.push(seg.clone());
            }
            copy
        });
    });
    out.unwrap()
}

#[test]
fn chat_splice_drops_the_role_delta_and_moves_usage() {
    let d = Delivered {
        dialect: Dialect::OpenAiChat,
        text: "Hello".into(),
        tokens: 3,
        open_block: None,
        blocks: 0,
    };
    let mut s = Splice::new(&d);
    assert_eq!(s.event(&one_event(ROLE)), Spliced::Drop);
    assert_eq!(s.event(&one_event(&chat_chunk(" world"))), Spliced::Keep);
    let usage = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":5,\"total_tokens\":25}}\n\n";
    let Spliced::Replace(b) = s.event(&one_event(usage)) else {
        panic!("usage rewritten")
    };
    let text = std::str::from_utf8(&b).unwrap();
    assert!(text.starts_with("data: {"), "{text}");
    assert!(text.contains("\"prompt_tokens\":17"), "{text}");
    assert!(text.contains("\"completion_tokens\":8"), "{text}");
    assert!(text.contains("\"total_tokens\":25"), "{text}");
    assert_eq!(s.event(&one_event("data: [DONE]\n\n")), Spliced::Keep);
}

#[test]
fn anthropic_splice_continues_the_open_block() {
    let d = Delivered {
        dialect: Dialect::Anthropic,
        text: "Hello ".into(),
        tokens: 2,
        open_block: Some(1),
        blocks: 2,
    };
    let mut s = Splice::new(&d);
    let start = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n";
    assert_eq!(s.event(&one_event(start)), Spliced::Drop);
    let block = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
    assert_eq!(s.event(&one_event(block)), Spliced::Drop);
    let delta = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" world\"}}\n\n";
    let Spliced::Replace(b) = s.event(&one_event(delta)) else {
        panic!("delta re-indexed")
    };
    let text = std::str::from_utf8(&b).unwrap();
    assert!(
        text.starts_with("event: content_block_delta\ndata: "),
        "{text}"
    );
    assert!(text.contains("\"index\":1"), "{text}");
    assert!(text.contains("\"text\":\"world\""), "{text}");
    let md = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":4}}\n\n";
    let Spliced::Replace(b) = s.event(&one_event(md)) else {
        panic!("usage rewritten")
    };
    assert!(
        std::str::from_utf8(&b)
            .unwrap()
            .contains("\"output_tokens\":6")
    );
}
