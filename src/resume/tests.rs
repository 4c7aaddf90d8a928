use std::collections::VecDeque;

use bytes::Bytes;

use super::log::{Log, Lost};
use super::{Token, parse_last_event_id};
use crate::sse::Stamp;
use crate::sse::{Scanner, whatwg};

const TOKEN: &str = "00112233445566778899aabbccddeeff";

fn token() -> Token {
    Token::parse(TOKEN).expect("valid token")
}

#[test]
fn tokens_round_trip_and_reject_anything_else() {
    assert_eq!(token().to_string(), TOKEN);
    assert_eq!(Token::parse(&TOKEN.to_uppercase()), Some(token()));
    for bad in [
        "",
        "0011",
        &TOKEN[..31],
        &format!("{TOKEN}0"),
        &TOKEN.replace('f', "g"),
    ] {
        assert_eq!(Token::parse(bad), None, "{bad:?}");
    }
    let (a, b) = (Token::random().unwrap(), Token::random().unwrap());
    assert_ne!(a, b);
    assert!(
        !format!("{a:?}").contains(&a.to_string()),
        "Debug must not leak the token"
    );
}

#[test]
fn last_event_ids_are_ours_only_in_our_shape() {
    let ours = format!("{TOKEN}:42");
    assert_eq!(parse_last_event_id(ours.as_bytes()), Some((token(), 42)));
    assert_eq!(
        parse_last_event_id(format!(" {TOKEN}:0 ").as_bytes()),
        Some((token(), 0))
    );
    for other in [
        "42".to_owned(),
        "chatcmpl-123".to_owned(),
        format!("{TOKEN}:"),
        format!("{TOKEN}:-1"),
        format!("{TOKEN}:1:2"),
        format!("{TOKEN}:99999999999999999999999"),
        format!("x{TOKEN}:1"),
    ] {
        assert_eq!(parse_last_event_id(other.as_bytes()), None, "{other:?}");
    }
}

/// Scans `wire` (cut into `chunk`-byte pieces) and stamps each event.
fn stamped(wire: &[u8], chunk: usize) -> Vec<u8> {
    let mut scanner = Scanner::new(1 << 20);
    let mut stamp = Stamp::new(token());
    let mut out: Vec<(u64, Bytes)> = Vec::new();
    for piece in wire.chunks(chunk) {
        let fed = scanner.feed(Bytes::copy_from_slice(piece), &mut |ev| {
            if ev.has_field() {
                stamp.event(ev.segments(), ev.terminator_len(), &mut out);
            }
        });
        assert!(fed.is_ok());
    }
    out.iter().flat_map(|(_, b)| b.to_vec()).collect()
}

#[test]
fn stamping_keeps_every_event_and_its_id_wins_whatever_the_line_ends_and_chunking() {
    let wire: &[u8] = b"data: a\n\n: only a comment\n\nid: up-1\ndata: b\r\n\r\n\
        event: x\rdata: c\r\rdata: d\r\ndata: e\n\r\nretry: 5\n\n\
        unknown: 1\n\n\xEF\xBB\xBFdata: poisoned\ndata: f\n\n";
    let want: Vec<_> = whatwg::parse(wire)
        .into_iter()
        .map(|e| (e.event_type, e.data))
        .collect();
    for chunk in 1..=wire.len() {
        let out = stamped(wire, chunk);
        let got = whatwg::parse(&out);
        let pairs: Vec<_> = got
            .iter()
            .map(|e| (e.event_type.clone(), e.data.clone()))
            .collect();
        assert_eq!(
            pairs,
            want,
            "chunk {chunk}: {:?}",
            String::from_utf8_lossy(&out)
        );
        // Seqs count stamped blocks; `retry: 5` is one but dispatches nothing.
        let ids: Vec<_> = got.iter().map(|e| e.last_event_id.clone()).collect();
        let expect: Vec<_> = [1, 2, 3, 4, 6]
            .iter()
            .map(|i| format!("{TOKEN}:{i}"))
            .collect();
        assert_eq!(ids, expect, "chunk {chunk}");
        assert!(!String::from_utf8_lossy(&out).contains("only a comment"));
    }
}

fn log_of(events: &[(u64, &'static str)]) -> Log {
    let mut log = Log::new();
    for (seq, b) in events {
        log.push(*seq, Bytes::from_static(b.as_bytes()));
    }
    log
}

#[test]
fn the_log_finds_event_starts_and_forgets_dropped_events() {
    // Event 2 came in two parts.
    let mut log = log_of(&[(1, "aaaa"), (2, "bb"), (2, "bb"), (3, "cc")]);
    assert_eq!(log.start_of(1), Ok(0));
    assert_eq!(log.start_of(2), Ok(4));
    assert_eq!(log.start_of(3), Ok(8));
    assert_eq!(log.start_of(4), Ok(10), "not sent yet: the end");
    let mut out = VecDeque::new();
    assert_eq!(log.read_from(4, &mut out), Ok(10));
    assert_eq!(out, ["bb", "bb", "cc"]);
    // Parts past the floor stay.
    assert_eq!(log.drop_oldest(3), None);
    assert_eq!(log.drop_oldest(4), Some(4));
    // Dropping one part of event 2 makes event 2 unreplayable, not event 3.
    assert_eq!(log.drop_oldest(10), Some(2));
    assert_eq!(log.start_of(2), Err(Lost { oldest: 3 }));
    assert_eq!(log.start_of(3), Ok(8));
    assert_eq!(log.held(), 4);
    let mut out = VecDeque::new();
    assert_eq!(log.read_from(0, &mut out), Err(Lost { oldest: 3 }));
    assert_eq!(log.clear(), 4);
    assert_eq!(log.start_of(3), Err(Lost { oldest: 4 }));
    assert_eq!(log.start_of(4), Ok(10));
}
