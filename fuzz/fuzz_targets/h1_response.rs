//! The upstream HTTP/1.1 response codec (`upstream::h1::{head, decode}`)
//! on arbitrary bytes and chunking.
//!
//! Checked: no panic; what comes out (head refused or parsed, status,
//! framing, body data, trailers, where and why it failed, bytes left after
//! the body) is the same whether the input arrives whole or cut where the
//! input says; no empty data frame; a length-framed body yields exactly
//! its length (or everything there is); a decoded chunked body re-encoded
//! as chunks decodes to the same data; an accepted status is in 100..=599;
//! an accepted body with `Transfer-Encoding` lists exactly `chunked` (or
//! `identity`, read to the close), is never reused after a
//! `Content-Length` and keeps none; a refused coding names what was sent.
#![no_main]

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, header};
use libfuzzer_sys::fuzz_target;
use sse_edge::internals::h1::decode::Decoder;
use sse_edge::internals::h1::head::{self, Framing, FramingError};

#[path = "common.rs"]
mod common;

use common::{Step, steps, upstream};

#[derive(Debug, PartialEq)]
enum Outcome {
    /// The input ended before the head did.
    NoHead,
    BadHead(&'static str),
    Response {
        status: u16,
        framing: Framing,
        reusable: bool,
        body: Body,
    },
}

#[derive(Debug, PartialEq)]
struct Body {
    data: Vec<u8>,
    trailers: Option<Vec<(String, Vec<u8>)>>,
    end: End,
}

#[derive(Debug, PartialEq)]
enum End {
    /// Complete, with the bytes that followed it.
    Done(Vec<u8>),
    /// The input ended inside the body.
    Open,
    Failed(&'static str),
}

fuzz_target!(|input: &[u8]| {
    let Some((&h, stream)) = input.split_first() else {
        return;
    };
    let method = if h & 1 == 1 { Method::HEAD } else { Method::GET };
    let whole = upstream(stream);
    let cut: Vec<&[u8]> = steps(stream)
        .into_iter()
        .filter_map(|s| match s {
            Step::Chunk(c) => Some(c),
            Step::Inject => None,
        })
        .collect();
    let at_once = run(&[&whole], &method);
    assert_eq!(at_once, run(&cut, &method), "cutting the input changed the outcome");
    if let Outcome::Response { framing, body, .. } = &at_once {
        if let Framing::Length(n) = framing {
            let want = usize::try_from(*n).unwrap_or(usize::MAX);
            match &body.end {
                End::Done(_) => assert_eq!(body.data.len(), want),
                End::Open => assert!(body.data.len() < want),
                End::Failed(e) => panic!("a length body cannot fail: {e}"),
            }
        }
        if *framing == Framing::Chunked && matches!(body.end, End::Done(_)) {
            let again = rechunk(&body.data);
            let d = decode(Framing::Chunked, &[&again]);
            assert_eq!(d.data, body.data, "re-encoded chunks decode differently");
            assert_eq!(d.end, End::Done(Vec::new()));
        }
    }
});

fn run(chunks: &[&[u8]], method: &Method) -> Outcome {
    let mut buf = BytesMut::new();
    let mut from = 0;
    let mut next = 0;
    let end = loop {
        match head::find_head(&buf, &mut from) {
            Err(e) => return Outcome::BadHead(e.0),
            Ok(Some(end)) => break end,
            Ok(None) => {}
        }
        let Some(chunk) = chunks.get(next) else {
            return Outcome::NoHead;
        };
        buf.extend_from_slice(chunk);
        next += 1;
    };
    let mut parsed = match head::parse_response(&buf[..end]) {
        Ok(p) => p,
        Err(e) => return Outcome::BadHead(e.0),
    };
    assert!(head::status_in_range(parsed.status), "status {}", parsed.status);
    let sent = parsed.headers.clone();
    let (framing, reusable) = match head::framing(&mut parsed, method) {
        Ok(f) => f,
        Err(e) => {
            if let FramingError::Coding(shown) = &e {
                check_refused_coding(&sent, shown);
            }
            return Outcome::BadHead(e.reason());
        }
    };
    if framing != Framing::Empty && sent.contains_key(header::TRANSFER_ENCODING) {
        check_accepted_coding(&sent, &parsed.headers, framing, reusable);
    }
    let after_head = buf.split_off(end);
    let mut rest: Vec<&[u8]> = vec![&after_head];
    rest.extend_from_slice(&chunks[next..]);
    Outcome::Response {
        status: parsed.status.as_u16(),
        framing,
        reusable,
        body: decode(framing, &rest),
    }
}

/// The non-empty `Transfer-Encoding` list elements, lowercased.
fn codings(h: &HeaderMap) -> Vec<Vec<u8>> {
    h.get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|t| head::trim_ows(t).to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// An accepted coding is the one the relay decodes, or none at all; the
/// `Content-Length` beside it is gone and voids reuse.
fn check_accepted_coding(
    sent: &HeaderMap,
    kept: &HeaderMap,
    framing: Framing,
    reusable: bool,
) {
    let listed = codings(sent);
    match framing {
        Framing::Chunked => assert_eq!(listed, [b"chunked".to_vec()]),
        Framing::Close => assert_eq!(listed, [b"identity".to_vec()]),
        other => panic!("Transfer-Encoding framed as {other:?}"),
    }
    assert!(
        !kept.contains_key(header::CONTENT_LENGTH),
        "Content-Length kept beside Transfer-Encoding"
    );
    if sent.contains_key(header::CONTENT_LENGTH) {
        assert!(!reusable, "reused after Transfer-Encoding and Content-Length");
    }
}

/// A refused coding is anything but a lone `chunked` or `identity`, and the
/// refusal repeats what was sent (cut to `CODING_SHOWN` characters).
fn check_refused_coding(sent: &HeaderMap, shown: &str) {
    let listed = codings(sent);
    assert!(
        !(listed.len() == 1 && (listed[0] == b"chunked" || listed[0] == b"identity")),
        "{listed:?} refused"
    );
    assert!(shown.chars().count() <= head::CODING_SHOWN + 3, "{shown:?}");
    let first = sent.get(header::TRANSFER_ENCODING).expect("a coding was sent");
    let first = String::from_utf8_lossy(first.as_bytes());
    let want: String = first.trim().chars().take(10).collect();
    assert!(shown.starts_with(&want), "{shown:?} does not show {want:?}");
}

fn decode(framing: Framing, chunks: &[&[u8]]) -> Body {
    let mut d = Decoder::new(framing);
    let mut buf = BytesMut::new();
    let mut body = Body {
        data: Vec::new(),
        trailers: None,
        end: End::Open,
    };
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        if d.is_done() {
            continue;
        }
        loop {
            match d.decode(&mut buf) {
                Err(e) => {
                    body.end = End::Failed(e.0);
                    return body;
                }
                Ok(None) => break,
                Ok(Some(frame)) => match frame.into_data() {
                    Ok(data) => {
                        assert!(!data.is_empty(), "empty data frame");
                        body.data.extend_from_slice(&data);
                    }
                    Err(frame) => {
                        let map = frame.into_trailers().expect("data or trailers");
                        let fields = map
                            .iter()
                            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                            .collect();
                        assert!(body.trailers.replace(fields).is_none(), "two trailer frames");
                    }
                },
            }
        }
    }
    if d.is_done() {
        body.end = End::Done(buf.to_vec());
    }
    body
}

/// `data` as chunks of varying sizes, then the last chunk.
fn rechunk(data: &[u8]) -> Bytes {
    let mut out = Vec::new();
    let mut rest = data;
    let mut size = 1;
    while !rest.is_empty() {
        let n = size.min(rest.len());
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
        size = size * 3 + 1;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    Bytes::from(out)
}
