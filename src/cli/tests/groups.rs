//! Endpoint groups (`[[route.group]]`), per-endpoint keys and the
//! timeouts that run from the top level through routes to groups.

use std::time::Duration;

use super::{TempFile, check, endpoint, error, has_line, run};
use crate::config::{Timeouts, UpstreamKeyHeader, UpstreamProtocol};

const MIN: Duration = Duration::from_secs(60);

fn secs(n: u64) -> Option<Duration> {
    Some(Duration::from_secs(n))
}

/// The example of the group form: a weighted primary with a key per
/// endpoint, a fallback that rewrites the model, a context group.
const GROUPS: &str = r#"
[upstream]
first_byte_timeout = "1m"

[[route]]
prefix = "/v1"
protocol = "http1"
first_event_timeout = "2m"

[[route.group]]
name = "main"
first_byte_timeout = "30s"
endpoints = [
  { url = "https://east.example.com/v1", weight = 3, key_env = "EAST_KEY" },
  { url = "https://west.example.com:8443/v1", key_env = "WEST_KEY", key_header = "x-api-key", protocol = "http2" },
]

[[route.group]]
context_fallback = true
read_timeout = 0
endpoints = [ { url = "https://long.example/v1", model = "long-context-model" } ]

[[route.group]]
endpoints = [ { url = "https://api.other.example/v1", model = "other-model", key_env = "OTHER_KEY", key_header = "authorization" } ]

[[route.group]]
endpoints = [ { name = "local", url = "http://127.0.0.1:8000", weight = 1000, continuation = "vllm" } ]
"#;

const KEYS: &[(&str, &str)] = &[
    ("EAST_KEY", "east-secret"),
    ("WEST_KEY", " west-secret\n"),
    ("OTHER_KEY", "other-secret"),
];

#[test]
fn groups_load_in_order_with_names_weights_models_and_keys() {
    let file = TempFile::new("groups.toml", GROUPS);
    let c = run(&["--config", file.path()], KEYS);
    let u = &c.routes[0].upstreams;
    let names: Vec<_> = u.groups().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["main", "fallback1", "fallback2", "context"]);
    let [main, other, local] = &u.chain[..] else {
        panic!("{u:?}")
    };
    let [east, west] = &main.endpoints[..] else {
        panic!("{main:?}")
    };
    assert_eq!(east.name, "east.example.com");
    assert_eq!((east.weight, east.protocol), (3, UpstreamProtocol::Http1));
    assert_eq!(east.url.base_path, "/v1");
    let key = east.key.as_ref().expect("east has a key");
    assert_eq!(
        (key.env.as_str(), key.header),
        ("EAST_KEY", UpstreamKeyHeader::Authorization)
    );
    assert_eq!(key.value.0, "Bearer east-secret");
    assert!(key.value.0.is_sensitive());
    assert_eq!(west.name, "west.example.com:8443");
    assert_eq!((west.weight, west.protocol), (1, UpstreamProtocol::Http2));
    let key = west.key.as_ref().expect("west has a key");
    assert_eq!(key.header, UpstreamKeyHeader::XApiKey);
    assert_eq!(key.value.0, "west-secret");
    let [o] = &other.endpoints[..] else {
        panic!("{other:?}")
    };
    assert_eq!(o.name, "api.other.example/other-model");
    assert_eq!(o.model.as_deref(), Some("other-model"));
    let key = o.key.as_ref().expect("other has a key");
    assert_eq!(key.value.0, "Bearer other-secret");
    let [l] = &local.endpoints[..] else {
        panic!("{local:?}")
    };
    assert_eq!(
        (l.name.as_str(), l.weight, l.key.is_none()),
        ("local", 1000, true)
    );
    let context = u.context.as_ref().expect("a context group");
    assert_eq!(context.endpoints[0].name, "long.example/long-context-model");
    assert_eq!(
        context.endpoints[0].model.as_deref(),
        Some("long-context-model")
    );
    assert!(context.endpoints[0].key.is_none());
}

