//! Header rewriting between client and upstream.
//!
//! Hop-by-hop fields (RFC 9110 §7.6.1) belong to one connection and are
//! never forwarded: `Connection` and every field it names, plus
//! `Keep-Alive`, `Proxy-Connection`, `TE`, `Transfer-Encoding`, `Upgrade`,
//! `Proxy-Authorization` and `HTTP2-Settings` (an h2c upgrade is never
//! honoured, so it would only confuse the upstream). Framing (`Content-Length` /
//! `Transfer-Encoding`) is recomputed by hyper for each side.
//!
//! Forwarding headers describe the real connection. Client-supplied
//! `X-Forwarded-*`, `Forwarded` and `X-Real-IP` are dropped unless
//! `server.trust_forwarded` says the client is itself a trusted proxy, in
//! which case its `X-Forwarded-For` is extended and its other values kept.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    // Only meaningful with `Upgrade: h2c`, which is never honoured here.
    HeaderName::from_static("http2-settings"),
];

/// Tells nginx-style buffering proxies in front not to hold the stream.
pub(super) static X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static UNTRUSTED: [HeaderName; 3] = [
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-real-ip"),
];

/// Removes hop-by-hop fields, including those `Connection` lists.
pub(super) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names (equality of
    // standard names is an integer compare) instead of a hashed removal
    // per name.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Prefix of the fields the relay sets on responses itself
/// (`sse-edge-stream-id`, `sse-edge-early-commit`, `sse-edge-error`).
const RELAY_PREFIX: &str = "sse-edge-";

/// Prepares an upstream response head for the client: hop-by-hop fields
/// go, and so does every `sse-edge-*` field, so an upstream can never pass
/// for the relay (a spoofed `sse-edge-stream-id` or `sse-edge-error`). A
/// `Trailer` declaration keeps only the names [`clean_trailers`] lets
/// through.
pub(super) fn clean_response(headers: &mut HeaderMap) {
    // One pass over the names for the common case of none of these.
    let suspect =
        |k: &HeaderName| HOP_BY_HOP.contains(k) || *k == header::TRAILER || is_relay_field(k);
    if !headers.keys().any(suspect) {
        return;
    }
    strip_hop_by_hop(headers);
    remove_where(headers, is_relay_field);
    if let Some(declared) = headers.get(header::TRAILER) {
        let kept: Vec<&str> = declared
            .to_str()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|t| HeaderName::from_bytes(t.as_bytes()).is_ok_and(|n| trailer_allowed(&n)))
            .collect();
        match HeaderValue::from_str(&kept.join(", ")) {
            Ok(v) if !kept.is_empty() => {
                headers.insert(header::TRAILER, v);
            }
            _ => {
                headers.remove(header::TRAILER);
            }
        }
    }
}

/// Removes every field whose name `drop` picks.
fn remove_where(headers: &mut HeaderMap, drop: impl Fn(&HeaderName) -> bool) {
    if headers.keys().any(&drop) {
        let names: Vec<HeaderName> = headers.keys().filter(|k| drop(k)).cloned().collect();
        for name in names {
            headers.remove(name);
        }
    }
}

/// Upstream trailers get the rules response heads get (RFC 9110 §6.5.1):
/// no hop-by-hop or framing fields, no `Trailer`, no `sse-edge-*`.
pub(super) fn clean_trailers(trailers: &mut HeaderMap) {
    strip_hop_by_hop(trailers);
    remove_where(trailers, |k| !trailer_allowed(k));
}

fn trailer_allowed(name: &HeaderName) -> bool {
    !(HOP_BY_HOP.contains(name)
        || *name == header::CONTENT_LENGTH
        || *name == header::TRAILER
        || *name == header::HOST
        || is_relay_field(name))
}

fn is_relay_field(name: &HeaderName) -> bool {
    name.as_str().starts_with(RELAY_PREFIX)
}

/// Request transfer codings other than `chunked` (which hyper decodes) are
/// not decoded here, and forwarding the body without its coding would hand
/// the upstream bytes it cannot read: such a request gets 501, as nginx
/// answers it. Returns the offending field value.
pub(super) fn unsupported_transfer_coding(headers: &HeaderMap) -> Option<&HeaderValue> {
    headers.get_all(header::TRANSFER_ENCODING).iter().find(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .any(|c| !c.is_empty() && !c.eq_ignore_ascii_case(b"chunked"))
    })
}

/// The client's address as `X-Forwarded-For` carries it (formatted once
/// per connection, not per request).
pub(crate) fn peer_value(peer: IpAddr) -> HeaderValue {
    // An IP address in text is always a valid header value.
    HeaderValue::from_str(&peer.to_canonical().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Sets `X-Forwarded-For` / `X-Forwarded-Proto` from the real connection;
/// `peer` comes from [`peer_value`].
pub(super) fn set_forwarded(headers: &mut HeaderMap, peer: &HeaderValue, https: bool, trust: bool) {
    let proto = HeaderValue::from_static(if https { "https" } else { "http" });
    if trust {
        let peer = peer.to_str().unwrap_or("unknown");
        let prior: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let mut chain = prior.join(", ");
        if !chain.is_empty() {
            chain.push_str(", ");
        }
        chain.push_str(peer);
        insert_str(headers, &X_FORWARDED_FOR, &chain);
        headers.entry(&X_FORWARDED_PROTO).or_insert(proto);
        return;
    }
    if headers.keys().any(|k| UNTRUSTED.contains(k)) {
        for name in &UNTRUSTED {
            headers.remove(name);
        }
    }
    headers.insert(&X_FORWARDED_FOR, peer.clone());
    headers.insert(&X_FORWARDED_PROTO, proto);
}

fn insert_str(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn strips_fixed_and_connection_listed_fields() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", "x-other"),
            ("x-secret", "1"),
            ("x-other", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("authorization", "Bearer k"),
            ("content-type", "application/json"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "content-type"]);
    }

    #[test]
    fn a_connection_field_alone_still_strips_what_it_names() {
        let mut h = map(&[
            ("connection", "x-secret"),
            ("x-secret", "1"),
            ("x-kept", "1"),
        ]);
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
        let mut h = map(&[("x-kept", "1")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn untrusted_forwarded_headers_are_replaced() {
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
        ]);
        set_forwarded(
            &mut h,
            &peer_value("10.1.2.3".parse().unwrap()),
            false,
            false,
        );
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert!(h.get("forwarded").is_none() && h.get("x-real-ip").is_none());
    }

    #[test]
    fn trusted_chain_is_extended() {
        let mut h = map(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
        ]);
        set_forwarded(
            &mut h,
            &peer_value("::ffff:127.0.0.1".parse().unwrap()),
            true,
            true,
        );
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
    }
}
