//! A route's CORS policy (`cors = {...}` or `[route.cors]`): defaults,
//! refusals naming the key, and the check-config rendering.

use std::time::Duration;

use super::{TempFile, check, error, has_line, run};
use crate::config::{Allowed, AllowedOrigins, CorsConfig, OriginPattern};

fn route(cors: &str) -> String {
    format!("[[route]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\n{cors}\n")
}

fn loaded(cors: &str) -> Option<CorsConfig> {
    let file = TempFile::new("cors.toml", &route(cors));
    run(&["--config", file.path()], &[]).routes[0].cors.clone()
}

fn refused(cors: &str) -> String {
    let file = TempFile::new("cors-bad.toml", &route(cors));
    error(&["--config", file.path()], &[])
}

#[test]
fn defaults_fill_what_the_table_leaves_out() {
    assert_eq!(loaded(""), None);
    let c = loaded("cors = { allow_origins = [\"https://App.example:443\"] }").unwrap();
    assert_eq!(
        c.origins,
        AllowedOrigins::List(vec![OriginPattern::Exact("https://app.example".into())])
    );
    assert_eq!(c.methods, Allowed::List(vec!["GET".into(), "POST".into()]));
    let Allowed::List(headers) = &c.headers else {
        panic!("{c:?}")
    };
    for h in [
        "authorization",
        "content-type",
        "x-api-key",
        "last-event-id",
    ] {
        assert!(headers.iter().any(|x| x == h), "{h} in {headers:?}");
    }
    assert!(c.expose.is_empty());
    assert!(!c.credentials);
    assert_eq!(c.max_age, Duration::from_secs(600));
}

#[test]
fn the_section_form_and_every_key() {
    let c = loaded(
        "[route.cors]\nallow_origins = [\"https://*.example.com\", \"http://localhost:5173\"]\n\
         allow_methods = [\"GET\", \"POST\", \"DELETE\"]\nallow_headers = [\"*\"]\n\
         expose_headers = [\"X-Request-Id\"]\nallow_credentials = true\nmax_age = \"2h\"\n",
    )
    .unwrap();
    let AllowedOrigins::List(origins) = &c.origins else {
        panic!("{c:?}")
    };
    let shown: Vec<String> = origins.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["https://*.example.com", "http://localhost:5173"]);
    assert_eq!(c.headers, Allowed::Echo);
    assert_eq!(c.expose, ["x-request-id"]);
    assert!(c.credentials);
    assert_eq!(c.max_age, Duration::from_secs(7200));
    let any = loaded("cors = { allow_origins = [\"*\"], allow_methods = [\"*\"] }").unwrap();
    assert_eq!(any.origins, AllowedOrigins::Any);
    assert_eq!(any.methods, Allowed::Echo);
}

#[test]
fn refusals_name_the_key() {
    let cases = [
        (
            "cors = true",
            "invalid type for route[0].cors in config file",
        ),
        ("cors = {}", "missing key route[0].cors.allow_origins"),
        (
            "cors = { allow_origins = [] }",
            "invalid value for route[0].cors.allow_origins (from config file",
        ),
        (
            "cors = { allow_origin = [\"*\"] }",
            "unknown key route[0].cors.allow_origin in config file",
        ),
        (
            "cors = { allow_origins = \"https://a.example\" }",
            "invalid type for route[0].cors.allow_origins in config file",
        ),
        (
            "cors = { allow_origins = [\"https://a.example\", 3] }",
            "invalid type for route[0].cors.allow_origins[1] in config file",
        ),
        (
            "cors = { allow_origins = [\"https://a.example/\"] }",
            "\"https://a.example/\": an origin has no path",
        ),
        (
            "cors = { allow_origins = [\"https://ok.example\", \"null\"] }",
            "route[0].cors.allow_origins[1]",
        ),
        (
            "cors = { allow_origins = [\"https://*.com\"] }",
            "a wildcard needs a domain of two labels or more",
        ),
        (
            "cors = { allow_origins = [\"*\"], allow_credentials = true }",
            "route[0].cors.allow_origins is [\"*\"] and route[0].cors.allow_credentials is true",
        ),
        (
            "cors = { allow_origins = [\"*\", \"https://a.example\"] }",
            "route[0].cors.allow_origins[0]",
        ),
        (
            "cors = { allow_origins = [\"https://a.example\"], expose_headers = [\"*\"], allow_credentials = true }",
            "route[0].cors.expose_headers[0] is \"*\" and route[0].cors.allow_credentials is true",
        ),
        (
            "cors = { allow_origins = [\"https://a.example\"], allow_headers = [\"x y\"] }",
            "invalid value for route[0].cors.allow_headers[0]",
        ),
        (
            "cors = { allow_origins = [\"https://a.example\"], allow_methods = [\"*\", \"GET\"] }",
            "invalid value for route[0].cors.allow_methods",
        ),
        (
            "cors = { allow_origins = [\"https://a.example\"], max_age = \"25h\" }",
            "invalid value for route[0].cors.max_age",
        ),
        (
            "cors = { allow_origins = [\"https://a.example\"], max_age = \"1500ms\" }",
            "whole seconds",
        ),
        (
            "cors = { allow_origins = [\"https://a.example\"], allow_credentials = \"yes\" }",
            "invalid type for route[0].cors.allow_credentials",
        ),
    ];
    for (cors, expected) in cases {
        let msg = refused(cors);
        assert!(
            msg.contains(expected),
            "{cors}\n  got: {msg}\n  want: {expected}"
        );
    }
}

#[test]
fn check_config_shows_the_policy_or_what_browsers_get_without_one() {
    let toml = "resume_window = \"30s\"\n\
        [[route]]\nprefix = \"/a\"\nupstream = \"http://127.0.0.1:9\"\n\
        cors = { allow_origins = [\"https://APP.example\", \"https://*.example.com:8443\"], \
        expose_headers = [\"x-request-id\"], max_age = \"90s\" }\n\
        [[route]]\nprefix = \"/b\"\nupstream = \"http://127.0.0.1:9\"\n\
        [[route]]\nprefix = \"/c\"\nupstream = \"http://127.0.0.1:9\"\nearly_commit = false\n";
    let file = TempFile::new("check-cors.toml", toml);
    let rendered = check(&["check-config", file.path()], &[], |c| {
        assert!(c.routes[0].cors.is_some());
        assert!(c.routes[1].cors.is_none());
    });
    has_line(
        &rendered,
        "cors = { allow_origins = [\"https://app.example\", \"https://*.example.com:8443\"], \
         allow_methods = [\"GET\", \"POST\"], allow_headers = [\"authorization\", \"content-type\", \
         \"x-api-key\", \"anthropic-version\", \"anthropic-beta\", \"openai-organization\", \
         \"openai-project\", \"last-event-id\"], expose_headers = [\"x-request-id\"], \
         allow_credentials = false, max_age = \"1m30s\" }",
    );
    has_line(
        &rendered,
        "# cors also exposes the relay's sse-edge-error, retry-after, sse-edge-early-commit, \
         sse-edge-stream-id; the upstream's own CORS headers are replaced",
    );
    has_line(
        &rendered,
        "# cors is not set: the upstream's own CORS headers pass through, relay-made answers \
         carry none; cross-origin requests (Origin without Sec-Fetch-Site: same-origin) are \
         not committed early: their head waits for the upstream's",
    );
    has_line(
        &rendered,
        "# cors is not set: the upstream's own CORS headers pass through, relay-made answers \
         carry none",
    );
}