#[test]
fn timeouts_inherit_from_the_top_level_through_routes_to_groups() {
    let file = TempFile::new("group-timeouts.toml", GROUPS);
    let c = run(&["--config", file.path()], KEYS);
    let r = &c.routes[0];
    let route = Timeouts {
        first_byte: Some(MIN),
        first_event: secs(120),
        read: secs(300),
    };
    assert_eq!(r.stream.timeouts, route);
    let u = &r.upstreams;
    assert_eq!(
        u.chain[0].timeouts,
        Timeouts {
            first_byte: secs(30),
            ..route
        }
    );
    assert_eq!(u.chain[1].timeouts, route);
    let context = u.context.as_ref().map(|g| g.timeouts);
    assert_eq!(
        context,
        Some(Timeouts {
            read: None,
            ..route
        })
    );
    // A flag for the top-level value reaches what inherits it, and only that.
    let args = ["--config", file.path(), "--upstream-read-timeout", "7s"];
    let c = run(&args, KEYS);
    let u = &c.routes[0].upstreams;
    assert_eq!(u.chain[0].timeouts.read, secs(7));
    assert_eq!(u.chain[0].timeouts.first_byte, secs(30));
    assert_eq!(u.context.as_ref().map(|g| g.timeouts.read), Some(None));
    // The --upstream route and a plain route take the top-level values.
    let env = [("SSE_EDGE_UPSTREAM_FIRST_EVENT_TIMEOUT", "0")];
    let c = run(
        &[
            "--upstream",
            "http://a:81",
            "--upstream-first-byte-timeout",
            "9s",
        ],
        &env,
    );
    let want = Timeouts {
        first_byte: secs(9),
        first_event: None,
        read: secs(300),
    };
    assert_eq!(c.routes[0].stream.timeouts, want);
    assert_eq!(endpoint(&c.routes[0]).name, "a:81");
}

#[test]
fn retry_on_reset_defaults_to_true_and_is_inherited() {
    let file = TempFile::new(
        "reset.toml",
        "retry_on_reset = false\n[[route]]\nprefix = \"/a\"\nupstream = \"http://a\"\n\
         [[route]]\nprefix = \"/b\"\nupstream = \"http://b\"\nretry_on_reset = true\n",
    );
    let c = run(&["--config", file.path()], &[]);
    assert!(!c.routes[0].stream.retry_on_reset);
    assert!(c.routes[1].stream.retry_on_reset);
    let c = run(&["--config", file.path(), "--retry-on-reset", "true"], &[]);
    assert!(c.routes[0].stream.retry_on_reset);
    assert!(run(&[super::UP], &[]).routes[0].stream.retry_on_reset);
}

/// A route of the group form holding `groups` (TOML after `[[route]]`).
fn grouped(groups: &str) -> String {
    format!("[[route]]\nprefix = \"/\"\n{groups}\n")
}

const G: &str = "[[route.group]]\nendpoints = [{ url = \"http://a\" }]\n";

