//! The policy on answer heads and preflights, without sockets.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, Request};

use super::{Cors, Grant, cross_origin, is_preflight, is_token_list};
use crate::config::{Allowed, AllowedOrigins, CorsConfig, OriginPattern, StreamConfig};
use crate::telemetry::{AccessLog, Exchange, Metrics, Sinks};

fn policy(credentials: bool, methods: Allowed, headers: Allowed) -> Cors {
    let config = CorsConfig {
        origins: AllowedOrigins::List(vec![
            OriginPattern::Exact("https://app.example".into()),
            OriginPattern::Subdomains {
                scheme: "https".into(),
                suffix: ".example.com".into(),
                port: None,
            },
        ]),
        methods,
        headers,
        expose: vec!["x-request-id".into()],
        credentials,
        max_age: Duration::from_secs(600),
    };
    let stream = StreamConfig {
        resume_window: Some(Duration::from_secs(60)),
        ..StreamConfig::default()
    };
    Cors::new(&config, &stream)
}

fn plain() -> Cors {
    policy(
        false,
        Allowed::List(vec!["GET".into(), "POST".into()]),
        Allowed::List(vec!["authorization".into(), "content-type".into()]),
    )
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn values(h: &HeaderMap, name: &str) -> Vec<String> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn exchange() -> Exchange {
    let sinks = Arc::new(Sinks {
        metrics: Arc::new(Metrics::new(Vec::new(), 4)),
        access: AccessLog::disabled(),
    });
    Exchange::new(sinks, Method::OPTIONS, "/", "generic")
}

fn preflight(cors: &Cors, pairs: &[(&str, &str)]) -> http::Response<crate::proxy::ResponseBody> {
    let mut req = Request::builder().method(Method::OPTIONS).uri("/v1/chat");
    for (k, v) in pairs {
        req = req.header(*k, *v);
    }
    let (parts, ()) = req.body(()).unwrap().into_parts();
    assert!(is_preflight(&parts));
    Grant::new(cors, &parts.headers).preflight(&parts, exchange())
}

#[test]
fn an_allowed_origin_gets_the_policy_and_the_upstreams_fields_go() {
    let cors = plain();
    let request = headers(&[("origin", "https://chat.example.com")]);
    let mut answer = headers(&[
        ("access-control-allow-origin", "*"),
        ("access-control-allow-credentials", "true"),
        ("access-control-expose-headers", "x-secret"),
        ("vary", "accept-encoding"),
        ("content-type", "text/event-stream"),
    ]);
    Grant::new(&cors, &request).apply(&mut answer);
    assert_eq!(
        values(&answer, "access-control-allow-origin"),
        ["https://chat.example.com"]
    );
    assert!(answer.get("access-control-allow-credentials").is_none());
    assert_eq!(
        values(&answer, "access-control-expose-headers"),
        ["x-request-id, sse-edge-error, retry-after, sse-edge-early-commit, sse-edge-stream-id"]
    );
    assert_eq!(values(&answer, "vary"), ["accept-encoding", "origin"]);
    assert_eq!(values(&answer, "content-type"), ["text/event-stream"]);
}

#[test]
fn credentials_are_granted_only_when_allowed() {
    let cors = policy(true, Allowed::Echo, Allowed::Echo);
    let mut answer = HeaderMap::new();
    Grant::new(&cors, &headers(&[("origin", "https://app.example")])).apply(&mut answer);
    assert_eq!(
        values(&answer, "access-control-allow-credentials"),
        ["true"]
    );
    assert_eq!(
        values(&answer, "access-control-allow-origin"),
        ["https://app.example"]
    );
}

#[test]
fn a_disallowed_or_missing_origin_gets_vary_and_nothing_else() {
    let cors = plain();
    for request in [
        headers(&[("origin", "https://evil.example")]),
        headers(&[("origin", "null")]),
        HeaderMap::new(),
    ] {
        let mut answer = headers(&[
            ("access-control-allow-origin", "*"),
            ("vary", "Accept, Origin"),
        ]);
        Grant::new(&cors, &request).apply(&mut answer);
        let names: Vec<_> = answer.keys().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(names, ["vary"], "{request:?}");
        assert_eq!(values(&answer, "vary"), ["Accept, Origin"], "already named");
    }
    let mut star = headers(&[("vary", "*")]);
    Grant::new(&cors, &HeaderMap::new()).apply(&mut star);
    assert_eq!(values(&star, "vary"), ["*"]);
}

#[test]
fn preflights_get_the_lists_or_an_echo() {
    let listed = preflight(
        &plain(),
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "PUT"),
            ("access-control-request-headers", "x-custom"),
        ],
    );
    assert_eq!(listed.status(), 204);
    let h = listed.headers();
    assert_eq!(
        values(h, "access-control-allow-origin"),
        ["https://app.example"]
    );
    assert_eq!(values(h, "access-control-allow-methods"), ["GET, POST"]);
    assert_eq!(
        values(h, "access-control-allow-headers"),
        ["authorization, content-type"]
    );
    assert_eq!(values(h, "access-control-max-age"), ["600"]);
    assert!(h.get("access-control-allow-credentials").is_none());
    assert!(h.get("access-control-expose-headers").is_none());
    assert_eq!(
        values(h, "vary"),
        ["origin, access-control-request-method, access-control-request-headers"]
    );

    let echo = preflight(
        &policy(true, Allowed::Echo, Allowed::Echo),
        &[
            ("origin", "https://a.b.example.com"),
            ("access-control-request-method", "PATCH"),
            (
                "access-control-request-headers",
                "authorization, x-stainless-os",
            ),
        ],
    );
    let h = echo.headers();
    assert_eq!(values(h, "access-control-allow-methods"), ["PATCH"]);
    assert_eq!(
        values(h, "access-control-allow-headers"),
        ["authorization, x-stainless-os"]
    );
    assert_eq!(values(h, "access-control-allow-credentials"), ["true"]);
}

