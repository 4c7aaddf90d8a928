//! Stream keys (heartbeat, timeouts, resumption, ...) at the top level and
//! per route: inheritance, precedence, errors naming the key, and the
//! check-config rendering.

use super::*;

fn top_streams() -> StreamConfig {
    StreamConfig {
        heartbeat: Duration::from_secs(2),
        keepalive_frame: Some("event: ping\ndata: {\"t\": {now_ms}}\n\n".to_owned()),
        max_event_size: 64 << 10,
        early_commit: false,
        json_keepalive: true,
        retry_attempts: 0,
        retry_budget: Duration::ZERO,
        retry_backoff: Duration::from_secs(1),
        include_usage: true,
        resume_window: Some(Duration::from_secs(30)),
        resume_max_bytes: 64 << 10,
        timeouts: Timeouts {
            first_byte: Some(Duration::from_secs(60)),
            first_event: None,
            read: Some(Duration::from_secs(10)),
        },
        retry_on_reset: false,
        continuation_attempts: 1,
    }
}

#[test]
fn routes_inherit_and_override_stream_keys() {
    let file = TempFile::new("streams.toml", STREAMS);
    let c = run(&["--config", file.path()], &[]);
    let [a, b] = &c.routes[..] else {
        panic!("{:?}", c.routes)
    };
    assert_eq!(a.stream, top_streams());
    let own = StreamConfig {
        heartbeat: Duration::from_millis(250),
        keepalive_frame: Some(": keepalive\n\n".to_owned()),
        max_event_size: 2048,
        early_commit: true,
        json_keepalive: false,
        retry_attempts: 20,
        retry_budget: Duration::from_secs(90),
        retry_backoff: Duration::from_millis(100),
        include_usage: false,
        resume_window: Some(Duration::from_secs(120)),
        resume_max_bytes: 8 << 20,
        timeouts: Timeouts {
            first_byte: Some(Duration::from_secs(2)),
            first_event: Some(Duration::from_secs(3)),
            read: None,
        },
        retry_on_reset: true,
        continuation_attempts: 5,
    };
    assert_eq!(b.stream, own);
    // the --upstream route inherits every top-level value
    let c = run(&["--config", file.path(), UP], &[]);
    assert_eq!(c.routes[0].stream, top_streams());
    // top-level values from flags and env reach inheriting routes only
    let args = [
        "--config",
        file.path(),
        "--max-event-size=1MiB",
        "--keepalive-frame",
        r": hi\n\n",
    ];
    let c = run(&args, &[("SSE_EDGE_RETRY_BACKOFF", "3s")]);
    assert_eq!(c.routes[0].stream.max_event_size, 1 << 20);
    assert_eq!(
        c.routes[0].stream.keepalive_frame.as_deref(),
        Some(": hi\n\n")
    );
    assert_eq!(c.routes[0].stream.retry_backoff, Duration::from_secs(3));
    assert_eq!(c.routes[1].stream, own);
}

#[test]
fn resume_table_form_and_its_errors() {
    let route = |extra: &str| {
        format!(
            "resume_window = \"1m\"\n[[route]]\nprefix = \"/\"\nupstream = \"http://a\"\n{extra}\n"
        )
    };
    let try_load = |extra: &str| {
        let file = TempFile::new("resume.toml", &route(extra));
        load(&["--config", file.path()], &[])
    };
    let off = match try_load("resume = false") {
        Ok(Invocation::Run(c)) => c,
        other => panic!("{:?}", other.err()),
    };
    assert_eq!(off.routes[0].stream.resume_window, None);
    let on = match try_load("") {
        Ok(Invocation::Run(c)) => c,
        other => panic!("{:?}", other.err()),
    };
    assert_eq!(
        on.routes[0].stream.resume_window,
        Some(Duration::from_secs(60))
    );
    assert_eq!(on.routes[0].stream.resume_max_bytes, 4 << 20);
    assert_eq!(on.resume_memory, 256 << 20);
    let err = |extra: &str| match try_load(extra) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted: {extra}"),
    };
    assert!(err("resume = { windw = \"1s\" }").contains("route[0].resume.windw"));
    assert!(err("resume = { max_bytes = \"1KiB\" }").contains("route[0].resume.max_bytes"));
    assert!(err("resume = \"60s\"").contains("route[0].resume"));
    assert!(err("resume_window = \"1s\"\nresume = { window = \"2s\" }").contains("use one form"));
}

