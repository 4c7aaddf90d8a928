//! Origin patterns: what parses, how it is normalised, what matches.

use super::{OriginPattern, parse_origin};

fn pattern(s: &str) -> OriginPattern {
    parse_origin(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn refused(s: &str) -> String {
    match parse_origin(s) {
        Ok(p) => panic!("{s} accepted as {p:?}"),
        Err(e) => e,
    }
}

#[test]
fn exact_origins_are_normalised_as_browsers_write_them() {
    let cases = [
        ("https://app.example.com", "https://app.example.com"),
        ("HTTPS://App.Example.COM", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://127.0.0.1:80", "http://127.0.0.1"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("https://app.example.com:80", "https://app.example.com:80"),
        ("http://[::1]:3000", "http://[::1]:3000"),
        ("http://localhost:5173", "http://localhost:5173"),
        ("capacitor://localhost", "capacitor://localhost"),
        (
            "chrome-extension://abcdefghijklmnop",
            "chrome-extension://abcdefghijklmnop",
        ),
    ];
    for (given, normal) in cases {
        assert_eq!(
            pattern(given),
            OriginPattern::Exact(normal.into()),
            "{given}"
        );
        assert_eq!(pattern(given).to_string(), normal);
    }
}

#[test]
fn exact_origins_match_byte_for_byte() {
    let p = pattern("https://app.example.com");
    assert!(p.matches(b"https://app.example.com"));
    for other in [
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://app.example.com.evil.net",
        "https://evilapp.example.com",
        "https://x.app.example.com",
        "https://app.example.co",
        "null",
        "",
    ] {
        assert!(!p.matches(other.as_bytes()), "{other}");
    }
}

#[test]
fn wildcards_match_subdomains_at_any_depth_only() {
    let p = pattern("https://*.example.com");
    assert_eq!(p.to_string(), "https://*.example.com");
    for ok in [
        "https://a.example.com",
        "https://a-b.example.com",
        "https://a.b.example.com",
        "https://9.example.com",
    ] {
        assert!(p.matches(ok.as_bytes()), "{ok}");
    }
    for no in [
        "https://example.com",
        "https://.example.com",
        "https://a..example.com",
        "https://evilexample.com",
        "https://a.example.com.evil.net",
        "https://a.example.com:443",
        "https://a.example.com:8443",
        "http://a.example.com",
        "https://A.example.com",
        "https://a b.example.com",
        "https://a/b.example.com",
        "https://u@a.example.com",
        "null",
    ] {
        assert!(!p.matches(no.as_bytes()), "{no}");
    }
    let ported = pattern("http://*.dev.example:8080");
    assert!(ported.matches(b"http://a.dev.example:8080"));
    assert!(!ported.matches(b"http://a.dev.example"));
    assert!(!ported.matches(b"http://a.dev.example:80"));
    assert!(!ported.matches(b"http://a.dev.example:80800"));
    // A default port is dropped from the pattern, as from Origin.
    assert!(pattern("https://*.example.com:443").matches(b"https://a.example.com"));
}

#[test]
fn bad_origins_are_refused_saying_why() {
    assert!(refused("https://app.example.com/").contains("write https://app.example.com"));
    assert!(refused("https://app.example.com/chat?x").contains("no path"));
    assert!(refused("app.example.com").contains("scheme://host"));
    assert!(refused("null").contains("null"));
    assert!(refused("NULL").contains("null"));
    assert!(refused("https://*.com").contains("two labels"));
    assert!(refused("https://*").contains("first label"));
    assert!(refused("https://a.*.example.com").contains("first label"));
    assert!(refused("https://*example.com").contains("first label"));
    assert!(refused("https://app.example.com:0").contains("bad port"));
    assert!(refused("https://app.example.com:99999").contains("bad port"));
    assert!(refused("https://app.example.com:+1").contains("bad port"));
    assert!(refused("https://user@app.example.com").contains("user info"));
    assert!(refused("https://app..example.com").contains("bad host"));
    assert!(refused("https://").contains("bad host"));
    assert!(refused("https://bücher.example").contains("xn--"));
    assert!(refused("http://[::1").contains("scheme://host"));
    assert!(refused("http://[zz]:80").contains("IPv6"));
    assert!(refused("1http://a.example").contains("bad scheme"));
}