/// A route's TOML, then what the one-line error starts with after the
/// config file's name is put in for `{F}`.
#[rustfmt::skip]
fn refusals() -> Vec<(String, &'static str)> {
    vec![
        (format!("upstream = \"http://a\"\n{G}"),
            "route[0].upstream and route[0].group are both set in config file {F}: use one form"),
        ("name = \"x\"".to_owned(),
            "missing key route[0].upstream in config file {F}: expected an upstream URL or [[route.group]] tables"),
        ("group = []".to_owned(),
            "route[0].group is empty in config file {F}: give at least one [[route.group]] table"),
        ("group = \"http://a\"".to_owned(),
            "invalid type for route[0].group in config file {F}: found string, expected [[route.group]] tables"),
        ("group = [\"a\"]".to_owned(),
            "invalid type for route[0].group[0] in config file {F}: found string, expected a table"),
        ("[[route.group]]\nname = \"g\"".to_owned(),
            "missing key route[0].group[0].endpoints in config file {F}: expected an array of endpoint tables"),
        ("[[route.group]]\nendpoints = []".to_owned(),
            "route[0].group[0].endpoints is empty in config file {F}: a group needs at least one endpoint"),
        ("[[route.group]]\nendpoints = \"http://a\"".to_owned(),
            "invalid type for route[0].group[0].endpoints in config file {F}: found string"),
        ("[[route.group]]\nendpoints = [\"http://a\"]".to_owned(),
            "invalid type for route[0].group[0].endpoints[0] in config file {F}: found string, expected a table"),
        (format!("{G}[[route.group]]\ntimeout = \"1s\"\nendpoints = [{{ url = \"http://b\" }}]"),
            "unknown key route[0].group[1].timeout in config file {F}: expected name, context_fallback, endpoints, first_byte_timeout, first_event_timeout, read_timeout"),
        (format!("{G}[[route.group]]\nendpoints = [{{ url = \"http://b\" }}, {{ url = \"http://c\", api_key = \"k\" }}]"),
            "unknown key route[0].group[1].endpoints[1].api_key in config file {F}: expected url, name, weight, model, continuation, key_env, key_header, protocol"),
        (format!("{G}[[route.group]]\ncontext_fallback = true\nendpoints = [{{ url = \"http://b\" }}]\n[[route.group]]\ncontext_fallback = true\nendpoints = [{{ url = \"http://c\" }}]"),
            "route[0].group[1].context_fallback and route[0].group[2].context_fallback are both true in config file {F}: a route has at most one context group"),
        ("[[route.group]]\ncontext_fallback = true\nendpoints = [{ url = \"http://a\" }]".to_owned(),
            "route[0].group[0].context_fallback is true on the only group of route[0] in config file {F}: a route needs a primary group without context_fallback"),
        ("[[route.group]]\ncontext_fallback = \"yes\"\nendpoints = [{ url = \"http://a\" }]".to_owned(),
            "invalid type for route[0].group[0].context_fallback in config file {F}: found string, expected a boolean"),
        (format!("upstream_key_env = \"EAST_KEY\"\n{G}"),
            "route[0].upstream_key_env is set together with route[0].group in config file {F}: with groups, give each endpoint its own key_env"),
        (format!("upstream_key_header = \"x-api-key\"\n{G}"),
            "route[0].upstream_key_header is set together with route[0].group in config file {F}"),
        (format!("{G}[[route.group]]\nendpoints = [{{ url = \"http://b\" }}, {{ url = \"http://a:80\" }}]"),
            "duplicate endpoint name \"a\" in config file {F}: route[0].group[0].endpoints[0] and route[0].group[1].endpoints[1] both use it"),
        ("[[route.group]]\nendpoints = [{ url = \"http://a\", name = \"x\" }, { url = \"http://b\", name = \"x\" }]".to_owned(),
            "duplicate endpoint name \"x\" in config file {F}: route[0].group[0].endpoints[0] and route[0].group[0].endpoints[1] both use it"),
        (format!("[[route.group]]\nname = \"fallback1\"\nendpoints = [{{ url = \"http://b\" }}]\n{G}"),
            "duplicate group name \"fallback1\" in config file {F}: route[0].group[0] and route[0].group[1] both use it"),
        ("[[route.group]]\nendpoints = [{ weight = 2 }]".to_owned(),
            "missing key route[0].group[0].endpoints[0].url in config file {F}: expected an upstream URL"),
        ("[[route.group]]\nendpoints = [{ url = \"ftp://a\" }]".to_owned(),
            "invalid value for route[0].group[0].endpoints[0].url (from config file {F}): \"ftp://a\""),
        ("[[route.group]]\nendpoints = [{ url = \"http://a\", weight = 0 }]".to_owned(),
            "invalid value for route[0].group[0].endpoints[0].weight (from config file {F}): \"0\": expected a whole number from 1 to 1000"),
        ("[[route.group]]\nendpoints = [{ url = \"http://a\", continuation = \"openai\" }]".to_owned(),
            "invalid value for route[0].group[0].endpoints[0].continuation (from config file {F}): \"openai\": expected anthropic, vllm or assistant"),
        ("continuation_attempts = 6\n[[route.group]]\nendpoints = [{ url = \"http://a\" }]".to_owned(),
            "invalid value for route[0].continuation_attempts (from config file {F}): \"6\""),
        ("[[route.group]]\nendpoints = [{ url = \"http://a\", weight = 1001 }]".to_owned(),
            "invalid value for route[0].group[0].endpoints[0].weight (from config file {F}): \"1001\""),
        ("[[route.group]]\nendpoints = [{ url = \"http://a\", weight = \"3\" }]".to_owned(),
            "invalid type for route[0].group[0].endpoints[0].weight in config file {F}: found string, expected an integer"),
        ("[[route.group]]\nendpoints = [{ url = \"http://a\", model = \"\" }]".to_owned(),
            "invalid value for route[0].group[0].endpoints[0].model (from config file {F}): \"\": expected a non-empty model name"),
        ("[[route.group]]\nendpoints = [{ url = \"http://a\", model = 4 }]".to_owned(),
            "invalid type for route[0].group[0].endpoints[0].model in config file {F}: found integer, expected a string"),
        ("[[route.group]]\nendpoints = [{ url = \"http://a\", name = \"\" }]".to_owned(),
            "invalid value for route[0].group[0].endpoints[0].name (from config file {F})"),
        ("[[route.group]]\nendpoints = [{ url = \"http://a\", protocol = \"h3\" }]".to_owned(),
            "invalid value for route[0].group[0].endpoints[0].protocol (from config file {F}): \"h3\": expected one of auto, http1, http2"),
        ("[[route.group]]\nendpoints = [{ url = \"http://a\", key_header = \"x-api-key\" }]".to_owned(),
            "route[0].group[0].endpoints[0].key_header is set but route[0].group[0].endpoints[0].key_env is not in config file {F}: set both or neither"),
        ("[[route.group]]\nendpoints = [{ url = \"http://a\", key_env = \"EAST_KEY\", key_header = \"api-key\" }]".to_owned(),
            "invalid value for route[0].group[0].endpoints[0].key_header (from config file {F}): \"api-key\": expected authorization or x-api-key"),
        ("[[route.group]]\nendpoints = [{ url = \"http://a\", key_env = \"MY-KEY\" }]".to_owned(),
            "invalid value for route[0].group[0].endpoints[0].key_env (from config file {F}): \"MY-KEY\": expected an environment variable name"),
        ("[[route.group]]\nendpoints = [{ url = \"http://a\", key_env = \"NO_SUCH_KEY\" }]".to_owned(),
            "route[0].group[0].endpoints[0].key_env: environment variable NO_SUCH_KEY is not set or empty"),
        ("[[route.group]]\nendpoints = [{ url = \"http://a\", key_env = \"BAD_KEY\" }]".to_owned(),
            "route[0].group[0].endpoints[0].key_env: environment variable BAD_KEY holds characters an HTTP header cannot carry"),
        ("[[route.group]]\nfirst_byte_timeout = \"1.5s\"\nendpoints = [{ url = \"http://a\" }]".to_owned(),
            "invalid value for route[0].group[0].first_byte_timeout (from config file {F}): \"1.5s\": expected a duration"),
        ("[[route.group]]\nread_timeout = 5\nendpoints = [{ url = \"http://a\" }]".to_owned(),
            "invalid type for route[0].group[0].read_timeout in config file {F}: found integer, expected a duration string"),
        (format!("first_event_timeout = \"soon\"\n{G}"),
            "invalid value for route[0].first_event_timeout (from config file {F}): \"soon\""),
        (format!("retry_on_reset = \"yes\"\n{G}"),
            "invalid type for route[0].retry_on_reset in config file {F}: found string, expected a boolean"),
    ]
}