#[test]
fn stream_key_precedence_flag_env_file_default() {
    let file = TempFile::new("retry.toml", "retry_attempts = 5\n");
    let cfg = ["--config", file.path(), UP];
    let attempts = |c: Config| c.routes[0].stream.retry_attempts;
    assert_eq!(attempts(run(&[UP], &[])), 3);
    assert_eq!(attempts(run(&cfg, &[])), 5);
    let env = [("SSE_EDGE_RETRY_ATTEMPTS", "6")];
    assert_eq!(attempts(run(&cfg, &env)), 6);
    let mut args = cfg.to_vec();
    args.extend(["--retry-attempts", "7"]);
    assert_eq!(attempts(run(&args, &env)), 7);
    // backslash-n is a newline on the command line and in the environment
    let env = [("SSE_EDGE_KEEPALIVE_FRAME", r"event: hb\ndata: {now_ms}\n\n")];
    let c = run(&[UP], &env);
    let frame = c.routes[0].stream.keepalive_frame.as_deref();
    assert_eq!(frame, Some("event: hb\ndata: {now_ms}\n\n"));
}

/// Flag, value, key named in the error, part of the reason.
#[rustfmt::skip]
const BAD_STREAM_FLAGS: &[(&str, &str, &str, &str)] = &[
    ("--max-event-size", "1023", "max_event_size", "must be from 1KiB to 1GiB"),
    ("--max-event-size", "2GiB", "max_event_size", "must be from 1KiB to 1GiB"),
    ("--max-event-size", "8mb", "max_event_size", "expected a size"),
    ("--early-commit", "yes", "early_commit", "expected true or false"),
    ("--json-keepalive", "1", "json_keepalive", "expected true or false"),
    ("--retry-attempts", "21", "retry_attempts", "expected a whole number from 0 to 20"),
    ("--retry-budget", "1.5s", "retry_budget", "expected a duration"),
    ("--retry-backoff", "0", "retry_backoff", "must be greater than zero"),
    ("--heartbeat", "0", "heartbeat", "must be at least 100ms"),
];

#[test]
fn stream_key_errors_name_the_key() {
    let hint = r#"like "event: heartbeat\ndata: {\"timestamp\": {now_ms}}\n\n""#;
    let msg = error(&[UP, "--keepalive-frame", "data: x"], &[]);
    assert!(
        msg.starts_with("invalid value for keepalive_frame (from --keepalive-frame): \"data: x\"")
            && msg.contains("expected SSE lines ending in a blank line")
            && msg.ends_with(hint),
        "{msg}"
    );
    let msg = error(&[UP], &[("SSE_EDGE_KEEPALIVE_FRAME", "a\r\n\r\n")]);
    assert!(
        msg.contains("(from SSE_EDGE_KEEPALIVE_FRAME)") && msg.contains("carriage"),
        "{msg}"
    );
    for (flag, value, key, why) in BAD_STREAM_FLAGS {
        let msg = error(&[UP, flag, value], &[]);
        let start = format!("invalid value for {key} (from {flag}): \"{value}\": ");
        assert!(msg.starts_with(&start) && msg.contains(why), "{msg}");
    }
}

