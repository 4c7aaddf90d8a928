//! HTTP/1.1 message heads on upstream connections (RFC 9112).
//!
//! Writing: the request line, the fields the relay forwards, and framing
//! the relay decides itself from the body it is about to send. A forwarded
//! `Content-Length` or `Transfer-Encoding` is never copied: the body may
//! have been rewritten (`include_usage`), and a client's framing is not the
//! upstream connection's.
//!
//! Reading: the status line and fields of a response, then the body's
//! framing by RFC 9112 §6.3, in order:
//! 1. a response to HEAD, and 1xx, 204 and 304 responses have no body;
//! 2. `Transfer-Encoding`: the relay decodes the chunked coding and nothing
//!    else, so the codings must be exactly `chunked` (names are
//!    case-insensitive; list syntax per RFC 9110 §5.6.1: optional
//!    whitespace, empty elements ignored, any number of field lines). Any
//!    other list (`gzip`, `gzip, chunked`, `chunked, gzip`, `chunked,
//!    chunked`, a parameter, an empty field) is refused
//!    ([`FramingError::Coding`]): relaying it would hand the client
//!    compressed bytes, or chunk framing, as if they were the content.
//!    `identity` alone is the one exception: RFC 2616's name for no coding
//!    at all (RFC 7230 dropped it from the registry), so its body is the
//!    content as sent, delimited like any coding that is not last-chunked
//!    (§6.3 rule 4): by the upstream's close. Either way a `Content-Length`
//!    beside it is removed (§6.3 rule 3: it could smuggle a second
//!    response), and the connection is not reused;
//! 3. `Content-Length`: every value (across lines and lists) must be the
//!    same number, or the response is rejected (§6.3 rule 5);
//! 4. otherwise the body runs until the upstream closes.
//!
//! The status line and fields are parsed by httparse (hyper's own parser)
//! once [`find_head`] has found the blank line that ends them, so a head
//! cut into many reads is still scanned once (httparse starts over on each
//! call). Lines may end in CRLF or a bare LF (§2.2 lets a recipient accept
//! LF); obsolete line folding, whitespace before a field's colon and
//! control characters in fields are refused (httparse's settings are
//! spelled out in `config`), and so are empty lines before the status
//! line, which httparse would skip. The status code must be in `100..=599`
//! (RFC 9110 §15: the first digit is the class, and there are five);
//! httparse takes any three digits, and `http` up to 999. A head is
//! refused for its status before anything that follows the code is looked
//! at. A refusal names what was wrong (httparse says only which kind of
//! error it met; the relay finds the line).

use std::mem::MaybeUninit;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

/// Largest response head (status line and fields) or trailer section.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most fields in a response head or trailer section.
pub const MAX_FIELDS: usize = 128;

/// How the request body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body and no framing field (GET and friends with nothing to send).
    None,
    Length(u64),
    Chunked,
}

impl RequestFraming {
    /// The framing for a body whose end and size are known as given.
    /// Methods that normally carry content say `Content-Length: 0` when
    /// empty, as user agents do (RFC 9110 §8.6).
    pub fn choose(method: &Method, ended: bool, exact: Option<u64>) -> Self {
        if ended {
            let bodiless = matches!(
                *method,
                Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::TRACE
            );
            return if bodiless {
                Self::None
            } else {
                Self::Length(0)
            };
        }
        match exact {
            Some(n) => Self::Length(n),
            None => Self::Chunked,
        }
    }
}

/// Writes the request head: `METHOD target HTTP/1.1`, the fields (names in
/// their canonical lowercase), the framing field, and the blank line.
pub fn encode_request(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    framing: RequestFraming,
) -> Bytes {
    let fields: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    let mut out = BytesMut::with_capacity(method.as_str().len() + target.len() + fields + 64);
    out.put_slice(method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(target.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    match framing {
        RequestFraming::None => {}
        RequestFraming::Length(n) => {
            out.put_slice(b"content-length: ");
            out.put_slice(n.to_string().as_bytes());
            out.put_slice(b"\r\n");
        }
        RequestFraming::Chunked => out.put_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.put_slice(b"\r\n");
    out.freeze()
}

/// Why bytes from the upstream were refused (head, chunk framing, trailers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub &'static str);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for WireError {}

/// Why a response's framing was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramingError {
    /// Framing fields that are malformed or contradict each other.
    Wire(WireError),
    /// A transfer coding the relay does not decode: the `Transfer-Encoding`
    /// values as sent (lines joined with `, `, cut at
    /// [`CODING_SHOWN`] characters).
    Coding(String),
}

/// How much of a refused `Transfer-Encoding` a [`FramingError`] repeats.
pub const CODING_SHOWN: usize = 100;

impl FramingError {
    /// The reason without the upstream's own text.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Wire(e) => e.0,
            Self::Coding(_) => "transfer coding the relay does not decode",
        }
    }
}

impl From<WireError> for FramingError {
    fn from(e: WireError) -> Self {
        Self::Wire(e)
    }
}