#[test]
fn group_refusals_name_the_key() {
    let env = [("EAST_KEY", "k"), ("BAD_KEY", "secret\u{7f}value")];
    for (i, (toml, want)) in refusals().into_iter().enumerate() {
        let file = TempFile::new(&format!("group-err-{i}.toml"), &grouped(&toml));
        let msg = error(&["--config", file.path()], &env);
        let want = want.replace("{F}", file.path());
        assert!(msg.starts_with(&want), "case {i}:\n{msg}\nwanted:\n{want}");
        assert!(!msg.contains("secret"), "case {i} shows a key: {msg}");
    }
}

#[test]
fn top_level_timeout_errors_name_the_setting() {
    let msg = error(&[super::UP, "--upstream-first-event-timeout", "5x"], &[]);
    assert!(
        msg.starts_with(
            "invalid value for upstream.first_event_timeout (from --upstream-first-event-timeout): \"5x\""
        ),
        "{msg}"
    );
    let msg = error(&[super::UP], &[("SSE_EDGE_RETRY_ON_RESET", "1")]);
    assert!(
        msg.starts_with("invalid value for retry_on_reset (from SSE_EDGE_RETRY_ON_RESET): \"1\""),
        "{msg}"
    );
}

/// What check-config prints for the first group of [`GROUPS`].
const MAIN_RENDERED: &str = r#"
[[route.group]]
name = "main"
first_byte_timeout = "30s"
first_event_timeout = "2m"  # inherited from the route
read_timeout = "5m"  # inherited from the route
endpoints = [
  { name = "east.example.com", url = "https://east.example.com/v1", weight = 3, protocol = "http1", key_env = "EAST_KEY", key_header = "authorization" },
  { name = "west.example.com:8443", url = "https://west.example.com:8443/v1", weight = 1, protocol = "http2", key_env = "WEST_KEY", key_header = "x-api-key" },
]
"#;

