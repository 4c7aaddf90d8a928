use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode, Version};

use super::decode::{Decoder, MAX_LINE};
use super::head::{
    self, Framing, FramingError, MAX_FIELDS, RequestFraming, ResponseHead, WireError,
    encode_request,
};

fn parse(head: &[u8]) -> Result<ResponseHead, WireError> {
    let mut from = 0;
    let end = head::head_end(head, &mut from).expect("complete head");
    head::parse_response(&head[..end])
}

fn framing_of(head: &[u8], method: &Method) -> Result<(Framing, bool, ResponseHead), FramingError> {
    let mut h = parse(head)?;
    let (f, reuse) = head::framing(&mut h, method)?;
    Ok((f, reuse, h))
}

#[test]
fn head_end_found_at_every_split_and_only_once_complete() {
    let heads: [&[u8]; 3] = [
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\ncontent-length: 2\n\nhi",
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ];
    for full in heads {
        let end = full.len() - if full.ends_with(b"hi") { 2 } else { 0 };
        // Grown a byte at a time, with the scan offset carried over.
        let mut from = 0;
        for n in 0..=full.len() {
            let found = head::head_end(&full[..n], &mut from);
            if n < end {
                assert_eq!(found, None, "{n} bytes of {full:?}");
            } else {
                assert_eq!(found, Some(end), "{n} bytes of {full:?}");
                from = 0;
            }
        }
    }
}