impl std::fmt::Display for FramingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Wire(e) => e.fmt(f),
            Self::Coding(v) if v.is_empty() => f.write_str(
                "upstream sent an empty Transfer-Encoding, which the relay does not decode",
            ),
            Self::Coding(v) => write!(
                f,
                "upstream sent Transfer-Encoding {v}, which the relay does not decode"
            ),
        }
    }
}

impl std::error::Error for FramingError {}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

/// The end of a head within [`MAX_HEAD`] bytes (just past its blank line),
/// or `None` while it may still come. `from` keeps how far earlier calls
/// looked, so a head that arrives a byte at a time is still scanned once.
/// Whether a head is refused does not depend on how it was cut into reads.
pub fn find_head(buf: &[u8], from: &mut usize) -> Result<Option<usize>, WireError> {
    const TOO_LARGE: WireError = WireError("response head too large");
    match head_end(buf, from) {
        Some(end) if end > MAX_HEAD => Err(TOO_LARGE),
        None if buf.len() > MAX_HEAD => Err(TOO_LARGE),
        found => Ok(found),
    }
}

/// Finds the end of a head (just past its blank line), at any length.
pub fn head_end(buf: &[u8], from: &mut usize) -> Option<usize> {
    let mut at = *from;
    while let Some(i) = memchr::memchr(b'\n', &buf[at..]) {
        let lf = at + i;
        match &buf[lf + 1..] {
            [b'\n', ..] => return Some(lf + 2),
            [b'\r', b'\n', ..] => return Some(lf + 3),
            [] | [b'\r'] => {
                *from = lf; // look at this line end again with more bytes
                return None;
            }
            _ => at = lf + 1,
        }
    }
    *from = buf.len();
    None
}

/// Parses a complete head (`head` ends with its blank line, as
/// [`find_head`] found it).
pub fn parse_response(head: &[u8]) -> Result<ResponseHead, WireError> {
    // httparse skips empty lines before a status line; the relay does not
    // (RFC 9112 §2.2 asks that of servers reading requests, not of clients).
    match head {
        [b'\n', ..] | [b'\r', b'\n', ..] => return Err(WireError("empty status line")),
        [b'\r', ..] => return Err(WireError("not an HTTP/1.x status line")),
        _ => {}
    }
    let mut slots: [MaybeUninit<httparse::Header<'_>>; MAX_FIELDS] =
        [const { MaybeUninit::uninit() }; MAX_FIELDS];
    let mut res = httparse::Response::new(&mut []);
    let parsed = config().parse_response_with_uninit_headers(&mut res, head, &mut slots);
    // The code is judged as soon as it was read, before whatever follows
    // it: a head refused for its status is refused for that alone.
    let code = res.code.map(StatusCode::from_u16).transpose();
    let status = code.map_err(|_| WireError("bad status code"))?;
    if status.is_some_and(|s| !status_in_range(s)) {
        return Err(STATUS_OUT_OF_RANGE);
    }
    match parsed {
        Ok(httparse::Status::Complete(n)) => {
            debug_assert_eq!(n, head.len(), "a head ends at its first blank line");
        }
        // Not reached: the blank line `find_head` found ends the head for
        // httparse too.
        Ok(httparse::Status::Partial) => return Err(WireError("incomplete response head")),
        Err(httparse::Error::Version) => return Err(WireError("not an HTTP/1.x status line")),
        Err(httparse::Error::Status) if status.is_none() => {
            return Err(WireError("bad status code"));
        }
        Err(httparse::Error::Status) => return Err(WireError("bad status line")),
        Err(e) => return Err(field_error(e, after_status_line(head))),
    }
    let status = status.ok_or(WireError("bad status code"))?; // read, as it parsed
    let version = match res.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    Ok(ResponseHead {
        status,
        version,
        headers: header_map(res.headers)?,
    })
}

/// The parser settings, spelled out: what RFC 9112 allows a recipient and
/// nothing more. Bare LF line ends are accepted (§2.2); obsolete line
/// folding (§5.2), whitespace between a field name and its colon (§5.1),
/// whitespace before the first field, several spaces in the status line,
/// and invalid field lines are refused, not repaired or skipped.
fn config() -> httparse::ParserConfig {
    let mut config = httparse::ParserConfig::default();
    config
        .allow_obsolete_multiline_headers_in_responses(false)
        .allow_spaces_after_header_name_in_responses(false)
        .allow_space_before_first_header_name(false)
        .allow_multiple_spaces_in_response_status_delimiters(false)
        .ignore_invalid_headers_in_responses(false);
    config
}

/// Whether a response may carry `status`: RFC 9110 §15 has five classes,
/// `1xx` to `5xx` (`StatusCode` takes 100 to 999).
pub fn status_in_range(status: StatusCode) -> bool {
    (100..=599).contains(&status.as_u16())
}

/// A status outside [`status_in_range`] (either HTTP version).
pub const STATUS_OUT_OF_RANGE: WireError = WireError("status code outside 100..=599");

/// Parses a trailer section (`section` ends with its blank line, the
/// first in it, as [`head_end`] finds it).
pub fn parse_trailers(section: &[u8]) -> Result<HeaderMap, WireError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_FIELDS];
    match httparse::parse_headers(section, &mut slots) {
        Ok(httparse::Status::Complete((n, fields))) => {
            debug_assert_eq!(n, section.len(), "a section ends at its first blank line");
            header_map(fields)
        }
        // Not reached, as for a head.
        Ok(httparse::Status::Partial) => Err(WireError("incomplete trailer section")),
        Err(e) => Err(field_error(e, section)),
    }
}