#[test]
fn check_config_renders_groups_and_round_trips() {
    let file = TempFile::new("check-groups.toml", GROUPS);
    let env = [KEYS, &[("SSE_EDGE_UPSTREAM_READ_TIMEOUT", "6m")]].concat();
    let rendered = check(&["check-config", file.path()], &env, |c| {
        assert_eq!(c.routes[0].upstreams.chain.len(), 3);
    });
    let main = MAIN_RENDERED.replace("\"5m\"", "\"6m\"");
    assert!(
        rendered.contains(&main),
        "{main}\nmissing from:\n{rendered}"
    );
    for line in [
        "first_event_timeout = \"2m\"",
        "first_byte_timeout = \"1m\"  # inherited from top-level upstream.first_byte_timeout",
        "read_timeout = \"6m\"  # inherited from top-level upstream.read_timeout",
        "name = \"fallback1\"",
        "  { name = \"api.other.example/other-model\", url = \"https://api.other.example/v1\", \
         weight = 1, model = \"other-model\", protocol = \"http1\", key_env = \"OTHER_KEY\", \
         key_header = \"authorization\" },",
        "  { name = \"local\", url = \"http://127.0.0.1:8000\", weight = 1000, continuation = \"vllm\", \
         protocol = \"http1\" },",
    ] {
        has_line(&rendered, line);
    }
    // The context group comes last, after the chain.
    let context = "\n[[route.group]]\nname = \"context\"\ncontext_fallback = true\n\
                   first_byte_timeout = \"1m\"  # inherited from the route\n\
                   first_event_timeout = \"2m\"  # inherited from the route\n\
                   read_timeout = \"0\"\nendpoints = [\n  { name = \"long.example/long-context-model\", \
                   url = \"https://long.example/v1\", weight = 1, model = \"long-context-model\", \
                   protocol = \"http1\" },\n]\n";
    assert!(rendered.ends_with(context), "{rendered}");
    assert_eq!(
        rendered.matches("context_fallback").count(),
        1,
        "{rendered}"
    );
    // A route with groups has no route-level upstream, protocol or key.
    for absent in [
        "upstream =",
        "protocol = \"http1\"\n",
        "upstream_key",
        "secret",
    ] {
        assert!(!rendered.contains(absent), "{absent:?} in:\n{rendered}");
    }
}

#[test]
fn a_group_of_one_plain_endpoint_renders_as_upstream() {
    let toml = "[[route]]\nprefix = \"/p\"\n[[route.group]]\nendpoints = [\
                { url = \"https://[::1]:8443/b\", key_env = \"EAST_KEY\" }]\n\
                [[route]]\nupstream = \"http://a:8080\"\nupstream_key_env = \"EAST_KEY\"\n\
                upstream_key_header = \"x-api-key\"\n";
    let file = TempFile::new("check-one.toml", toml);
    let rendered = check(&["check-config", file.path()], KEYS, |c| {
        assert_eq!(endpoint(&c.routes[0]).name, "[::1]:8443");
        let e = endpoint(&c.routes[1]);
        assert_eq!(e.name, "a:8080");
        assert_eq!(
            e.key.as_ref().map(|k| k.header),
            Some(UpstreamKeyHeader::XApiKey)
        );
    });
    assert!(!rendered.contains("[[route.group]]"), "{rendered}");
    for line in [
        "upstream = \"https://[::1]:8443/b\"",
        "upstream = \"http://a:8080\"",
        "upstream_key_env = \"EAST_KEY\"",
        "upstream_key_header = \"authorization\"",
        "upstream_key_header = \"x-api-key\"",
        "protocol = \"auto\"",
    ] {
        has_line(&rendered, line);
    }
    // A group that differs from the defaults in any way keeps its table.
    let named =
        "[[route]]\n[[route.group]]\nname = \"only\"\nendpoints = [{ url = \"http://a\" }]\n";
    let file = TempFile::new("check-named.toml", named);
    let rendered = check(&["check-config", file.path()], &[], |_| {});
    has_line(&rendered, "name = \"only\"");
    has_line(
        &rendered,
        "  { name = \"a\", url = \"http://a\", weight = 1, protocol = \"auto\" },",
    );
}