#[test]
fn parses_status_and_fields() {
    let h =
        parse(b"HTTP/1.1 429 Too Many\r\nRetry-After: 3 \r\nx-a:\tb\r\nx-a: c\r\n\r\n").unwrap();
    assert_eq!(h.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(h.version, Version::HTTP_11);
    assert_eq!(h.headers["retry-after"], "3");
    let xa: Vec<_> = h.headers.get_all("x-a").iter().collect();
    assert_eq!(xa, ["b", "c"]);
    let h = parse(b"HTTP/1.0 200\n\n").unwrap();
    assert_eq!((h.status, h.version), (StatusCode::OK, Version::HTTP_10));
    let h = parse(b"HTTP/1.1 200 \r\nx-empty:\r\n\r\n").unwrap();
    assert_eq!(h.headers["x-empty"], "");
}

#[test]
fn refuses_malformed_heads() {
    let bad: [&[u8]; 15] = [
        b"HTTP/2 200 OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 099 OK\r\n\r\n",
        b"HTTP/1.1 600 OK\r\n\r\n",
        b"HTTP/1.1 999\r\n\r\n",
        b"HTTP/1.0 700 Seven\r\n\r\n",
        b"HTTP/1.1 200 O\x01K\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded: value\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nname : value\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx: a\rb\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nx: nul\x00\r\n\r\n",
    ];
    for head in bad {
        assert!(parse(head).is_err(), "{:?}", String::from_utf8_lossy(head));
    }
    let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..=MAX_FIELDS {
        many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(
        parse(&many).unwrap_err(),
        WireError("too many header fields")
    );
}

#[test]
fn framing_follows_rfc9112_section_6_3() {
    let get = Method::GET;
    let f = |head: &[u8], m: &Method| framing_of(head, m).map(|(f, r, _)| (f, r));
    assert_eq!(
        f(
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n",
            &Method::HEAD
        ),
        Ok((Framing::Empty, true))
    );
    for status in ["204", "304", "103"] {
        let head = format!("HTTP/1.1 {status} X\r\ncontent-length: 10\r\n\r\n");
        assert_eq!(f(head.as_bytes(), &get), Ok((Framing::Empty, true)));
    }
    assert_eq!(
        f(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            &get
        ),
        Ok((Framing::Chunked, true))
    );
    assert_eq!(
        f(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5, 5\r\n\r\n",
            &get
        ),
        Ok((Framing::Length(5), true))
    );
    assert_eq!(
        f(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", &get),
        Ok((Framing::Empty, true))
    );
    assert_eq!(
        f(b"HTTP/1.1 200 OK\r\n\r\n", &get),
        Ok((Framing::Close, false))
    );
    assert_eq!(
        f(
            b"HTTP/1.1 200 OK\r\nconnection: Close\r\ncontent-length: 1\r\n\r\n",
            &get
        ),
        Ok((Framing::Length(1), false))
    );
    assert_eq!(
        f(b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n", &get),
        Ok((Framing::Length(1), false))
    );
    assert_eq!(
        f(
            b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 1\r\n\r\n",
            &get
        ),
        Ok((Framing::Length(1), true))
    );
    for bad in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 0x5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
        b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
    ] {
        assert!(f(bad, &get).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn status_codes_outside_the_five_classes_are_refused() {
    for code in [100, 199, 200, 599] {
        let head = format!("HTTP/1.1 {code} X\r\n\r\n");
        assert_eq!(parse(head.as_bytes()).unwrap().status.as_u16(), code);
    }
    for code in [600, 999] {
        let head = format!("HTTP/1.1 {code} X\r\n\r\n");
        assert_eq!(
            parse(head.as_bytes()).unwrap_err(),
            head::STATUS_OUT_OF_RANGE
        );
    }
}

#[test]
fn only_the_chunked_coding_is_decoded() {
    let get = Method::GET;
    let coded = |te: &str| {
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n{te}\r\n");
        framing_of(head.as_bytes(), &get).map(|(f, r, _)| (f, r))
    };
    // Exactly `chunked`, in any case, with RFC 9110 list syntax around it.
    for te in [
        "transfer-encoding: chunked\r\n",
        "Transfer-Encoding: CHUNKED\r\n",
        "transfer-encoding: \t Chunked \r\n",
        "transfer-encoding: , chunked,,\r\n",
        "transfer-encoding: \r\ntransfer-encoding: chunked\r\n",
        "transfer-encoding: chunked\r\ntransfer-encoding: ,\r\n",
    ] {
        assert_eq!(coded(te), Ok((Framing::Chunked, false)), "{te:?}");
    }
    // `identity` alone is no coding: the content runs to the close.
    for te in [
        "transfer-encoding: identity\r\n",
        "transfer-encoding: Identity ,\r\n",
    ] {
        assert_eq!(coded(te), Ok((Framing::Close, false)), "{te:?}");
    }
    let refused = [
        ("gzip", "gzip"),
        ("gzip, chunked", "gzip, chunked"),
        ("chunked, gzip", "chunked, gzip"),
        ("GZIP,CHUNKED", "GZIP,CHUNKED"),
        ("chunked, chunked", "chunked, chunked"),
        ("identity, chunked", "identity, chunked"),
        ("chunked;q=1", "chunked;q=1"),
        ("deflate", "deflate"),
        ("x-custom", "x-custom"),
        ("", ""),
        (" , ", ","),
    ];
    for (te, shown) in refused {
        let got = coded(&format!("transfer-encoding: {te}\r\n"));
        assert_eq!(got, Err(FramingError::Coding(shown.to_owned())), "{te:?}");
    }
    // Several lines are shown as one list.
    let got = coded("transfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n");
    let err = got.unwrap_err();
    assert_eq!(
        err.to_string(),
        "upstream sent Transfer-Encoding gzip, chunked, which the relay does not decode"
    );
    assert_eq!(err.reason(), "transfer coding the relay does not decode");
    assert_eq!(
        FramingError::Coding(String::new()).to_string(),
        "upstream sent an empty Transfer-Encoding, which the relay does not decode"
    );
    // A long list is cut for the message.
    let long = format!("transfer-encoding: {}chunked\r\n", "x-pad, ".repeat(100));
    let Err(FramingError::Coding(shown)) = coded(&long) else {
        panic!("a long list of codings was accepted");
    };
    assert_eq!(shown.chars().count(), head::CODING_SHOWN + 3);
    assert!(shown.ends_with("..."));
    // HEAD, 204 and 304 answers have no body to decode.
    let head_answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n";
    assert_eq!(
        framing_of(head_answer, &Method::HEAD).map(|(f, r, _)| (f, r)),
        Ok((Framing::Empty, true))
    );
}

#[test]
fn transfer_encoding_removes_content_length_and_reuse() {
    let (f, reuse, h) = framing_of(
        b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
        &Method::POST,
    )
    .unwrap();
    assert_eq!((f, reuse), (Framing::Chunked, false));
    assert!(!h.headers.contains_key(header::CONTENT_LENGTH));
}

#[test]
fn request_head_carries_the_relays_framing_only() {
    let mut h = HeaderMap::new();
    h.insert(header::HOST, HeaderValue::from_static("up:8080"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
    h.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    h.append("x-a", HeaderValue::from_static("1"));
    h.append("x-a", HeaderValue::from_static("2"));
    let head = encode_request(&Method::POST, "/v1/x?y=1", &h, RequestFraming::Length(12));
    assert_eq!(
        &head[..],
        b"POST /v1/x?y=1 HTTP/1.1\r\nhost: up:8080\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 12\r\n\r\n"
    );
    let head = encode_request(
        &Method::PUT,
        "/",
        &HeaderMap::new(),
        RequestFraming::Chunked,
    );
    assert_eq!(
        &head[..],
        b"PUT / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let head = encode_request(&Method::GET, "/", &HeaderMap::new(), RequestFraming::None);
    assert_eq!(&head[..], b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(
        RequestFraming::choose(&Method::POST, true, Some(0)),
        RequestFraming::Length(0)
    );
    assert_eq!(
        RequestFraming::choose(&Method::GET, true, Some(0)),
        RequestFraming::None
    );
    assert_eq!(
        RequestFraming::choose(&Method::POST, false, Some(7)),
        RequestFraming::Length(7)
    );
    assert_eq!(
        RequestFraming::choose(&Method::POST, false, None),
        RequestFraming::Chunked
    );
}

/// What a decoder makes of `parts` fed one after another: the data, the
/// trailers, whether it ended, and the bytes left after the body.
#[derive(Debug, PartialEq)]
struct Decoded {
    data: Vec<u8>,
    trailers: Option<HeaderMap>,
    done: bool,
    rest: Vec<u8>,
}

fn decode_parts(framing: Framing, parts: &[&[u8]]) -> Result<Decoded, WireError> {
    let mut d = Decoder::new(framing);
    let mut buf = BytesMut::new();
    let mut out = Decoded {
        data: Vec::new(),
        trailers: None,
        done: false,
        rest: Vec::new(),
    };
    for part in parts {
        buf.extend_from_slice(part);
        if d.is_done() {
            continue; // what follows the body stays in the buffer
        }
        while let Some(frame) = d.decode(&mut buf)? {
            match frame.into_data() {
                Ok(data) => {
                    assert!(!data.is_empty(), "no empty data frames");
                    out.data.extend_from_slice(&data);
                }
                Err(frame) => out.trailers = frame.into_trailers().ok(),
            }
        }
    }
    out.done = d.is_done();
    out.rest = buf.to_vec();
    Ok(out)
}

/// Decodes `wire` whole, split at every offset, split at every pair of
/// offsets, and a byte at a time, and checks all agree.
fn decode_every_split(framing: Framing, wire: &[u8]) -> Result<Decoded, WireError> {
    let whole = decode_parts(framing, &[wire]);
    for i in 0..=wire.len() {
        assert_eq!(
            decode_parts(framing, &[&wire[..i], &wire[i..]]),
            whole,
            "split {i}"
        );
        for j in i..=wire.len() {
            let parts = [&wire[..i], &wire[i..j], &wire[j..]];
            assert_eq!(decode_parts(framing, &parts), whole, "split {i}/{j}");
        }
    }
    let bytes: Vec<&[u8]> = wire.chunks(1).collect();
    assert_eq!(decode_parts(framing, &bytes), whole, "byte at a time");
    whole
}

#[test]
fn chunked_body_decodes_the_same_at_every_split() {
    let wire = b"5\r\nhello\r\n1;ext=\"v\"\r\n \r\nA \r\n0123456789\r\n0\r\n\r\nNEXT";
    let d = decode_every_split(Framing::Chunked, wire).unwrap();
    assert_eq!(d.data, b"hello 0123456789");
    assert!(d.done);
    assert_eq!(d.trailers, None);
    assert_eq!(d.rest, b"NEXT");
}

#[test]
fn chunked_trailers_are_a_frame_of_their_own() {
    let wire = b"3\r\nabc\r\n0\r\nx-usage: 12\r\nx-b: c\r\n\r\n";
    let d = decode_every_split(Framing::Chunked, wire).unwrap();
    assert_eq!(d.data, b"abc");
    let t = d.trailers.expect("trailers");
    assert_eq!(t["x-usage"], "12");
    assert_eq!(t["x-b"], "c");
    assert!(d.done && d.rest.is_empty());
}

#[test]
fn chunked_framing_errors_are_refused() {
    let bad: [&[u8]; 8] = [
        b"g\r\n",
        b"\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
        b"5 x\r\nhello\r\n",
        b"11111111111111111\r\n",
        b"-5\r\nhello\r\n",
        b"0\r\n\n",
    ];
    for wire in bad {
        assert!(
            decode_parts(Framing::Chunked, &[wire]).is_err(),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
    let long = vec![b'1'; MAX_LINE + 1];
    assert!(decode_parts(Framing::Chunked, &[&long]).is_err());
    // Too long whether its end came in the same read or not.
    let ext = format!("1;{}\r\na\r\n0\r\n\r\n", "x".repeat(MAX_LINE));
    assert!(decode_parts(Framing::Chunked, &[ext.as_bytes()]).is_err());
    // An error right after data comes after that data, at any split.
    let d = decode_every_split(Framing::Chunked, b"2\r\nokXX");
    assert_eq!(d, Err(WireError("chunk data not followed by CRLF")));
    // Incomplete but valid so far: waits for more.
    let d = decode_parts(Framing::Chunked, &[b"5\r\nhel"]).unwrap();
    assert_eq!((d.data.as_slice(), d.done), (&b"hel"[..], false));
    let max = decode_parts(Framing::Chunked, &[b"ffffffffffffffff\r\nab"]).unwrap();
    assert_eq!(max.data, b"ab");
}

#[test]
fn length_body_stops_at_its_length() {
    let d = decode_every_split(Framing::Length(5), b"hello, and then some").unwrap();
    assert_eq!(d.data, b"hello");
    assert!(d.done);
    assert_eq!(d.rest, b", and then some");
    let d = decode_parts(Framing::Length(5), &[b"hel"]).unwrap();
    assert!(!d.done);
}

#[test]
fn close_delimited_body_ends_only_at_eof() {
    let mut d = Decoder::new(Framing::Close);
    let mut buf = BytesMut::from(&b"all of it"[..]);
    let frame = d.decode(&mut buf).unwrap().unwrap();
    assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b"all of it"));
    assert!(d.decode(&mut buf).unwrap().is_none());
    assert!(!d.is_done());
    assert!(d.at_eof());
    let mut chunked = Decoder::new(Framing::Chunked);
    assert!(!chunked.at_eof(), "EOF inside a chunked body is not an end");
}

#[test]
fn data_frames_share_the_read_buffer() {
    let mut d = Decoder::new(Framing::Chunked);
    let mut buf = BytesMut::from(&b"3\r\nabc\r\n3\r\ndef\r\n"[..]);
    let base = buf.as_ptr() as usize;
    let a = d.decode(&mut buf).unwrap().unwrap().into_data().unwrap();
    let b = d.decode(&mut buf).unwrap().unwrap().into_data().unwrap();
    assert_eq!(a.as_ptr() as usize, base + 3);
    assert_eq!(b.as_ptr() as usize, base + 11);
}

/// What each refusal says: the reason travels to the client in the 502
/// body and to the log.
#[test]
fn refusals_name_what_was_wrong() {
    let heads: [(&[u8], &str); 23] = [
        (b"HTTP/2 200 OK\r\n\r\n", "not an HTTP/1.x status line"),
        (b"ICY 200 OK\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 20 OK\r\n\r\n", "bad status code"),
        (b"HTTP/1.1  200 OK\r\n\r\n", "bad status code"),
        (b"HTTP/1.1 099 OK\r\n\r\n", "bad status code"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 200 O\x01K\r\n\r\n", "bad status line"),
        (
            b"HTTP/1.1 600 O\x01K\r\n\r\n",
            "status code outside 100..=599",
        ),
        (b"HTTP/1.1 6000\r\n\r\n", "status code outside 100..=599"),
        (
            b"HTTP/1.1 999 X\r\nbad name: v\r\n\r\n",
            "status code outside 100..=599",
        ),
        (b"\r\nHTTP/1.1 200 OK\r\n\r\n", "empty status line"),
        (b"\nHTTP/1.1 200 OK\n\n", "empty status line"),
        (
            b"HTTP/1.1 200 OK\r\n folded: value\r\n\r\n",
            "obsolete line folding",
        ),
        (
            b"HTTP/1.1 200 OK\r\nx: a\r\n\tb\r\n\r\n",
            "obsolete line folding",
        ),
        (b"HTTP/1.1 200 OK\r\nx: a\n b\n\n", "obsolete line folding"),
        (
            b"HTTP/1.1 200 OK\r\nname : value\r\n\r\n",
            "bad header name",
        ),
        (
            b"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
            "bad header name",
        ),
        (b"HTTP/1.1 200 OK\r\nx\x01y: v\r\n\r\n", "bad header name"),
        (
            b"HTTP/1.1 200 OK\r\nx: a\r\nno colon here\r\n\r\n",
            "header line without colon",
        ),
        (b"HTTP/1.1 200 OK\r\nx: a\rb\r\n\r\n", "bad header value"),
        (b"HTTP/1.1 200 OK\r\nx: nul\x00\r\n\r\n", "bad header value"),
        (b"HTTP/1.1 200 OK\r\nx: del\x7f\r\n\r\n", "bad header value"),
        (
            b"HTTP/1.1 200 OK\r\nx: a\r\ny: \x01\r\n\r\n",
            "bad header value",
        ),
    ];
    for (head, why) in heads {
        let got = parse(head).map(|h| h.status);
        assert_eq!(
            got,
            Err(WireError(why)),
            "{:?}",
            String::from_utf8_lossy(head)
        );
    }
    let chunks: [(&[u8], &str); 11] = [
        (b"\r\n", "bad chunk size line"),
        (b" 5\r\nhello\r\n", "bad chunk size line"),
        (b";x\r\n", "bad chunk size line"),
        (b"5;a\nhello\r\n0\r\n\r\n", "bad chunk size line"),
        (b"5;a\x01\r\nhello\r\n", "bad chunk size line"),
        (b"5;a\x7f\r\nhello\r\n", "bad chunk size line"),
        (b"5;a\rb\r\nhello\r\n", "bad chunk size line"),
        (b"0\r\nx: a\r\n b\r\n\r\n", "obsolete line folding"),
        (b"0\r\nno colon\r\n\r\n", "header line without colon"),
        (b"0\r\nx y: a\r\n\r\n", "bad header name"),
        (b"0\r\nx: \x01\r\n\r\n", "bad header value"),
    ];
    for (wire, why) in chunks {
        let got = decode_parts(Framing::Chunked, &[wire]).map(|d| d.data);
        assert_eq!(
            got,
            Err(WireError(why)),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
    // A trailer section ends at its first blank line, which must be CRLF.
    let bare = decode_every_split(Framing::Chunked, b"0\r\nx: a\n\nq: b\r\n\r\n");
    assert_eq!(bare, Err(WireError("trailer section ended by a bare LF")));
    let d = decode_every_split(Framing::Chunked, b"0\r\nx: a\ny: b\n\r\n\r\n").unwrap();
    let t = d.trailers.expect("trailers");
    assert_eq!(
        (&t["x"], &t["y"], d.done),
        (
            &HeaderValue::from_static("a"),
            &HeaderValue::from_static("b"),
            true
        )
    );
    assert_eq!(
        d.rest, b"\r\n",
        "what follows the section is not part of it"
    );
    let mut many = b"0\r\n".to_vec();
    for i in 0..=MAX_FIELDS {
        many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let got = decode_parts(Framing::Chunked, &[&many]).map(|d| d.data);
    assert_eq!(got, Err(WireError("too many header fields")));
}

/// What httparse takes and the relay takes too.
#[test]
fn lenient_where_rfc_9112_lets_a_recipient_be() {
    let h = parse(b"HTTP/1.1 200 OK\nx: a\r\ny:\tb c \t\n\n").unwrap();
    assert_eq!(
        (h.headers["x"].as_bytes(), h.headers["y"].as_bytes()),
        (&b"a"[..], &b"b c"[..])
    );
    let h = parse(b"HTTP/1.1 200 caf\xc3\xa9 \xff\r\nx: \xe2\x82\xac\r\n\r\n").unwrap();
    assert_eq!(h.headers["x"].as_bytes(), "\u{20ac}".as_bytes());
    let d = decode_every_split(
        Framing::Chunked,
        b"5\t\r\nhello\r\n3 ;a=\"b c\"\t\r\n, x\r\n0\r\n\r\n",
    );
    assert_eq!(d.unwrap().data, b"hello, x");
}