/// The fields as a map; httparse has checked their bytes already (its
/// value bytes are exactly those `HeaderValue` takes).
fn header_map(fields: &[httparse::Header<'_>]) -> Result<HeaderMap, WireError> {
    let mut headers = HeaderMap::with_capacity(fields.len());
    for field in fields {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| WireError("bad header name"))?;
        let value =
            HeaderValue::from_bytes(field.value).map_err(|_| WireError("bad header value"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// The fields of a head: what follows the status line's LF.
fn after_status_line(head: &[u8]) -> &[u8] {
    memchr::memchr(b'\n', head).map_or(&[], |lf| &head[lf + 1..])
}

/// Why httparse refused a field section (`fields`: from its first line).
/// httparse says only what kind of error it met; the refusal names the
/// first line httparse refuses on its own. A cold path.
fn field_error(e: httparse::Error, fields: &[u8]) -> WireError {
    if e == httparse::Error::TooManyHeaders {
        return WireError("too many header fields");
    }
    let mut one = [httparse::EMPTY_HEADER; 1];
    for line in fields.split_inclusive(|&b| b == b'\n') {
        let Err(e) = httparse::parse_headers(line, &mut one) else {
            continue; // a good line (or the blank one)
        };
        return match (e, line.first()) {
            (_, Some(b' ' | b'\t')) => WireError("obsolete line folding"),
            (httparse::Error::HeaderValue, _) => WireError("bad header value"),
            _ if !line.contains(&b':') => WireError("header line without colon"),
            _ => WireError("bad header name"),
        };
    }
    WireError("bad header field")
}

pub fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// The body's framing and whether the connection may serve another
/// request afterwards. Removes a `Content-Length` that `Transfer-Encoding`
/// overrides, so it never reaches the client.
pub fn framing(head: &mut ResponseHead, method: &Method) -> Result<(Framing, bool), FramingError> {
    let h = &mut head.headers;
    let mut reusable = match head.version {
        Version::HTTP_11 => !has_token(h, "close"),
        _ => has_token(h, "keep-alive") && !has_token(h, "close"),
    };
    let status = head.status.as_u16();
    if *method == Method::HEAD || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok((Framing::Empty, reusable));
    }
    if h.contains_key(header::TRANSFER_ENCODING) {
        if head.version != Version::HTTP_11 {
            return Err(WireError("transfer-encoding in an HTTP/1.0 response").into());
        }
        let coding = transfer_coding(h)?;
        if h.remove(header::CONTENT_LENGTH).is_some() {
            reusable = false;
        }
        return Ok(match coding {
            Coding::Chunked => (Framing::Chunked, reusable),
            Coding::Identity => (Framing::Close, false),
        });
    }
    match content_length(h)? {
        Some(0) => Ok((Framing::Empty, reusable)),
        Some(n) => Ok((Framing::Length(n), reusable)),
        None => Ok((Framing::Close, false)),
    }
}

fn tokens(h: &HeaderMap, name: HeaderName) -> impl Iterator<Item = &[u8]> {
    h.get_all(name)
        .into_iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(trim_ows)
}

fn has_token(h: &HeaderMap, token: &str) -> bool {
    tokens(h, header::CONNECTION).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// A transfer coding the relay can undo.
enum Coding {
    Chunked,
    /// No coding (RFC 2616's `identity`).
    Identity,
}

/// The one coding `Transfer-Encoding` lists, if the relay decodes it.
fn transfer_coding(h: &HeaderMap) -> Result<Coding, FramingError> {
    let mut codings = tokens(h, header::TRANSFER_ENCODING).filter(|t| !t.is_empty());
    match (codings.next(), codings.next()) {
        (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Ok(Coding::Chunked),
        (Some(c), None) if c.eq_ignore_ascii_case(b"identity") => Ok(Coding::Identity),
        _ => Err(FramingError::Coding(shown_codings(h))),
    }
}

/// The `Transfer-Encoding` lines as sent, joined, for a refusal's message.
fn shown_codings(h: &HeaderMap) -> String {
    let mut out = String::new();
    for (i, v) in h.get_all(header::TRANSFER_ENCODING).iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&String::from_utf8_lossy(v.as_bytes()));
    }
    let out = out.trim();
    match out.char_indices().nth(CODING_SHOWN) {
        Some((cut, _)) => format!("{}...", &out[..cut]),
        None => out.to_owned(),
    }
}

/// The one length every `Content-Length` value states.
fn content_length(h: &HeaderMap) -> Result<Option<u64>, WireError> {
    let mut found = None;
    for v in tokens(h, header::CONTENT_LENGTH) {
        let n = parse_decimal(v).ok_or(WireError("bad content-length"))?;
        if found.is_some_and(|f| f != n) {
            return Err(WireError("conflicting content-length values"));
        }
        found = Some(n);
    }
    Ok(found)
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}