#[test]
fn a_disallowed_preflight_is_a_bare_403() {
    let res = preflight(
        &plain(),
        &[
            ("origin", "https://example.com"),
            ("access-control-request-method", "POST"),
        ],
    );
    assert_eq!(res.status(), 403);
    let mut names: Vec<_> = res.headers().keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["sse-edge-error", "vary"]);
}

#[test]
fn what_counts_as_a_preflight_and_as_cross_origin() {
    let parts = |method: Method, pairs: &[(&str, &str)]| {
        let mut req = Request::builder().method(method).uri("/");
        for (k, v) in pairs {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    };
    let origin = ("origin", "https://app.example");
    let acrm = ("access-control-request-method", "POST");
    assert!(is_preflight(&parts(Method::OPTIONS, &[origin, acrm])));
    assert!(!is_preflight(&parts(Method::OPTIONS, &[origin])));
    assert!(!is_preflight(&parts(Method::OPTIONS, &[acrm])));
    assert!(!is_preflight(&parts(Method::POST, &[origin, acrm])));

    assert!(cross_origin(&headers(&[origin])));
    assert!(cross_origin(&headers(&[
        origin,
        ("sec-fetch-site", "cross-site")
    ])));
    assert!(cross_origin(&headers(&[
        origin,
        ("sec-fetch-site", "same-site")
    ])));
    assert!(!cross_origin(&headers(&[
        origin,
        ("sec-fetch-site", "same-origin")
    ])));
    assert!(!cross_origin(&HeaderMap::new()));
}

#[test]
fn only_token_lists_are_echoed() {
    let ok = |s: &str| is_token_list(&HeaderValue::from_str(s).unwrap());
    assert!(ok("content-type, authorization"));
    assert!(ok("PATCH"));
    assert!(!ok(""));
    assert!(!ok("a\tb"));
    assert!(!ok("x-a;evil=1"));
    assert!(!ok("\"quoted\""));
}