/// A line of a `[[route]]` table, how the error starts, part of the reason.
#[rustfmt::skip]
const BAD_ROUTE_STREAM_KEYS: &[(&str, &str, &str)] = &[
    (r#"keepalive_frame = "data: x\n\ndata: y\n\n""#, "invalid value for route[0].keepalive_frame", "blank line before the end"),
    (r"keepalive_frame = 'data: x\n\n'", "invalid value for route[0].keepalive_frame", "expected SSE lines"),
    ("keepalive_frame = 1", "invalid type for route[0].keepalive_frame", "expected a string"),
    ("max_event_size = 100", "invalid value for route[0].max_event_size", "from 1KiB to 1GiB"),
    ("max_event_size = -1", "invalid value for route[0].max_event_size", "\"-1\""),
    ("max_event_size = true", "invalid type for route[0].max_event_size", "expected an integer or a size"),
    ("early_commit = \"yes\"", "invalid type for route[0].early_commit", "expected a boolean"),
    ("json_keepalive = 1", "invalid type for route[0].json_keepalive", "expected a boolean"),
    ("retry_attempts = 21", "invalid value for route[0].retry_attempts", "from 0 to 20"),
    ("retry_attempts = \"3\"", "invalid type for route[0].retry_attempts", "expected an integer"),
    ("retry_budget = 5", "invalid type for route[0].retry_budget", "duration string"),
    ("retry_backoff = \"0s\"", "invalid value for route[0].retry_backoff", "greater than zero"),
    ("heartbeat = \"10ms\"", "invalid value for route[0].heartbeat", "at least 100ms"),
    ("dialect = \"cohere\"", "invalid value for route[0].dialect", "expected one of"),
    ("retry = 1", "unknown key route[0].retry", ""),
];

#[test]
fn route_stream_key_errors_name_the_route_key() {
    for (i, (line, start, why)) in BAD_ROUTE_STREAM_KEYS.iter().enumerate() {
        let toml = format!("[[route]]\nupstream = \"http://a\"\n{line}\n");
        let file = TempFile::new(&format!("route-stream-err-{i}.toml"), &toml);
        let msg = error(&["--config", file.path()], &[]);
        assert!(
            msg.starts_with(start) && msg.contains(why),
            "case {i}: {msg}"
        );
    }
}

#[test]
fn check_config_renders_route_stream_keys_and_round_trips() {
    let file = TempFile::new("check-streams.toml", STREAMS);
    let rendered = check(&["check-config", file.path()], &[], |c| {
        assert_eq!(c.routes[0].stream, top_streams());
    });
    for key in [
        "heartbeat",
        "keepalive_frame",
        "max_event_size",
        "early_commit",
        "json_keepalive",
        "retry_attempts",
        "retry_budget",
        "retry_backoff",
        "retry_on_reset",
        "upstream.first_byte_timeout",
        "upstream.first_event_timeout",
        "upstream.read_timeout",
    ] {
        let note = format!("  # inherited from top-level {key}\n");
        assert_eq!(rendered.matches(&note).count(), 1, "{key}:\n{rendered}");
    }
    let has = |needle: &str| assert!(rendered.contains(needle), "{needle:?} in:\n{rendered}");
    has(r#"keepalive_frame = "event: ping\ndata: {\"t\": {now_ms}}\n\n"  # inherited"#);
    has("max_event_size = \"64KiB\"  # inherited from top-level max_event_size\n");
    has("early_commit = false  # inherited");
    has("retry_attempts = 0  # inherited");
    has("retry_budget = \"0\"  # inherited");
    has("\nkeepalive_frame = \": keepalive\\n\\n\"\n");
    has("\nmax_event_size = \"2KiB\"\n");
    has("\nretry_budget = \"1m30s\"\n");
    has("\ndialect = \"auto\"  # inherited from top-level dialect\n");
    has("retry_on_reset = false  # inherited from top-level retry_on_reset\n");
    has("first_byte_timeout = \"1m\"  # inherited from top-level upstream.first_byte_timeout\n");
    has("first_event_timeout = \"0\"  # inherited from top-level upstream.first_event_timeout\n");
    has("read_timeout = \"10s\"  # inherited from top-level upstream.read_timeout\n");
    has("\nretry_on_reset = true\n");
    has("\nfirst_byte_timeout = \"2s\"\nfirst_event_timeout = \"3s\"\nread_timeout = \"0\"\n");
    // an unset frame renders as a comment, and still round-trips
    let plain = TempFile::new("check-plain.toml", ROUTES);
    let rendered = check(&["check-config", plain.path(), UP], &[], |_| {});
    assert!(!rendered.contains("keepalive_frame ="), "{rendered}");
    has_line(&rendered, "# keepalive_frame is not set");
    has_line(
        &rendered,
        "# keepalive_frame is not set  # inherited from top-level keepalive_frame",
    );
    // a frame given as a flag renders as a TOML string with \n escapes
    let args = ["check-config", file.path(), "--keepalive-frame", r": x\n\n"];
    let rendered = check(&args, &[], |c| {
        assert_eq!(
            c.routes[1].stream.keepalive_frame.as_deref(),
            Some(": keepalive\n\n")
        );
    });
    assert!(
        rendered.contains(r#"keepalive_frame = ": x\n\n""#),
        "{rendered}"
    );
}
